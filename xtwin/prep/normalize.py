"""Flat/dark normalization and -log, with the Poisson variance of every value.

For counts ``I`` (projection) and the flat mean ``F`` (n_flat frames), both dark-subtracted,
with ``g`` counts per photon::

    p = -ln(I / F),   var(p) = g I_raw / I^2 + g F_raw / (n_flat F^2)

(DESIGN.md: var(-ln(I/I0)) = 1/I + 1/I0 in photons). For float projections without a gain
model the white-noise variance is estimated per image from second differences along the
detector row (robust MAD), and the file's notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.io.scan import ScanData

#: Counts below this (after dark subtraction) are clamped before the log.
MIN_COUNTS = 0.5


@dataclass(frozen=True)
class Absorbance:
    """-ln(I/I0) and its variance, axes (energy, angle, row, col)."""

    absorbance: np.ndarray
    variance: np.ndarray
    theta_deg: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    notes: tuple[str, ...] = ()


def _robust_white_variance(p: np.ndarray) -> np.ndarray:
    """White-noise variance per image (last two axes) from second differences along columns."""
    d2 = p[..., 2:] - 2 * p[..., 1:-1] + p[..., :-2]
    flat = d2.reshape(d2.shape[:-2] + (-1,))
    med = np.median(flat, axis=-1, keepdims=True)
    mad = np.median(np.abs(flat - med), axis=-1)
    return (1.4826 * mad) ** 2 / 6.0


def estimate_counts_per_photon(frame_a: np.ndarray, frame_b: np.ndarray, *,
                               min_counts: float = 50.0) -> float:
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
        raise XtwinInputError("too few bright pixels in the repeated frames to estimate the "
                              "detector gain")
    return float(np.median((a[ok] - b[ok]) ** 2 / (a[ok] + b[ok])) / 0.4549)


def normalize_scan(scan: ScanData) -> Absorbance:
    """Turn raw projections into absorbance with per-value variance.

    Parameters
    ----------
    scan : ScanData
        A validated scan.

    Returns
    -------
    Absorbance
        ``-ln(I/I0)`` (float32) and its variance.
    """
    notes = list(scan.notes)
    data = scan.data.astype(np.float64)
    dark = scan.darks.mean(axis=0) if scan.darks is not None and len(scan.darks) else 0.0
    if scan.darks is None:
        notes.append("no dark fields; assumed a zero dark level")
    counts = scan.data.dtype.kind in "iu"
    if scan.flats is None:
        if counts:
            raise XtwinInputError("the scan has integer counts but no flat fields "
                                  "(/exchange/data_white); add flats to normalize it")
        notes.append("no flat fields; float projections taken as transmission I/I0")
        trans = data
        n_flat = 0
        flat = np.ones_like(data[:, :1])
    else:
        n_flat = scan.flats.shape[1]
        flat_raw = scan.flats.astype(np.float64).mean(axis=1, keepdims=True)
        flat = flat_raw - dark
        if np.any(flat <= 0):
            raise XtwinInputError("flat fields are not above the dark level everywhere; check "
                                  "that flats and darks are not swapped")
        trans = None
        # relative variance of the flat mean, in its own counts (scaling does not change it)
        flat_rel_var = scan.counts_per_photon * flat_raw / (n_flat * flat**2)
        if scan.exposure_s is not None and scan.flat_exposure_s is not None:
            ratio = np.asarray(scan.exposure_s) / np.asarray(scan.flat_exposure_s)
            if not np.allclose(ratio, 1.0):
                notes.append(f"flats scaled to the projection exposure by {ratio.round(4)}")
            flat = flat * ratio[:, None, None, None]
    signal = data - dark if trans is None else data
    clamped = int(np.count_nonzero(signal < (MIN_COUNTS if counts else 1e-6)))
    if clamped:
        notes.append(f"{clamped} values at or below zero after dark subtraction were clamped")
    floor = MIN_COUNTS if counts else 1e-6
    signal = np.maximum(signal, floor)
    p = -np.log(signal / flat) if trans is None else -np.log(signal)
    if counts:
        g = scan.counts_per_photon
        var = g * np.maximum(data, floor) / signal**2
        var = var + flat_rel_var
    else:
        var = np.broadcast_to(_robust_white_variance(p)[..., None, None], p.shape).copy()
        notes.append("float projections: noise variance estimated per image from second "
                     "differences (robust MAD)")
    return Absorbance(p.astype(np.float32), var.astype(np.float32), scan.theta_deg,
                      scan.energy_eV, scan.pixel_size_m, tuple(notes))
