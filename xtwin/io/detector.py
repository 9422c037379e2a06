"""Detector properties measured from the data itself."""

from __future__ import annotations

import numpy as np

from xtwin.errors import XtwinInputError


def estimate_counts_per_photon(
    frame_a: np.ndarray, frame_b: np.ndarray, *, min_counts: float = 50.0
) -> float:
    """Detector counts per Poisson event from two repeated frames of the same scene.

    For counts ``c = g n`` with Poisson ``n``, ``var(a - b) = g (a + b)``; so
    ``g = median((a - b)^2 / (a + b)) / 0.4549`` (0.4549 is the median of chi-square with one
    degree of freedom), robust to edges and a slow drift. A scintillator's blur correlates
    neighbouring pixels and lowers g below the true gain: g here is what the per-pixel noise
    model needs.
    """
    a = np.asarray(frame_a, dtype=np.float64)
    b = np.asarray(frame_b, dtype=np.float64)
    ok = (a + b) > 2 * min_counts
    if ok.sum() < 100:
        raise XtwinInputError(
            "too few bright pixels in the repeated frames to estimate the detector gain"
        )
    return float(np.median((a[ok] - b[ok]) ** 2 / (a[ok] + b[ok])) / 0.4549)
