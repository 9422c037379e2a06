"""Cross-energy registration: the detector image moves between energies (zone-plate and
condenser repositioning, stage drift), which a three-energy ratio turns into false lithiation
at every edge. Each energy's projections at a set of angles are registered to the reference
energy's by cross-correlation (scikit-image, 1/100-pixel upsampling, Hann window); the shift
across detector rows is applied with a finite Lanczos-4 kernel (so blocks of rows give the
same result as the whole detector) and the shift along rows with a Fourier shift.

A zone-plate TXM also changes its magnification with energy (the focal length is proportional
to E): :func:`scale_estimates` estimates an energy's image scale about the optical axis (the
detector centre) by maximizing the correlation with a reference energy, per angle (the
pipeline fits the law ``s(E) = 1 + k (E - E_ref)`` on the energies whose image does not depend
on lithiation: :mod:`xtwin.pipeline._estimate.registration`); :func:`apply_transform` resamples
rows and columns at ``c + s (r - c) + shift`` with the same finite kernel.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms," Opt. Lett. 33, 156-158 (2008).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from xtwin._threads import thread_map
from xtwin.errors import XtwinInputError
from xtwin.prep.normalize import Absorbance, angle_steps
from xtwin.shifts import (
    scale_axis_local,
    scaled_positions,
    shift_axis_local,
    shift_rows,
    source_rows,
)

#: Projections sampled for registration.
N_REGISTRATION_ANGLES = 16


def registration_angles(n_angle: int, n: int = N_REGISTRATION_ANGLES) -> np.ndarray:
    """Indices of the projections used to estimate the shifts, spread over the scan."""
    return np.unique(np.linspace(0, n_angle - 1, min(n_angle, n)).astype(int))


def refine_shift_2d(
    fixed: np.ndarray, moving: np.ndarray, d0: np.ndarray, n_iter: int = 6
) -> np.ndarray:
    """Gauss-Newton refinement of one detector shift (rows, cols) of ``moving`` relative to
    ``fixed`` (both ``(n_angle, n_row, n_col)``), minimizing ``sum || a_k S(d) m_k + b_k -
    f_k ||^2`` over the interior pixels (``S(d)``: a Fourier shift, edge-padded; ``a_k, b_k`` a
    free contrast and offset per angle, so energies of different contrast can be matched).

    The peak of a windowed cross-correlation is pulled toward zero shift by the window, which
    does not move with the image (5 % of a 2 px shift on the twin); this has no window.
    """
    from scipy import fft

    n_a, n_r, n_c = moving.shape
    d = np.asarray(d0, dtype=np.float64).copy()
    pad = int(np.ceil(np.abs(d).max())) + 6
    # single precision and real transforms on the worker threads: the shift is wanted to
    # 1e-3 px, far above float32 rounding, and a 1024 x 512 detector costs 6x less
    # edge-padded to lengths with small prime factors (a large one makes the real
    # transforms 10x slower)
    shape = (fft.next_fast_len(n_r + 2 * pad), fft.next_fast_len(n_c + 2 * pad, real=True))
    mp = np.pad(
        moving.astype(np.float32),
        [(0, 0), (pad, shape[0] - n_r - pad), (pad, shape[1] - n_c - pad)],
        mode="edge",
    )
    workers = os.cpu_count() or 1
    spec = fft.rfft2(mp, axes=(1, 2), workers=workers)
    fy = fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    m = pad  # interior: away from the borders the shift brings padding into
    inner = (slice(None), slice(pad + m, pad + n_r - m), slice(pad + m, pad + n_c - m))
    f0 = fixed.astype(np.float32)[:, m : n_r - m, m : n_c - m]
    if f0.shape[1] < 4 or f0.shape[2] < 4:
        return d
    f0 = f0 - f0.mean(axis=(1, 2), keepdims=True)

    def back(x: np.ndarray) -> np.ndarray:
        """The inner pixels of the inverse transform, centred per angle (float32)."""
        out = fft.irfft2(x, s=shape, axes=(1, 2), workers=workers)[inner]
        return out - out.mean(axis=(1, 2), dtype=np.float64, keepdims=True).astype(np.float32)

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-angle inner products (float64 results; the operands are centred)."""
        return np.einsum("kij,kij->k", x, y).astype(np.float64)

    for _ in range(n_iter):
        # S(x) = moving(x + d); the model a_k (S(d) m_k - mean) and its derivatives in d,
        # whose sums reduce to per-angle inner products of centred images (no temporaries)
        ramp = np.exp(2j * np.pi * (fy * d[0] + fx * d[1])).astype(np.complex64)
        sh = spec * ramp[None]
        s0 = back(sh)
        gy = back(sh * (2j * np.pi * fy)[None])
        gx = back(sh * (2j * np.pi * fx)[None])
        a = dot(s0, f0) / np.maximum(dot(s0, s0), 1e-30)
        a2 = a * a
        yx = dot(gy, gx)
        # J_y = a g_y, J_x = a g_x; residual r = a s0 - f0
        h = np.array(
            [
                [(a2 * dot(gy, gy)).sum(), (a2 * yx).sum()],
                [(a2 * yx).sum(), (a2 * dot(gx, gx)).sum()],
            ]
        )
        g = np.array(
            [
                (a * (a * dot(gy, s0) - dot(gy, f0))).sum(),
                (a * (a * dot(gx, s0) - dot(gx, f0))).sum(),
            ]
        )
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        d -= np.clip(step, -1.0, 1.0)
        if np.abs(step).max() < 1e-4:
            break
    return d


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
    from scipy import fft
    from skimage.registration import phase_cross_correlation

    n_e, n_a = p.shape[:2]
    ref = int(np.argmax(p.reshape(n_e, -1).mean(axis=1))) if reference is None else reference
    # a Hann window keeps the field-of-view edges, which do not move, from pinning the
    # correlation peak at zero shift
    window = np.outer(np.hanning(p.shape[2]), np.hanning(p.shape[3]))

    def spectrum(img: np.ndarray) -> np.ndarray:
        return fft.fftn((img - img.mean()) * window)  # as phase_cross_correlation takes it

    ref_spectra = thread_map(lambda a: spectrum(p[ref, a]), range(n_a))  # once for every energy
    moving = [e for e in range(n_e) if e != ref]

    def peak(task: tuple[int, int]) -> np.ndarray:
        e, a = task
        return phase_cross_correlation(
            ref_spectra[a],
            spectrum(p[e, a]),
            space="fourier",
            upsample_factor=100,
            normalization=None,
        )[0]

    # every energy's angles at once (the threads stay busy)
    per_angle = np.asarray(thread_map(peak, [(e, a) for e in moving for a in range(n_a)]))
    ref_spectra.clear()  # before the refinement's arrays
    shifts = np.zeros((n_e, 2))
    for i, e in enumerate(moving):
        start = -np.median(per_angle[i * n_a : (i + 1) * n_a], axis=0)
        shifts[e] = refine_shift_2d(p[ref], p[e], start)
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
    block: np.ndarray,
    lo: int,
    hi: int,
    dy: float,
    dx: float,
    *,
    variance: bool = False,
    out: np.ndarray | None = None,
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
    out : ndarray, optional
        float32 array of the result's shape to write into.

    Returns
    -------
    ndarray, shape (n_angle, hi - lo, n_col), float32
    """
    n_a, _, n_c = block.shape
    res = np.empty((n_a, hi - lo, n_c), np.float32) if out is None else out
    # a few angles at a time (every angle is shifted alone): small temporaries
    for sl in angle_steps(block.shape):
        part = block[sl]
        part = shift_axis_local(part, lo, hi, dy, axis=1, squared=variance) if dy else part
        if dx:
            part = shift_rows(np.ascontiguousarray(part), -dx)
            if variance:
                part = np.maximum(part, 0.0)
        res[sl] = part
    return res


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


def rows_not_seen_at_all_energies(
    shifts: np.ndarray, n_rows: int, scales: np.ndarray | None = None, axis: int = 0
) -> np.ndarray:
    """Detector rows (``axis=0``) or columns (``axis=1``) that some energy's registration
    moved in from outside the detector."""
    lost = np.zeros(n_rows, dtype=bool)
    if scales is not None and np.any(scales != 1.0):
        c = (n_rows - 1) / 2.0
        for (dy, dx), sc in zip(shifts, scales):
            pos = scaled_positions(0, n_rows, float(sc), float(dy if axis == 0 else dx), c)
            lost |= (pos < -1e-3) | (pos > n_rows - 1 + 1e-3)
        return lost
    for dy in shifts[:, axis]:
        k = int(np.ceil(abs(dy) - 1e-3))
        if k and dy > 0:
            lost[n_rows - k :] = True  # content moved up by dy: the bottom rows came from outside
        elif k:
            lost[:k] = True
    return lost


def warp_image(img: np.ndarray, scale: float, dy: float, dx: float) -> np.ndarray:
    """Sample ``img`` at ``c + scale (r - c) + (dy, dx)`` (bilinear, for the estimation),
    ``c`` the image centre."""
    from scipy import ndimage

    c = (np.asarray(img.shape[-2:], dtype=float) - 1) / 2.0
    offset = c - scale * c + np.array([dy, dx])
    return ndimage.affine_transform(
        img, np.array([scale, scale]), offset=offset, order=1, mode="nearest"
    )


def _score(
    ref: np.ndarray, img: np.ndarray, scale: float, window: np.ndarray, ref_spec: np.ndarray
) -> tuple[float, np.ndarray]:
    """Correlation of ``ref`` (windowed; ``ref_spec`` its 2D spectra) with ``img`` resampled
    at ``scale`` and then windowed, after the best shift."""
    from scipy import fft
    from skimage.registration import phase_cross_correlation

    m = int(0.1 * min(ref.shape[-2:])) + 2

    def one(a: int) -> tuple[float, np.ndarray]:
        w = warp_image(img[a], scale, 0.0, 0.0) * window
        sh = phase_cross_correlation(
            ref_spec[a], fft.fft2(w), space="fourier", upsample_factor=10, normalization=None
        )[0]
        w = warp_image(img[a], scale, -sh[0] * scale, -sh[1] * scale) * window
        r, q = ref[a][m:-m, m:-m], w[m:-m, m:-m]
        r = r - r.mean(dtype=np.float64)
        q = q - q.mean(dtype=np.float64)
        rq = float(np.vdot(r, q))
        return rq / np.sqrt(float(np.vdot(r, r)) * float(np.vdot(q, q)) + 1e-30), sh

    per_angle = thread_map(one, range(ref.shape[0]))  # summed in order: thread-independent
    total = 0.0
    for c, _ in per_angle:
        total += c
    return total / ref.shape[0], np.median(np.asarray([sh for _, sh in per_angle]), axis=0)


def scale_estimates(
    p: np.ndarray,
    reference: int,
    energies: np.ndarray,
    *,
    max_rel: float = 0.05,
    n_angles: int = 4,
) -> np.ndarray:
    """Each energy's image scale relative to the ``reference`` energy, per angle.

    Parameters
    ----------
    p : ndarray, shape (n_energy, n_selected_angles, n_row, n_col)
        Absorbance at a few angles (the registration sample).
    reference : int
        Reference energy.
    energies : ndarray of int
        Energies to estimate (the reference gives ones).
    max_rel : float
        Largest relative scale change searched.
    n_angles : int
        Projections (of the sample) used, spread over it.

    Returns
    -------
    ndarray, shape (energies.size, n_used_angles)
        The scale that best maps each energy's image onto the reference's (correlation of
        the windowed images after the best shift), per angle.
    """
    from scipy import fft
    from scipy.optimize import minimize_scalar

    idx = np.unique(np.linspace(0, p.shape[1] - 1, min(n_angles, p.shape[1])).astype(int))
    # single precision: the correlation's sums and transforms need no more, and cost half
    window = np.outer(np.hanning(p.shape[2]), np.hanning(p.shape[3])).astype(np.float32)

    def reference_of(a: int) -> tuple[np.ndarray, np.ndarray]:
        r = ((p[reference, a] - p[reference, a].mean()) * window).astype(np.float32)[None]
        return r, fft.fft2(r)  # the reference's spectrum, once for every trial scale

    refs = thread_map(reference_of, idx)
    todo = [(i, n) for i in range(idx.size) for n, e in enumerate(energies) if e != reference]

    def search(task: tuple[int, int]) -> float:
        """One angle's and energy's scale (the searches are independent: on threads)."""
        i, n = task
        a, e = idx[i], energies[n]
        r, r_spec = refs[i]
        img = (p[e, a] - p[e, a].mean()).astype(np.float32)[None]
        res = minimize_scalar(
            lambda s: -_score(r, img, s, window, r_spec)[0],
            bounds=(1 - max_rel, 1 + max_rel),
            method="bounded",
            options={"xatol": 2e-5},
        )
        return float(res.x)

    est = np.ones((len(energies), idx.size))
    for (i, n), s in zip(todo, thread_map(search, todo)):
        est[n, i] = s
    return est


def apply_transform(
    block: np.ndarray,
    start: int,
    lo: int,
    hi: int,
    dy: float,
    dx: float,
    scale: float,
    *,
    n_rows: int,
    variance: bool = False,
) -> np.ndarray:
    """Register output rows ``[lo, hi)`` of one energy under a magnification ``scale`` about
    the detector centre and a shift (rows and columns resampled with Lanczos-4).

    Parameters
    ----------
    block : ndarray, shape (n_angle, rows, n_col)
        Detector rows ``[start, start + rows)`` covering
        :func:`xtwin.shifts.scaled_source_rows` (edge-replicated outside the detector).
    start, lo, hi : int
    dy, dx, scale : float
    n_rows : int
        Detector rows (the centre of the magnification is ``(n_rows - 1) / 2``).
    variance : bool
        Propagate variances (squared weights).

    Returns
    -------
    ndarray, shape (n_angle, hi - lo, n_col), float32
    """
    from xtwin.shifts import LANCZOS_A

    out = scale_axis_local(
        block, start, lo, hi, scale, dy, (n_rows - 1) / 2.0, axis=1, squared=variance
    )
    n_c = out.shape[2]
    pad = LANCZOS_A + int(np.ceil(abs(scale - 1) * n_c / 2 + abs(dx))) + 1
    padded = np.pad(out, [(0, 0), (0, 0), (pad, pad)], mode="edge")
    out = scale_axis_local(
        padded, -pad, 0, n_c, scale, dx, (n_c - 1) / 2.0, axis=2, squared=variance
    )
    return np.ascontiguousarray(out, dtype=np.float32)
