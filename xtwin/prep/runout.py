"""Per-projection alignment: the rotation stage's run-out and jitter.

Every projection of a tomogram can sit a little off on the detector (a stage that wobbles as
it turns, vibration), which blurs and streaks the reconstruction. Two invariants of parallel-
beam projections of an object inside the horizontal field of view give the offsets without a
reconstruction [1]:

* the **vertical profile** ``P(z) = sum_x p_theta(x, z)`` is the same at every angle (it is the
  attenuation integrated over each horizontal slice), so each projection's vertical offset is
  the sub-pixel shift that best matches its profile to the median profile over the angles;
* the **horizontal centre of mass** ``x_c(theta) = sum x p / sum p`` of a fixed object traces
  ``A cos(theta) + B sin(theta) + C``: what the fit leaves is the horizontal offset.

The vertical offsets come from all projections of a central band of rows. The horizontal
centre of mass is noisy on a wide detector (its empty columns weigh in with a long lever arm)
and fails when the sample touches the edge of the field of view, so unless it can rule run-out
out, the horizontal offsets come from projection matching on a few rows
(:func:`horizontal_offsets_reprojection`), each energy against its own reprojection, kept only
where undoing them lowers the reprojection residual significantly
(:func:`reprojection_residual_drop`). The offsets are applied with the same finite kernels as
the energy registration, and reported.

References
----------
.. [1] S. G. Azevedo, D. J. Schneberk, J. P. Fitch and H. E. Martz, "Calculation of the
   rotational centers in computed tomography sinograms," IEEE Trans. Nucl. Sci. 37,
   1525-1540 (1990).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Offsets are applied when their rms reaches this (px) in either direction.
MIN_RUNOUT_RMS_PX = 0.2


def rotation_terms(d: np.ndarray, theta_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a displaced sample (or axis) gives of per-angle detector offsets ``d``: the
    constant and the ``a cos(theta) + b sin(theta)`` part, fitted together by least squares;
    ``(constant, harmonic)``, each ``(n_angle,)``."""
    th = np.radians(theta_deg)
    design = np.column_stack([np.ones_like(th), np.cos(th), np.sin(th)])
    coef, *_ = np.linalg.lstsq(design, d, rcond=None)
    return design[:, :1] @ coef[:1], design[:, 1:] @ coef[1:]


def offsets_from_sums(
    vertical_profiles: np.ndarray, com_x: np.ndarray, theta_deg: np.ndarray
) -> tuple[np.ndarray, dict]:
    """(n_angle, 2) offsets (rows, cols) of one energy's projections from their vertical
    profiles (n_angle, n_row) and horizontal centres of mass (n_angle,)."""
    ref = np.median(vertical_profiles, axis=0)
    n_a, n_r = vertical_profiles.shape
    dz = cc_shifts(vertical_profiles[None], np.broadcast_to(ref, (1, n_a, n_r)), max_px=n_r / 4)
    dz -= np.median(dz)
    # how well a profile pins a shift: noise of the profiles over the square root of the
    # reference's gradient energy (a profile without structure pins nothing)
    from xtwin.shifts import shift_rows

    aligned = np.stack([shift_rows(pr, -d) for pr, d in zip(vertical_profiles, dz)])
    resid = (aligned - ref[None, :])[:, 3:-3]  # the noise, once the shifts are undone
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    grad = np.gradient(ref)
    sigma_dz = float(noise / np.sqrt(np.sum(grad**2) + 1e-30))
    structured = np.sqrt(np.mean(grad**2)) > 3 * noise / np.sqrt(vertical_profiles.shape[0])
    structured = structured and np.sqrt(np.mean(grad**2)) > noise
    if not structured or np.sqrt(np.mean(dz**2)) < 3 * sigma_dz:
        dz = np.zeros_like(dz)  # no vertical structure to pin a shift, or not significant
    constant, harmonic = rotation_terms(com_x, theta_deg)
    dx = com_x - constant - harmonic
    off = np.column_stack([dz, dx])
    return off, {
        "sigma_rows_px": sigma_dz,
        "rms_rows_px": float(np.sqrt(np.mean(dz**2))),
        "rms_cols_px": float(np.sqrt(np.mean(dx**2))),
        "max_px": float(np.abs(off).max()),
    }


def estimate_offsets(
    read_rows: Callable[[int, int, slice], tuple[np.ndarray, np.ndarray]],
    row_range: tuple[int, int],
    n_cols: int,
    theta_deg: np.ndarray,
    block: int = 32,
    per_angle: bool = False,
) -> tuple[np.ndarray, dict]:
    """Per-projection offsets of one energy from detector rows ``row_range``, reading
    ``read_rows(r0, r1, angles) -> (absorbance, variance)``, each ``(n_angle_selected, rows,
    n_col)``, at most ``block`` rows of every angle at a time, or (``per_angle``: the reader
    normalizes each angle on its own) as many angles of every row in the range: a scan stored
    one projection per chunk is then read one pass over its chunks, not one per block of rows.

    Besides the offsets, the info says how far the horizontal centre of mass can be trusted:
    ``sigma_cols_px`` (its noise, from the variance: a wide detector's empty columns weigh in
    with a long lever arm), ``excess_cols_px`` (the rms of the residual beyond that noise) and
    ``mass_rel_std`` (the projected mass should not change with the angle; it does when the
    sample leaves the field of view, and then the centre of mass says nothing).
    """
    n_a = np.size(theta_deg)
    lo, hi = row_range
    prof = np.zeros((n_a, hi - lo))
    sx = np.zeros(n_a)
    s0 = np.zeros(n_a)
    col_var = np.zeros((n_a, n_cols))
    x = np.arange(n_cols, dtype=np.float64)
    if per_angle:  # every row, a few angles at a time (the same number of values)
        step = max(1, block * n_a // max(hi - lo, 1))
        parts = [((lo, hi), slice(a, min(a + step, n_a))) for a in range(0, n_a, step)]
    else:
        parts = [((r, min(r + block, hi)), slice(0, n_a)) for r in range(lo, hi, block)]
    for (r0, r1), ang in parts:
        p, v = read_rows(r0, r1, ang)
        p = np.maximum(p, np.float32(0.0))  # single precision: the sums accumulate in float64
        prof[ang, r0 - lo : r1 - lo] = p.sum(axis=2, dtype=np.float64)
        rows = p.sum(axis=1, dtype=np.float64)  # (angles, n_col)
        sx[ang] += rows @ x
        s0[ang] += rows.sum(axis=1)
        col_var[ang] += v.sum(axis=1, dtype=np.float64)
    s0 = np.maximum(s0, 1e-30)
    com = sx / s0
    off, info = offsets_from_sums(prof, com, theta_deg)
    # var(x_c) = sum (x - x_c)^2 var(p) / (sum p)^2, first order
    var_com = ((x[None, :] - com[:, None]) ** 2 * col_var).sum(axis=1) / s0**2
    sigma = float(np.sqrt(np.median(var_com)))
    info["sigma_cols_px"] = sigma
    info["excess_cols_px"] = float(np.sqrt(max(info["rms_cols_px"] ** 2 - sigma**2, 0.0)))
    info["mass_rel_std"] = float(np.std(s0) / np.mean(s0))
    return off, info


def quick_look_conclusive(info: dict) -> bool:
    """Whether the vertical profiles and the centre of mass can rule run-out out: the
    centre of mass is precise enough (noise below half the threshold) and the projected mass
    stays the same at every angle (the sample stays in the field of view)."""
    return info["sigma_cols_px"] < 0.5 * MIN_RUNOUT_RMS_PX and info["mass_rel_std"] < 0.01


def shift_per_angle(
    block: np.ndarray, start: int, lo: int, hi: int, offsets: np.ndarray, *, variance: bool = False
) -> np.ndarray:
    """Undo per-projection offsets: output rows ``[lo, hi)`` of each angle sample the input at
    ``(r + dz_a, x + dx_a)`` (Lanczos-4 across rows from ``block``, rows ``[start, ...)``;
    Fourier along the rows)."""
    from xtwin.shifts import scale_axis_local

    n_a = block.shape[0]
    out = np.empty((n_a, hi - lo, block.shape[2]), dtype=np.float32)
    for k in range(n_a):
        dz, dx = (float(v) for v in offsets[k])
        out[k] = scale_axis_local(block[k], start, lo, hi, 1.0, dz, 0.0, axis=0, squared=variance)
    dxs = offsets[:, 1].astype(np.float64)
    if np.any(dxs):
        from scipy import fft

        n = out.shape[2]
        pad = int(np.ceil(np.abs(dxs).max())) + 4
        total = fft.next_fast_len(n + 2 * pad, real=True)
        padded = np.pad(out, [(0, 0), (0, 0), (pad, total - n - pad)], mode="edge")
        freq = np.fft.rfftfreq(total)
        ramp = np.exp(2j * np.pi * freq[None, :] * dxs[:, None]).astype(np.complex64)
        res = fft.irfft(fft.rfft(padded, axis=-1) * ramp[:, None, :], n=total, axis=-1)
        out = np.ascontiguousarray(res[..., pad : pad + n], dtype=np.float32)
        if variance:
            np.maximum(out, 0.0, out=out)
        fill_unseen_columns(out, dxs)
    return out


def unseen_columns(n_col: int, dx: np.ndarray) -> np.ndarray:
    """(n_angle, n_col) True where a column, once an angle's horizontal offset ``dx`` is
    undone, lay outside the detector (it samples the input at ``x + dx``)."""
    x = np.arange(n_col)[None, :] + np.asarray(dx, dtype=np.float64)[:, None]
    return (x < -0.5) | (x > n_col - 0.5)


def fill_unseen_columns(proj: np.ndarray, dx: np.ndarray) -> None:
    """Fill in place the columns of ``proj`` ``(n_angle, rows, n_col)`` that lay outside the
    detector at their angle (:func:`unseen_columns`) from the nearest angles that saw them
    (linear along the angle, the sinogram's smooth direction).

    A sample that touches the edge of the field leaves it at some angles under run-out; the
    edge padding of the shift put the edge value there instead. Such an inconsistent sinogram
    biases the whole slice, and differently at each energy (each has its own jitter): about
    -0.01 of lithiation in the particles of a pillar filling 90 % of the field with 2 px of
    run-out and 1 px of jitter, with the true offsets undone."""
    unseen = unseen_columns(proj.shape[-1], dx)
    if not unseen.any():
        return
    idx = np.arange(proj.shape[0])
    for c in np.flatnonzero(unseen.any(axis=0)):
        seen = ~unseen[:, c]
        if not seen.any():
            continue
        for r in range(proj.shape[1]):
            proj[~seen, r, c] = np.interp(idx[~seen], idx[seen], proj[seen, r, c])


def undo_column_shifts(sinos: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Sinograms ``(n_slice, n_angle, n_col)`` with each angle's horizontal offset ``dx[k]``
    undone (Fourier shift along the columns, edge-padded), float32."""
    from xtwin.shifts import shift_rows

    return np.stack(
        [shift_rows(sinos[:, k, :].astype(np.float32), -dx[k]) for k in range(dx.size)], axis=1
    )


def horizontal_offsets_reprojection(
    sinos: np.ndarray,
    theta_deg: np.ndarray,
    center_offset_px: float = 0.0,
    *,
    n_iter: int = 100,
    max_px: float = 8.0,
    tol_px: float = 0.002,
    dx0: np.ndarray | None = None,
) -> np.ndarray:
    """Horizontal offset of each projection by projection matching: reconstruct a few slices
    with the current offsets, reproject, and move each projection to best match its
    reprojection (normalized cross-correlation over the slices), until the offsets change by
    less than ``tol_px`` [1]_.

    The reconstruction from misaligned projections carries their misalignment, so each round
    recovers part of what is left (a fixed-point iteration); the update is over-relaxed by
    :data:`RELAXATION`, which halves the number of rounds (twin with 2 px of run-out and 1 px
    of jitter on 64 columns: 24 rounds instead of 37 to 0.04 px rms). Convergence is slow
    (each round leaves a large fraction of what is left), so the tolerance is tight: 0.01 px
    stopped 3 % short of the offsets, 0.002 px leaves 1 %.

    Works where the horizontal centre of mass cannot: samples wider than the field of view or
    touching its edge.

    Parameters
    ----------
    sinos : ndarray, shape (n_slice, n_angle, n_col)
        Absorbance sinograms of a few detector rows.
    theta_deg : ndarray
    center_offset_px : float
    n_iter : int
        Most rounds.
    max_px : float
        Largest offset searched.
    tol_px : float
        Stop when no offset changes by more than this in a round.
    dx0 : ndarray, optional
        Offsets to start from (default: none).

    Returns
    -------
    ndarray, shape (n_angle,)
        Offsets (positive: the projection sits at higher column indices), zero mean, with the
        sinusoid of a shifted sample removed.

    References
    ----------
    .. [1] D. Gürsoy, Y. P. Hong, K. He, K. Hujsak, S. Yoo, S. Chen, Y. Li, M. Ge, L. M.
       Miller, Y. S. Chu, V. De Andrade, K. He, O. Cossairt, A. K. Katsaggelos and C. Jacobsen,
       "Rapid alignment of nanotomography data using joint iterative reconstruction and
       reprojection," Sci. Rep. 7, 11818 (2017).
    """
    from xtwin.recon.fourier import FourierFBP

    n_s, n_a, n_c = sinos.shape
    geom = FourierFBP(n_c, theta_deg, center_offset_px, field="padded")
    dx = np.zeros(n_a) if dx0 is None else np.asarray(dx0, dtype=np.float64).copy()
    for _ in range(n_iter):
        aligned = undo_column_shifts(sinos, dx)
        reproj = geom.project(geom.fbp(aligned))
        new = cc_shifts(sinos, reproj, max_px=max_px)
        constant, harmonic = rotation_terms(new, theta_deg)
        new -= constant + harmonic  # a sinusoid is a shifted sample, not run-out
        change = float(np.max(np.abs(new - dx)))
        dx = dx + RELAXATION * (new - dx)
        if change < tol_px:
            break
    return dx


#: Over-relaxation of the projection-matching update (2 diverges on the twin).
RELAXATION = 1.5


#: Horizontal offsets from projection matching are kept when undoing them lowers the
#: reprojection residual by at least this fraction (0.3 % on clean twin scans, 77-92 % with
#: 0.3-2 px of run-out or jitter).
MIN_RESIDUAL_DROP = 0.05


def reprojection_residual_drop(
    sinos: np.ndarray, theta_deg: np.ndarray, center_offset_px: float, dx: np.ndarray
) -> float:
    """Relative drop of the reprojection residual ``|| P F S - S ||^2`` (FBP ``F``, projection
    ``P``, sinograms ``S``) when the horizontal offsets ``dx`` are undone: the significance of
    the offsets (fitting noise lowers it by about the number of angles over the number of
    values)."""
    from xtwin.recon.fourier import FourierFBP

    geom = FourierFBP(sinos.shape[2], theta_deg, center_offset_px, field="padded")
    edge = min(8, sinos.shape[2] // 8)

    def residual(d: np.ndarray) -> float:
        al = undo_column_shifts(sinos, d)
        r = geom.project(geom.fbp(al)) - al
        return float(np.sum(r[..., edge : r.shape[-1] - edge] ** 2))

    r0 = residual(np.zeros_like(dx))
    return (r0 - residual(dx)) / r0 if r0 > 0 else 0.0


def cc_shifts(
    moving: np.ndarray, fixed: np.ndarray, *, max_px: float = 8.0, upsample: int = 32
) -> np.ndarray:
    """Horizontal shift of each projection of ``moving`` relative to ``fixed`` (both
    ``(n_slice, n_angle, n_col)``; positive: ``moving`` sits at higher column indices), from
    the cross-correlation summed over the slices, upsampled ``upsample`` times by zero-padding
    its spectrum, then refined by :func:`refine_shifts` (free contrast and offset, so profiles,
    reprojections and other energies' projections can be matched). Each angle is estimated on
    its own, :data:`ANGLE_CHUNK` angles at a time (the upsampled correlation of every angle at
    once took 95 MB at 361 angles of 512 columns)."""
    from scipy import fft

    n_c = moving.shape[2]
    m = fft.next_fast_len(2 * n_c)
    big = m * upsample
    lag = np.arange(big) / upsample
    lag = np.where(lag > m / 2, lag - m, lag)
    d0 = np.empty(moving.shape[1])
    for a in range(0, moving.shape[1], ANGLE_CHUNK):
        sl = slice(a, a + ANGLE_CHUNK)
        mv = moving[:, sl] - moving[:, sl].mean(axis=2, keepdims=True)
        fx = fixed[:, sl] - fixed[:, sl].mean(axis=2, keepdims=True)
        cross = (fft.rfft(mv, m, axis=2) * np.conj(fft.rfft(fx, m, axis=2))).sum(axis=0)
        cc = fft.irfft(cross, big, axis=1)  # (angles, big): lag j / upsample pixels
        cc = np.where(np.abs(lag) <= max_px, cc, -np.inf)
        d0[sl] = lag[np.argmax(cc, axis=1)]
    return refine_shifts(moving, fixed, d0)


#: Angles matched at once by :func:`cc_shifts` and :func:`refine_shifts` (each angle's shift
#: is its own estimate: the chunk bounds their temporaries, not their results).
ANGLE_CHUNK = 32


def refine_shifts(
    moving: np.ndarray, fixed: np.ndarray, d0: np.ndarray, n_iter: int = 5
) -> np.ndarray:
    """Gauss-Newton refinement of the shifts ``d`` that minimize ``|| a S(d) + b - fixed ||^2``
    per angle (``S(d)``: ``moving`` moved back by ``d`` with a Fourier shift; ``a``, ``b`` a
    free contrast and offset, so energies of different contrast can be matched), each angle on
    its own, :data:`ANGLE_CHUNK` at a time. The cross-correlation peak alone is biased toward
    zero for finite rows."""
    d = np.asarray(d0, dtype=np.float64).copy()
    # compared only where the moved images hold data at every angle: a sample that touches
    # the edge of the field leaves it at some angles, and the edge padding is not the sample
    # (matching the padding pulled the offsets 7 % short and left 0.2 px rms of error)
    margin = min(int(np.ceil(np.abs(d).max(initial=0.0))) + 2, moving.shape[2] // 4)
    for a in range(0, moving.shape[1], ANGLE_CHUNK):
        sl = slice(a, a + ANGLE_CHUNK)
        d[sl] = _refine_chunk(moving[:, sl], fixed[:, sl], d[sl], n_iter, margin)
    return d


def _refine_chunk(
    moving: np.ndarray, fixed: np.ndarray, d: np.ndarray, n_iter: int, m: int
) -> np.ndarray:
    """:func:`refine_shifts` on some angles, comparing columns ``[m, n_col - m)``."""
    from scipy import fft

    n_s, n_a, n_c = moving.shape
    pad = n_c // 2
    total = fft.next_fast_len(n_c + 2 * pad, real=True)
    mp = np.pad(moving.astype(np.float64), [(0, 0), (0, 0), (pad, total - n_c - pad)], mode="edge")
    spec = fft.rfft(mp, axis=2)
    del mp
    freq = np.fft.rfftfreq(total)
    inner = slice(m, n_c - m)
    fx = fixed.astype(np.float64)[..., inner]
    for _ in range(n_iter):
        ramp = np.exp(2j * np.pi * freq[None, :] * d[:, None])  # moves back by d
        sh = spec * ramp[None]
        sv = fft.irfft(sh, total, axis=2)[..., pad : pad + n_c][..., inner]
        # S(x) = moving(x + d): d S / d d is the spatial derivative of S
        gv = fft.irfft(sh * (2j * np.pi * freq)[None, None, :], total, axis=2)
        gv = gv[..., pad : pad + n_c][..., inner]
        # best contrast and offset per angle (least squares over slices and columns)
        sm, fm = sv.mean(axis=(0, 2), keepdims=True), fx.mean(axis=(0, 2), keepdims=True)
        s0, f0 = sv - sm, fx - fm
        a = (s0 * f0).sum(axis=(0, 2)) / np.maximum((s0 * s0).sum(axis=(0, 2)), 1e-30)
        r = a[None, :, None] * s0 - f0
        g = a[None, :, None] * (gv - gv.mean(axis=(0, 2), keepdims=True))
        step = (r * g).sum(axis=(0, 2)) / np.maximum((g * g).sum(axis=(0, 2)), 1e-30)
        d = d - np.clip(step, -1.0, 1.0)
    return d
