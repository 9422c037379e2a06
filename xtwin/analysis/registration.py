"""Registration of a later Li map onto the first of an operando series, on the Ni edge jump
``J`` (it does not depend on the lithiation).

The rotation about the rotation axis (the volume's z): a coarse search (0.5 degree steps)
and a fine one (0.1 degree) about its best, each trial rotation scored by the normalized
correlation after a 3D phase correlation has given its shift (applied in Fourier space, so
no trial is favoured by being interpolated less), a parabola through the fine peak; then the
3D shift at full resolution. Uncertainties: the spread of the same estimate on four z-slabs
(rotation, in-plane shift) and on the halves of the volume in y and in x (z shift), divided
by the square root of their number, with floors at the estimates' resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Rotation search about the rotation axis (degrees) and its step.
ROTATION_RANGE_DEG = 3.0
ROTATION_STEP_DEG = 0.25

#: Floors of the registration's uncertainty: the resolution of the estimates.
SHIFT_FLOOR_PX = 0.05
ROTATION_FLOOR_DEG = 0.02


@dataclass(frozen=True)
class Motion:
    """How a time point is brought back onto the first: rotate its (y, x) slices by
    ``-rotation_deg`` about their centre, then shift by ``shift_px`` (z, y, x; px); with
    standard uncertainties. The sample itself turned by ``rotation_deg`` (positive turning +y
    towards +x) and moved by :attr:`sample_shift_px`.

    The residual tilt (``tilt_deg``: turns in the (z, x) and the (z, y) planes) and isotropic
    ``scale`` are estimated after that rigid pose, with their sigmas; ``affine`` says they
    were beyond three sigma (and 0.1 degree, or 0.1 %) and are applied after the rigid pose:
    the sample map at ``p`` is taken at ``p + u(p)`` with the linear displacement ``u`` of
    :func:`_displacement`."""

    shift_px: np.ndarray
    rotation_deg: float
    shift_sigma_px: np.ndarray
    rotation_sigma_deg: float
    tilt_deg: tuple[float, float] = (0.0, 0.0)
    tilt_sigma_deg: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    scale_sigma: float = 0.0
    affine: bool = False
    residual_shift_px: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def sample_shift_px(self) -> np.ndarray:
        """The sample's displacement (z, y, x; px) relative to the first time point."""
        a = np.radians(self.rotation_deg)
        c = self.shift_px
        y = np.cos(a) * c[1] - np.sin(a) * c[2]
        x = np.sin(a) * c[1] + np.cos(a) * c[2]
        return -np.array([c[0], y, x])

    def as_dict(self) -> dict[str, float]:
        """The sample's motion (displacement, rotation, tilt, scale) and the uncertainties."""
        s = self.sample_shift_px
        return {
            "dz_px": float(s[0]),
            "dy_px": float(s[1]),
            "dx_px": float(s[2]),
            "rotation_deg": float(self.rotation_deg),
            "dz_sigma_px": float(self.shift_sigma_px[0]),
            "dy_sigma_px": float(self.shift_sigma_px[1]),
            "dx_sigma_px": float(self.shift_sigma_px[2]),
            "rotation_sigma_deg": float(self.rotation_sigma_deg),
            "tilt_zx_deg": float(self.tilt_deg[0]),
            "tilt_zy_deg": float(self.tilt_deg[1]),
            "tilt_zx_sigma_deg": float(self.tilt_sigma_deg[0]),
            "tilt_zy_sigma_deg": float(self.tilt_sigma_deg[1]),
            "scale": float(self.scale),
            "scale_sigma": float(self.scale_sigma),
            "tilt_scale_applied": bool(self.affine),
        }


def _clean(a: np.ndarray) -> np.ndarray:
    """Finite, scaled to a maximum of 1 (sums of large edge jumps overflow float32 in the
    phase correlation)."""
    out = np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0)
    top = float(np.max(np.abs(out))) if out.size else 0.0
    return out / top if top > 0 else out


def _rotate_yx(vol: np.ndarray, angle_deg: float, order: int = 1) -> np.ndarray:
    """Rotate every (y, x) slice about its centre by ``angle_deg`` (counter-clockwise)."""
    from scipy import ndimage

    # no shortcut at 0: every trial angle is interpolated alike (an uninterpolated candidate
    # would be sharper, and favoured, by the correlation)
    return ndimage.rotate(vol, angle_deg, axes=(-1, -2), reshape=False, order=order, cval=0.0)


def _shift(img: np.ndarray, shift: np.ndarray, order: int = 1) -> np.ndarray:
    from scipy import ndimage

    return ndimage.shift(img, shift, order=order, cval=0.0)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _motion_of(
    ref: np.ndarray, mov: np.ndarray, centre: float = 0.0, half_range: float = ROTATION_RANGE_DEG
) -> tuple[float, np.ndarray]:
    """(rotation, (dz, dy, dx)) taking ``mov`` onto ``ref`` (volumes of J): for each trial
    rotation a 3D phase correlation gives the shift, scored by the normalized correlation of
    the aligned volumes; a coarse search (0.5 degree steps), a fine one about its best (0.1
    degree steps) and a parabola through the fine peak."""
    coarse = _best_angle(ref, mov, centre, half_range, 0.5)[0]
    fine, angles, scores = _best_angle(ref, mov, coarse, 0.3, 0.1)
    best = fine
    i = int(np.argmax(scores))
    if 0 < i < len(angles) - 1:  # parabola through the peak and its neighbours
        s0, s1, s2 = scores[i - 1], scores[i], scores[i + 1]
        den = s0 - 2 * s1 + s2
        if den < 0:
            best = float(angles[i] + 0.5 * (angles[1] - angles[0]) * (s0 - s2) / den)
    return best, _shift_after(ref, mov, best)


def _best_angle(
    ref: np.ndarray, mov: np.ndarray, centre: float, half_range: float, step: float
) -> tuple[float, np.ndarray, list[float]]:
    """The best of the trial rotations ``centre +- half_range`` every ``step`` degrees (the
    grid leaves out ``centre`` itself: every candidate is resampled alike; an unresampled one
    would be sharper, and win on that alone), with the angles and their scores."""
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    angles = centre + np.arange(-half_range, half_range + 1e-9, step) + 0.5 * step
    # cubic splines (linear interpolation would blur the candidates unevenly), their
    # coefficients computed once in the rotation plane
    coef = ndimage.spline_filter1d(ndimage.spline_filter1d(mov, 3, axis=-1), 3, axis=-2)
    scores = []
    for a in angles:
        rot = ndimage.rotate(
            coef, -a, axes=(-1, -2), reshape=False, order=3, cval=0.0, prefilter=False
        )
        shift = phase_cross_correlation(ref, rot, upsample_factor=20)[0]
        # a Fourier shift: an interpolating one blurs non-integer shifts and would favour
        # the candidates whose shift happens to be a whole number of voxels
        moved = np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(rot), shift)).real
        scores.append(_ncc(ref, moved))
    return float(angles[int(np.argmax(scores))]), angles, scores


def _shift_after(ref: np.ndarray, mov: np.ndarray, angle: float) -> np.ndarray:
    """The 3D shift taking ``mov``, turned back by ``angle``, onto ``ref``."""
    from skimage.registration import phase_cross_correlation

    rot = _rotate_yx(mov, -angle)
    return np.asarray(phase_cross_correlation(ref, rot, upsample_factor=20)[0], dtype=float)


def _binned(a: np.ndarray, f: int) -> np.ndarray:
    """Block means of ``f`` voxels in y and x (z kept: the rotation axis)."""
    if f <= 1:
        return a
    nz, ny, nx = a.shape
    a = a[:, : ny // f * f, : nx // f * f]
    return a.reshape(nz, ny // f, f, nx // f, f).mean(axis=(2, 4))


def _halves(shape: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """The halves of a (z, y, x) volume in y and in x."""
    ny, nx = shape[1], shape[2]
    return [
        (slice(None), slice(0, ny // 2)),
        (slice(None), slice(ny // 2, None)),
        (slice(None), slice(None), slice(0, nx // 2)),
        (slice(None), slice(None), slice(nx // 2, None)),
    ]


def register(ref_jump: np.ndarray, jump: np.ndarray) -> Motion:
    """The pose of ``jump`` relative to ``ref_jump`` (see the module docstring): the rotation
    and shift that bring it back onto the reference, with their uncertainties: for the
    in-plane shift and the rotation the spread over four z-slabs, for the z shift the spread
    over the halves of the volume in y and in x. Slices wider than 128 pixels are binned for
    the rotation search (the shift is then measured at full resolution)."""
    from scipy import ndimage

    ref, mov = _clean(ref_jump), _clean(jump)
    f = max(1, int(np.ceil(max(ref.shape[1:]) / 128)))
    rb, mb = _binned(ref, f), _binned(mov, f)
    angle, _ = _motion_of(rb, mb)
    shift = _shift_after(ref, mov, angle)
    nz, ny, nx = ref.shape
    ests = []
    if nz >= 16:
        for k in range(4):
            sl = slice(k * nz // 4, (k + 1) * nz // 4)
            a, sh = _motion_of(rb[sl], mb[sl], angle, 0.5)  # about the whole volume's
            ests.append(np.r_[sh[1:] * f, a])
    back = _rotate_yx(mov, -angle)
    zs = [_shift_after(ref[h], back[h], 0.0)[0] for h in _halves(ref.shape)]
    sig = np.full(4, np.nan)
    if ests:
        e = np.array(ests)
        sig[1:] = e.std(axis=0, ddof=1) / np.sqrt(len(ests))
    sig[0] = float(np.std(zs, ddof=1) / np.sqrt(len(zs)))
    # the estimates' resolution (upsampled phase correlation, angle refinement) as a floor
    sig[:3] = np.maximum(np.nan_to_num(sig[:3], nan=SHIFT_FLOOR_PX), SHIFT_FLOOR_PX)
    # a turn is seen as the shift of features a quarter of the slice from the axis: the
    # shifts' resolution there bounds it (0.18 degree on 64 pixels, 0.011 on 1024); the
    # slabs share the systematic errors of the edge jump, so their spread alone is too small
    floor = max(ROTATION_FLOOR_DEG, float(np.degrees(SHIFT_FLOOR_PX / (0.25 * min(ny, nx)))))
    sig[3] = max(float(np.nan_to_num(sig[3], nan=floor)), floor)
    rigid = Motion(shift, angle, sig[:3], float(sig[3]))
    aligned = apply_motion(np.where(np.isfinite(jump), mov, np.nan), rigid)
    # fit where both maps measured, away from the edges of their fields of view (fixed to
    # the instrument, they would pull the estimate towards no tilt and no scale)
    inside = ndimage.binary_erosion(np.isfinite(ref_jump) & np.isfinite(aligned), iterations=3)
    return _with_tilt_and_scale(rigid, ref, np.nan_to_num(aligned), inside, f)


def apply_motion(vol: np.ndarray, motion: Motion, order: int = 1) -> np.ndarray:
    """``vol`` brought into the reference frame (rotation, then shift, then the tilt and
    scale where :attr:`Motion.affine`); NaN stays NaN where ``order`` > 0 by moving a
    finite-mask alongside."""
    finite = np.isfinite(vol)
    data = np.where(finite, vol, 0).astype(np.float32)
    out = _shift(_rotate_yx(data, -motion.rotation_deg, order), motion.shift_px, order)
    if motion.affine:
        out = _warp(out, _params(motion), order)
    if order == 0:
        return out
    weight = _shift(
        _rotate_yx(finite.astype(np.float32), -motion.rotation_deg, 1), motion.shift_px, 1
    )
    if motion.affine:
        weight = _warp(weight, _params(motion), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = np.where(weight > 0.99, out / np.maximum(weight, 1e-6), np.nan)
    return res.astype(np.float32)


# -- residual tilt and scale -----------------------------------------------------------------

#: Least tilt (degrees) and scale change applied (besides three sigma).
TILT_FLOOR_DEG = 0.1
SCALE_FLOOR = 1e-3


def _centred(shape: tuple[int, ...], spacing) -> tuple[np.ndarray, ...]:
    """Coordinates (z, y, x; px) of a grid of ``shape`` whose voxels are ``spacing`` px
    apart, about its centre, as broadcastable open grids."""
    return tuple(
        ((np.arange(n) - (n - 1) / 2.0) * d).reshape([-1 if a == ax else 1 for a in range(3)])
        for ax, (n, d) in enumerate(zip(shape, spacing))
    )


def _params(m: Motion) -> np.ndarray:
    return np.r_[np.radians(m.tilt_deg), m.scale - 1.0, m.residual_shift_px]


def _warp(vol: np.ndarray, theta: np.ndarray, order: int, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """``vol`` sampled at ``p + u(p)``: ``u`` the linear displacement of the parameters
    ``theta`` (turn in the (z, x) plane ``a``, turn in the (z, y) plane ``b``, isotropic scale
    ``s``, shift z, y, x) about the grid's centre, in px::

        u_z = s z + b y + a x + t_z,   u_y = -b z + s y + t_y,   u_x = -a z + s x + t_x
    """
    from scipy import ndimage

    a, b, sc = theta[:3]
    g = np.array([[sc, b, a], [-b, sc, 0.0], [-a, 0.0, sc]])
    d = np.asarray(spacing, dtype=float)
    c = (np.asarray(vol.shape, dtype=float) - 1) / 2.0
    lin = g * d[None, :] / d[:, None]  # in voxel indices
    matrix = np.eye(3) + lin
    offset = -lin @ c + np.asarray(theta[3:], dtype=float) / d
    return ndimage.affine_transform(vol, matrix, offset=offset, order=order, cval=0.0).astype(
        np.float32
    )


def _fit_residual(ref: np.ndarray, aligned: np.ndarray, keep: np.ndarray, spacing) -> np.ndarray:
    """Gauss-Newton (up to six steps) for the six residual parameters taking ``aligned`` onto
    ``ref``: ``ref(p) ~ aligned(p + u(p))`` (``u`` as in :func:`_warp`)."""
    from scipy import ndimage

    z, y, x = _centred(ref.shape, spacing)
    theta = np.zeros(6)
    for _ in range(6):
        cur = _warp(aligned, theta, 1, spacing).astype(np.float64)
        gz, gy, gx = np.gradient(ndimage.gaussian_filter(cur, 0.5), *spacing)
        # the derivative of cur(p + u(p)) with respect to each parameter
        jac = [gz * x - gx * z, gz * y - gy * z, gz * z + gy * y + gx * x, gz, gy, gx]
        a = np.stack([j[keep] for j in jac], axis=1)
        r = (ref - cur)[keep]
        if a.shape[0] < 60:
            break
        step = np.linalg.lstsq(a, r, rcond=None)[0]
        theta += step
        if np.max(np.abs(step[:3])) < 1e-6:
            break
    return theta


def _with_tilt_and_scale(
    rigid: Motion, ref: np.ndarray, aligned: np.ndarray, inside: np.ndarray, f: int
) -> Motion:
    """The rigid pose with the residual tilt and scale estimated on the volumes binned ``f``
    times in y and x (and in z to at most 128 planes) over the voxels ``inside``, their
    sigmas from the four halves of the volume (in y and in x), and applied where
    significant."""
    import dataclasses

    nz, ny, nx = ref.shape
    if nz < 8:  # too thin to tell a tilt
        return rigid
    fz = max(1, int(np.ceil(nz / 128)))  # at most 128 x 128 x 128 values in the fit
    spacing = (float(fz), float(f), float(f))

    def binned(a: np.ndarray) -> np.ndarray:
        b = _binned(a, f)
        n = b.shape[0] // fz * fz
        return b[:n].reshape((n // fz, fz) + b.shape[1:]).mean(axis=1)

    rb, ab = binned(ref), binned(aligned)
    kb = binned(inside.astype(np.float64)) > 0.999
    theta = _fit_residual(rb, ab, kb, spacing)
    parts = np.array([_fit_residual(rb[h], ab[h], kb[h], spacing) for h in _halves(rb.shape)])
    sig = parts.std(axis=0, ddof=1) / np.sqrt(len(parts))
    tilt = np.degrees(theta[:2])
    tilt_sig = np.degrees(sig[:2])
    big_tilt = np.any((np.abs(tilt) > 3 * tilt_sig) & (np.abs(tilt) > TILT_FLOOR_DEG))
    big_scale = abs(theta[2]) > 3 * sig[2] and abs(theta[2]) > SCALE_FLOOR
    return dataclasses.replace(
        rigid,
        tilt_deg=(float(tilt[0]), float(tilt[1])),
        tilt_sigma_deg=(float(tilt_sig[0]), float(tilt_sig[1])),
        scale=float(1.0 + theta[2]),
        scale_sigma=float(sig[2]),
        affine=bool(big_tilt or big_scale),
        residual_shift_px=(float(theta[3]), float(theta[4]), float(theta[5])),
    )
