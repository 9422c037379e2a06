"""Cross-energy registration: the detector image moves between energies (zone-plate and
condenser repositioning, stage drift), which a three-energy ratio turns into false lithiation
at every edge. Each energy's projections at a set of angles are registered to the reference
energy's by phase correlation (scikit-image, 1/20-pixel upsampling) and shifted back with a
Fourier shift (no smoothing, no change of noise).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xtwin.errors import XtwinInputError
from xtwin.prep.center import shift_rows
from xtwin.prep.normalize import Absorbance


def shift_image_stack(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift the last two axes of ``a`` by (dy, dx) pixels (Fourier shift, edge padding)."""
    out = shift_rows(a.reshape(-1, a.shape[-1]), dx).reshape(a.shape) if dx else a
    if dy:
        t = np.swapaxes(out, -1, -2)
        t = shift_rows(np.ascontiguousarray(t).reshape(-1, t.shape[-1]), dy).reshape(t.shape)
        out = np.ascontiguousarray(np.swapaxes(t, -1, -2))
    return out


def estimate_energy_shifts(absorbance: Absorbance, *, reference: int | None = None,
                           n_angles: int = 16) -> np.ndarray:
    """(n_energy, 2) detector shifts (rows, cols) of each energy relative to the reference.

    The reference is the most absorbing energy (post-edge: the most contrast). Projections
    at ``n_angles`` angles spread over the scan are registered one by one and the median shift
    is kept. A positive shift means that energy's image sits at higher indices.
    """
    from skimage.registration import phase_cross_correlation

    p = absorbance.absorbance
    n_e, n_a = p.shape[:2]
    ref = int(np.argmax(p.reshape(n_e, -1).mean(axis=1))) if reference is None else reference
    angles = np.unique(np.linspace(0, n_a - 1, min(n_a, n_angles)).astype(int))
    # a Hann window keeps the field-of-view edges, which do not move, from pinning the
    # correlation peak at zero shift
    window = np.outer(np.hanning(p.shape[2]), np.hanning(p.shape[3]))

    def prepared(img: np.ndarray) -> np.ndarray:
        return (img - img.mean()) * window

    shifts = np.zeros((n_e, 2))
    for e in range(n_e):
        if e == ref:
            continue
        per_angle = [phase_cross_correlation(prepared(p[ref, a]), prepared(p[e, a]),
                                             upsample_factor=20)[0] for a in angles]
        # skimage returns the shift that registers e onto ref: the drift is its negative
        shifts[e] = -np.median(np.asarray(per_angle), axis=0)
    return shifts


def register_energies(absorbance: Absorbance) -> tuple[Absorbance, np.ndarray]:
    """Align every energy's projections (and their variances) to the reference energy."""
    shifts = estimate_energy_shifts(absorbance)
    limit = min(absorbance.absorbance.shape[2:]) / 4.0
    if np.any(np.abs(shifts) > limit):
        raise XtwinInputError(f"the energies appear shifted by up to {np.abs(shifts).max():.1f} "
                              f"px (more than {limit:.0f}); check that all energies show the "
                              "same field of view, or align them before processing")
    p = absorbance.absorbance.copy()
    v = absorbance.variance.copy()
    for e, (dy, dx) in enumerate(shifts):
        if abs(dy) < 1e-3 and abs(dx) < 1e-3:
            continue
        p[e] = shift_image_stack(p[e], -dy, -dx)
        v[e] = np.maximum(shift_image_stack(v[e], -dy, -dx), 0.0)
    note = ("energies registered; detector shifts (rows, cols) in px: "
            + "; ".join(f"{e:.1f} eV: {dy:+.2f}, {dx:+.2f}"
                        for e, (dy, dx) in zip(absorbance.energy_eV, shifts)))
    return dataclasses.replace(absorbance, absorbance=p, variance=v,
                               notes=absorbance.notes + (note,)), shifts
