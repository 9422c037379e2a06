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
from xtwin.io.detector import estimate_counts_per_photon
from xtwin.io.scan import ScanData

__all__ = [
    "NormalizationReport",
    "Absorbance",
    "estimate_counts_per_photon",
    "exposure_ratios",
    "normalize_block",
    "normalize_scan",
]

#: Counts below this (after dark subtraction) are clamped before the log.
MIN_COUNTS = 0.5

#: Values per step of the block-wise arithmetic (normalization, registration shifts): about
#: 2 MB of float32 temporaries, which the allocator reuses instead of faulting in fresh pages.
STEP_VALUES = 1 << 19


def angle_steps(shape: tuple[int, ...]) -> list[slice]:
    """Slices of a few angles (axis 0 of an array of ``shape``) of about :data:`STEP_VALUES`
    values each, for block-wise arithmetic whose temporaries the allocator reuses."""
    step = max(1, STEP_VALUES // max(1, int(np.prod(shape[1:]))))
    return [slice(a, a + step) for a in range(0, shape[0], step)]


@dataclass(frozen=True)
class Absorbance:
    """-ln(I/I0) and its variance, axes (energy, angle, row, col)."""

    absorbance: np.ndarray
    variance: np.ndarray
    theta_deg: np.ndarray
    energy_eV: np.ndarray
    pixel_size_m: float
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        a, v = self.absorbance, self.variance
        if a.ndim != 4 or v.shape != a.shape:
            raise XtwinInputError(
                f"absorbance must be (energy, angle, row, col) with a variance of the same "
                f"shape; got {a.shape} and {v.shape}"
            )
        if np.shape(self.theta_deg) != (a.shape[1],) or np.size(self.energy_eV) != a.shape[0]:
            raise XtwinInputError(
                f"{np.size(self.theta_deg)} angles and {np.size(self.energy_eV)} energies for "
                f"absorbance of shape {a.shape}"
            )


def _robust_white_variance(p: np.ndarray) -> np.ndarray:
    """White-noise variance per image row (last axis) from second differences (robust MAD).

    Row-local, so a block of rows gives the same values as the whole detector.
    """
    d2 = p[..., 2:] - 2 * p[..., 1:-1] + p[..., :-2]
    med = np.median(d2, axis=-1, keepdims=True)
    mad = np.median(np.abs(d2 - med), axis=-1)
    return ((1.4826 * mad) ** 2 / 6.0).astype(np.float32)


@dataclass(frozen=True)
class NormalizationReport:
    """What :func:`normalize_block` did besides the arithmetic.

    Attributes
    ----------
    clamped : int
        Values at or below zero after dark subtraction, clamped.
    dead_pixels : int
        Dead detector pixels (flat at the dark level) filled from their row neighbours.
    noise_estimated : str, optional
        ``"no-flats"`` or ``"float"`` where the variance was estimated from the data.
    """

    clamped: int = 0
    dead_pixels: int = 0
    noise_estimated: str | None = None

    def dead_line(self) -> str:
        """The dead-pixel sentence (empty when none)."""
        if not self.dead_pixels:
            return ""
        return f"{self.dead_pixels} dead detector pixels filled from their row neighbours"

    def lines(self) -> list[str]:
        """The report as the provenance's notes."""
        out = []
        if self.noise_estimated == "no-flats":
            out.append(
                "no flat fields; float projections taken as transmission I/I0; noise "
                "variance estimated per detector row from second differences (robust MAD)"
            )
        elif self.noise_estimated == "float":
            out.append(
                "float projections: noise variance estimated per detector row from "
                "second differences (robust MAD)"
            )
        if self.dead_pixels:
            out.append(self.dead_line())
        if self.clamped:
            out.append(
                f"{self.clamped} values at or below zero after dark subtraction were clamped"
            )
        return out


def normalize_block(
    data: np.ndarray,
    flats: np.ndarray | None,
    dark_mean: np.ndarray | None,
    *,
    counts_per_photon: float = 1.0,
    exposure_ratio: float = 1.0,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, NormalizationReport]:
    """-ln(I/I0) and its Poisson variance for one energy's block of detector rows.

    For integer counts the low-count bias of the logarithm is removed to second order
    (``-ln n`` overestimates ``-ln N`` by ``1 / (2 N)`` photons; the flats' mean the other way),
    which keeps mu unbiased at the few tens of photons per pixel of a dose-limited scan.

    Every value depends only on the same detector pixel (and, for float data without flats,
    on its detector row), so blocks of rows give exactly what the whole detector gives.

    Parameters
    ----------
    data : ndarray, shape (n_angle, n_row, n_col)
        Raw projections: integer counts, or float transmission / intensity.
    flats : ndarray, shape (n_flat, n_row, n_col), optional
        Raw flat fields.
    dark_mean : ndarray, shape (n_row, n_col), optional
        Mean dark field.
    counts_per_photon : float
        Detector gain ``g``.
    exposure_ratio : float
        Projection exposure over flat exposure (the flats are scaled by it).

    Returns
    -------
    absorbance, variance : ndarray, float32
    report : NormalizationReport
        What was assumed, filled or clamped.

    References
    ----------
    .. [1] DESIGN.md, "Physics conventions": var(-ln(I/I0)) = 1/I + 1/I0 in photons.
    """
    noise = None
    dead_count = 0
    counts = data.dtype.kind in "iu"
    dark = np.float32(0.0) if dark_mean is None else dark_mean.astype(np.float32)
    floor = np.float32(MIN_COUNTS if counts else 1e-6)
    if flats is None:
        if counts:
            raise XtwinInputError(
                "the scan has integer counts but no flat fields "
                "(/exchange/data_white); add flats to normalize it"
            )
        signal = np.maximum(data.astype(np.float32), floor)
        clamped = int(np.count_nonzero(data <= floor))
        p = -np.log(signal)
        var = np.broadcast_to(_robust_white_variance(p)[..., None], p.shape).astype(np.float32)
        noise = "no-flats"
    else:
        n_flat = flats.shape[0]
        flat_raw = flats.astype(np.float32).mean(axis=0)
        flat = flat_raw - dark
        # dead pixels: a flat at (or near) the dark level carries no information; a few are
        # normal in a real detector and are filled from their row neighbours below, but a
        # flat that is mostly dead means swapped or empty frames
        row_median = np.median(flat, axis=-1, keepdims=True)  # per row: block-independent
        dead = flat <= np.maximum(row_median * DEAD_FLAT_FRACTION, 0.0)
        if dead.mean() > 0.5:
            raise XtwinInputError(
                "flat fields are not above the dark level on most of the detector; check "
                "that flats and darks are not swapped, and that no flat frame is empty"
            )
        if dead.any():
            flat = np.where(dead, np.maximum(row_median, 1.0).astype(np.float32), flat)
        flat_rel_var = np.float32(counts_per_photon) * flat_raw / (n_flat * flat**2)
        flat = flat * np.float32(exposure_ratio)
        p = np.empty(data.shape, np.float32) if out is None else out[0]
        var = np.empty(data.shape, np.float32) if out is None else out[1]
        if counts:
            clamped = _normalize_counts(data, dark, flat, flat_rel_var, counts_per_photon, p, var)
        else:
            clamped = _normalize_float(data, dark, flat, floor, p)
            var[...] = _robust_white_variance(p)[..., None]
            noise = "float"
    if flats is not None and dead.any():
        p, var = _fill_dead(p, var, dead)
        dead_count = int(dead.sum())
    report = NormalizationReport(clamped, dead_count, noise)
    return p.astype(np.float32, copy=False), var.astype(np.float32, copy=False), report


def _normalize_counts(
    data: np.ndarray,
    dark: np.ndarray | np.floating,
    flat: np.ndarray,
    flat_rel_var: np.ndarray,
    counts_per_photon: float,
    p: np.ndarray,
    var: np.ndarray,
) -> int:
    """-ln(I/I0) of integer counts into ``p`` and its variance into ``var`` (one compiled pass,
    numpy's log, one compiled pass), a few angles at a time so each step stays in the cache;
    the number of clamped values.

    -ln of a Poisson count is biased by +var/2 and the log of the flats' mean by -var_flat/2
    (second-order delta method): both are removed, leaving O(1/N^2).
    """
    from xtwin._kernels import counts_ratio, debias

    data = np.ascontiguousarray(data)
    dark = np.broadcast_to(dark, flat.shape).astype(np.float32)
    frv = np.ascontiguousarray(flat_rel_var, dtype=np.float32)
    flat = np.ascontiguousarray(flat, dtype=np.float32)
    gain, floor = np.float32(counts_per_photon), np.float32(MIN_COUNTS)
    clamped = 0
    for sl in angle_steps(data.shape):
        pc, vc = p[sl], var[sl]
        clamped += counts_ratio(data[sl], dark, flat, gain, floor, pc, vc)
        np.log(pc, out=pc)  # -ln(I / I0) = ln(I0 / I)
        debias(pc, vc, frv)
    return int(clamped)


def _normalize_float(
    data: np.ndarray,
    dark: np.ndarray | np.floating,
    flat: np.ndarray,
    floor: np.float32,
    p: np.ndarray,
) -> int:
    """-ln(I/I0) of float intensities into ``p``, a few angles at a time (the temporaries
    stay small enough for the allocator to reuse); the number of clamped values."""
    clamped = 0
    for sl in angle_steps(data.shape):
        signal = data[sl].astype(np.float32)
        signal -= dark  # (zero without darks: exact)
        if signal.min(initial=np.inf) < floor:  # (one pass, no mask, where none is low)
            clamped += int(np.count_nonzero(signal < floor))
            np.maximum(signal, floor, out=signal)
        pc = p[sl]
        np.divide(flat, signal, out=pc)  # -ln(I / I0) = ln(I0 / I)
        np.log(pc, out=pc)
    return clamped


#: A pixel whose flat (minus dark) is below this fraction of the median flat is dead.
DEAD_FLAT_FRACTION = 0.05


def _fill_dead(p: np.ndarray, var: np.ndarray, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absorbance and variance at dead pixels (rows, cols) by linear interpolation along each
    detector row (row-local, so blocks of rows give what the whole detector gives), in
    place."""
    cols = np.arange(p.shape[-1])
    for r in np.flatnonzero(dead.any(axis=1)):
        bad = dead[r]
        good = ~bad
        if good.sum() < 2:
            continue
        for a in range(p.shape[0]):
            p[a, r, bad] = np.interp(cols[bad], cols[good], p[a, r, good])
            var[a, r, bad] = np.interp(cols[bad], cols[good], var[a, r, good])
    return p, var


def exposure_ratios(exposure_s, flat_exposure_s, n_energy: int) -> np.ndarray:
    """Projection over flat exposure per energy (ones when either is unknown)."""
    if exposure_s is None or flat_exposure_s is None:
        return np.ones(n_energy)
    return np.asarray(exposure_s, dtype=float) / np.asarray(flat_exposure_s, dtype=float)


def normalize_scan(scan: ScanData) -> Absorbance:
    """Turn raw projections of an in-memory scan into absorbance with per-value variance.

    Parameters
    ----------
    scan : ScanData
        A validated scan.

    Returns
    -------
    Absorbance
        ``-ln(I/I0)`` (float32) and its variance, energies in the scan's order.
    """
    notes = list(scan.notes)
    if scan.darks is None:
        notes.append("no dark fields; assumed a zero dark level")
    dark = (
        scan.darks.astype(np.float64).mean(axis=0).astype(np.float32)
        if (scan.darks is not None and len(scan.darks))
        else None
    )
    ratio = exposure_ratios(scan.exposure_s, scan.flat_exposure_s, scan.data.shape[0])
    if not np.allclose(ratio, 1.0):
        notes.append(f"flats scaled to the projection exposure by {ratio.round(4)}")
    ps, vs = [], []
    for e in range(scan.data.shape[0]):
        p, v, n = normalize_block(
            scan.data[e],
            None if scan.flats is None else scan.flats[e],
            dark,
            counts_per_photon=scan.counts_per_photon,
            exposure_ratio=float(ratio[e]),
        )
        ps.append(p)
        vs.append(v)
        notes.extend(x for x in n.lines() if x not in notes)
    return Absorbance(
        np.stack(ps), np.stack(vs), scan.theta_deg, scan.energy_eV, scan.pixel_size_m, tuple(notes)
    )
