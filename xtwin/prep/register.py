"""Cross-energy registration: the detector image moves between energies (zone-plate and
condenser repositioning, stage drift), which a three-energy ratio turns into false lithiation
at every edge. Each energy's projections at a set of angles are registered to the reference
energy's by phase correlation (scikit-image, 1/20-pixel upsampling, Hann window); the shift
across detector rows is applied with a finite Lanczos-4 kernel (so blocks of rows give the
same result as the whole detector) and the shift along rows with a Fourier shift.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms," Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.prep.normalize import Absorbance
from xtwin.shifts import shift_axis_local, shift_rows, source_rows

#: Projections sampled for registration.
N_REGISTRATION_ANGLES = 16


def registration_angles(n_angle: int, n: int = N_REGISTRATION_ANGLES) -> np.ndarray:
    """Indices of the projections used to estimate the shifts, spread over the scan."""
    return np.unique(np.linspace(0, n_angle - 1, min(n_angle, n)).astype(int))


def shifts_from_projections(p: np.ndarray, *, reference: int | None = None) -> np.ndarray:
    """(n_energy, 2) detector shifts (rows, cols) of each energy relative to the reference.

    Parameters
    ----------
    p : ndarray, shape (n_energy, n_selected_angles, n_row, n_col)
        Absorbance at a few angles.
    reference : int, optional
        Reference energy (default: the most absorbing, i.e. the most contrast).

    Returns
    -------
    ndarray
        A positive shift means that energy's image sits at higher indices (median over the
        angles).
    """
    from skimage.registration import phase_cross_correlation

    n_e = p.shape[0]
    ref = int(np.argmax(p.reshape(n_e, -1).mean(axis=1))) if reference is None else reference
    # a Hann window keeps the field-of-view edges, which do not move, from pinning the
    # correlation peak at zero shift
    window = np.outer(np.hanning(p.shape[2]), np.hanning(p.shape[3]))

    def prepared(img: np.ndarray) -> np.ndarray:
        return (img - img.mean()) * window

    shifts = np.zeros((n_e, 2))
    for e in range(n_e):
        if e == ref:
            continue
        per_angle = [
            phase_cross_correlation(
                prepared(p[ref, a]), prepared(p[e, a]), upsample_factor=20, normalization=None
            )[0]
            for a in range(p.shape[1])
        ]
        shifts[e] = -np.median(np.asarray(per_angle), axis=0)
    limit = min(p.shape[2:]) / 4.0
    if np.any(np.abs(shifts) > limit):
        raise XtwinInputError(
            f"the energies appear shifted by up to {np.abs(shifts).max():.1f} "
            f"px (more than {limit:.0f}); check that all energies show the "
            "same field of view, or align them before processing"
        )
    return np.where(np.abs(shifts) < 1e-3, 0.0, shifts)


def estimate_energy_shifts(
    absorbance: Absorbance, *, reference: int | None = None, n_angles: int = N_REGISTRATION_ANGLES
) -> np.ndarray:
    """:func:`shifts_from_projections` on ``n_angles`` projections of an in-memory stack."""
    idx = registration_angles(absorbance.absorbance.shape[1], n_angles)
    return shifts_from_projections(absorbance.absorbance[:, idx], reference=reference)


def apply_shift(
    block: np.ndarray, lo: int, hi: int, dy: float, dx: float, *, variance: bool = False
) -> np.ndarray:
    """Register output rows ``[lo, hi)`` of one energy (undo a drift of (dy, dx)).

    Parameters
    ----------
    block : ndarray, shape (n_angle, rows, n_col)
        Rows ``source_rows(lo, hi, dy)`` of the energy's absorbance (or variance).
    lo, hi : int
        Output rows.
    dy, dx : float
        The energy's drift (rows, cols).
    variance : bool
        ``block`` holds variances: propagate them (squared kernel weights).

    Returns
    -------
    ndarray, shape (n_angle, hi - lo, n_col), float32
    """
    out = shift_axis_local(block, lo, hi, dy, axis=1, squared=variance) if dy else block
    if dx:
        out = shift_rows(np.ascontiguousarray(out), -dx)
        if variance:
            out = np.maximum(out, 0.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def register_energies(absorbance: Absorbance) -> tuple[Absorbance, np.ndarray]:
    """Align every energy's projections (and their variances) to the reference energy."""
    shifts = estimate_energy_shifts(absorbance)
    n_r = absorbance.absorbance.shape[2]
    p = absorbance.absorbance.copy()
    v = absorbance.variance.copy()
    for e, (dy, dx) in enumerate(shifts):
        if not (dy or dx):
            continue
        a, b = source_rows(0, n_r, dy)
        idx = np.clip(np.arange(a, b), 0, n_r - 1)
        p[e] = apply_shift(absorbance.absorbance[e][:, idx], 0, n_r, dy, dx)
        v[e] = apply_shift(absorbance.variance[e][:, idx], 0, n_r, dy, dx, variance=True)
    note = "energies registered; detector shifts (rows, cols) in px: " + "; ".join(
        f"{e:.1f} eV: {dy:+.2f}, {dx:+.2f}" for e, (dy, dx) in zip(absorbance.energy_eV, shifts)
    )
    return dataclasses.replace(
        absorbance, absorbance=p, variance=v, notes=absorbance.notes + (note,)
    ), shifts


def rows_not_seen_at_all_energies(shifts: np.ndarray, n_rows: int) -> np.ndarray:
    """Rows that some energy's registration shift moved in from outside the detector."""
    lost = np.zeros(n_rows, dtype=bool)
    for dy in shifts[:, 0]:
        k = int(np.ceil(abs(dy) - 1e-3))
        if k and dy > 0:
            lost[n_rows - k :] = True  # content moved up by dy: the bottom rows came from outside
        elif k:
            lost[:k] = True
    return lost
