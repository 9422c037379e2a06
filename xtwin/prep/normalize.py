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
        var = var + g * (flat + dark) / (n_flat * flat**2)
    else:
        var = np.broadcast_to(_robust_white_variance(p)[..., None, None], p.shape).copy()
        notes.append("float projections: noise variance estimated per image from second "
                     "differences (robust MAD)")
    return Absorbance(p.astype(np.float32), var.astype(np.float32), scan.theta_deg,
                      scan.energy_eV, scan.pixel_size_m, tuple(notes))
