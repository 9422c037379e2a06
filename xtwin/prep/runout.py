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

The vertical offsets come from all projections, read in blocks of rows (bounded memory). The
horizontal centre of mass fails when the sample touches the edge of the field of view, so the
horizontal offsets come from projection matching on 16 rows
(:func:`horizontal_offsets_reprojection`). The offsets are applied with the same finite
kernels as the energy registration, and reported.

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


def profile_shift(profiles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Sub-pixel shift of each 1D profile relative to ``reference`` (positive: the profile
    sits at higher indices): the integer cross-correlation peak, then the shift that minimizes
    the squared difference after a Fourier (band-limited) shift, within one pixel of it."""
    from scipy import fft
    from scipy.optimize import minimize_scalar

    from xtwin.shifts import shift_rows

    n = reference.size
    m = fft.next_fast_len(2 * n)
    ref = reference - reference.mean()
    spec_ref = np.conj(fft.rfft(ref, m))
    out = np.zeros(profiles.shape[0])
    for i, prof in enumerate(profiles):
        cc = fft.irfft(fft.rfft(prof - prof.mean(), m) * spec_ref, m)
        k = int(np.argmax(cc))
        k0 = k - m if k > m / 2 else k

        def cost(d: float, prof: np.ndarray = prof) -> float:
            return float(np.sum((shift_rows(prof, -d) - reference) ** 2))

        res = minimize_scalar(
            cost, bounds=(k0 - 1.0, k0 + 1.0), method="bounded", options={"xatol": 1e-3}
        )
        out[i] = float(res.x)
    return out


def offsets_from_sums(
    vertical_profiles: np.ndarray, com_x: np.ndarray, theta_deg: np.ndarray
) -> tuple[np.ndarray, dict]:
    """(n_angle, 2) offsets (rows, cols) of one energy's projections from their vertical
    profiles (n_angle, n_row) and horizontal centres of mass (n_angle,)."""
    ref = np.median(vertical_profiles, axis=0)
    dz = profile_shift(vertical_profiles, ref)
    dz -= np.median(dz)
    th = np.radians(theta_deg)
    design = np.column_stack([np.cos(th), np.sin(th), np.ones_like(th)])
    coef, *_ = np.linalg.lstsq(design, com_x, rcond=None)
    dx = com_x - design @ coef
    off = np.column_stack([dz, dx])
    return off, {
        "rms_rows_px": float(np.sqrt(np.mean(dz**2))),
        "rms_cols_px": float(np.sqrt(np.mean(dx**2))),
        "max_px": float(np.abs(off).max()),
    }


def estimate_offsets(
    read_rows: Callable[[int, int], np.ndarray],
    n_rows: int,
    n_cols: int,
    theta_deg: np.ndarray,
    block: int = 32,
) -> tuple[np.ndarray, dict]:
    """Per-projection offsets of one energy, reading ``read_rows(r0, r1) -> (n_angle, rows,
    n_col)`` absorbance block by block."""
    n_a = np.size(theta_deg)
    prof = np.zeros((n_a, n_rows))
    sx = np.zeros(n_a)
    s0 = np.zeros(n_a)
    x = np.arange(n_cols, dtype=np.float64)
    for r0 in range(0, n_rows, block):
        r1 = min(r0 + block, n_rows)
        p = np.maximum(read_rows(r0, r1).astype(np.float64), 0.0)
        prof[:, r0:r1] = p.sum(axis=2)
        sx += (p.sum(axis=1) * x).sum(axis=1)
        s0 += p.sum(axis=(1, 2))
    com = sx / np.maximum(s0, 1e-30)
    return offsets_from_sums(prof, com, theta_deg)


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
    return out


def horizontal_offsets_reprojection(
    sinos: np.ndarray,
    theta_deg: np.ndarray,
    center_offset_px: float = 0.0,
    *,
    n_iter: int = 10,
    max_px: float = 8.0,
) -> np.ndarray:
    """Horizontal offset of each projection by projection matching: reconstruct a few slices
    with the current offsets, reproject, and move each projection to best match its
    reprojection (normalized cross-correlation over the slices), a few times over [1]_.

    Works where the horizontal centre of mass cannot: samples wider than the field of view or
    touching its edge.

    Parameters
    ----------
    sinos : ndarray, shape (n_slice, n_angle, n_col)
        Absorbance sinograms of a few detector rows.
    theta_deg : ndarray
    center_offset_px : float
    n_iter : int
    max_px : float
        Largest offset searched.

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
    from scipy.optimize import minimize_scalar

    from xtwin.recon.fourier import FourierFBP
    from xtwin.shifts import shift_rows

    n_s, n_a, n_c = sinos.shape
    geom = FourierFBP(n_c, theta_deg, center_offset_px)
    dx = np.zeros(n_a)
    th = np.radians(theta_deg)
    design = np.column_stack([np.cos(th), np.sin(th), np.ones_like(th)])
    for _ in range(n_iter):
        aligned = np.stack(
            [shift_rows(sinos[:, k, :].astype(np.float32), -dx[k]) for k in range(n_a)], axis=1
        )
        reproj = geom.project(geom.fbp(aligned))
        new = np.zeros(n_a)
        for k in range(n_a):
            meas, ref = sinos[:, k, :].astype(np.float64), reproj[:, k, :].astype(np.float64)
            ref = ref - ref.mean(axis=1, keepdims=True)

            def cost(d: float, meas: np.ndarray = meas, ref: np.ndarray = ref) -> float:
                m = shift_rows(meas, -d)
                m = m - m.mean(axis=1, keepdims=True)
                return -float(np.sum(m * ref) / np.sqrt(np.sum(m * m) * np.sum(ref * ref) + 1e-30))

            lo_d, hi_d = dx[k] - 2.0, dx[k] + 2.0
            res = minimize_scalar(
                cost,
                bounds=(max(lo_d, -max_px), min(hi_d, max_px)),
                method="bounded",
                options={"xatol": 1e-3},
            )
            new[k] = float(res.x)
        coef, *_ = np.linalg.lstsq(design, new, rcond=None)
        new -= design @ coef  # a sinusoid is a shifted sample, not run-out
        if np.max(np.abs(new - dx)) < 0.01:
            dx = new
            break
        dx = new
    return dx


def match_per_angle(moving: np.ndarray, fixed: np.ndarray, max_px: float = 8.0) -> np.ndarray:
    """Horizontal shift of each projection of ``moving`` relative to ``fixed`` (both
    ``(n_slice, n_angle, n_col)``): the integer cross-correlation peak summed over the slices,
    refined by maximizing the normalized correlation after a Fourier shift (positive: ``moving``
    sits at higher column indices). Used between energies: the sample is the same, so the
    projections at one angle differ only by contrast and by the stage's jitter."""
    from scipy import fft
    from scipy.optimize import minimize_scalar

    from xtwin.shifts import shift_rows

    n_s, n_a, n_c = moving.shape
    m = fft.next_fast_len(2 * n_c)
    out = np.zeros(n_a)
    for k in range(n_a):
        mv = moving[:, k, :].astype(np.float64)
        fx = fixed[:, k, :].astype(np.float64)
        mv0 = mv - mv.mean(axis=1, keepdims=True)
        fx0 = fx - fx.mean(axis=1, keepdims=True)
        cc = fft.irfft(fft.rfft(mv0, m) * np.conj(fft.rfft(fx0, m)), m).sum(axis=0)
        j = int(np.argmax(cc))
        j0 = float(j - m if j > m / 2 else j)
        j0 = float(np.clip(j0, -max_px, max_px))

        def cost(d: float, mv: np.ndarray = mv, fx0: np.ndarray = fx0) -> float:
            q = shift_rows(mv, -d)
            q = q - q.mean(axis=1, keepdims=True)
            return -float(np.sum(q * fx0) / np.sqrt(np.sum(q * q) * np.sum(fx0 * fx0) + 1e-30))

        res = minimize_scalar(
            cost, bounds=(j0 - 1.0, j0 + 1.0), method="bounded", options={"xatol": 1e-3}
        )
        out[k] = float(res.x)
    return out
