"""The residual tilt and scale of the series registration, on a phantom written without
xtwin: a sample tilted or magnified between time points is recovered and corrected; a still
one reports neither."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xtwin.analysis.registration import apply_motion, register


def _blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((40, 64, 64))
    vol = np.zeros(z.shape)
    for _ in range(40):
        c = rng.uniform([5, 8, 8], [35, 56, 56])
        r = rng.uniform(3, 6)
        vol += (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r
    return ndimage.gaussian_filter(vol, 0.7)


def _transformed(vol: np.ndarray, tilt_zx_deg: float, tilt_zy_deg: float, scale: float):
    """``vol`` turned in the (z, x) and (z, y) planes and magnified about its centre: the
    sample's voxel at ``q`` moves to ``q + u(q)`` (inverse map, small angles)."""
    shape = np.array(vol.shape)
    c = (shape - 1) / 2.0
    a, b = np.radians(tilt_zx_deg), np.radians(tilt_zy_deg)
    # forward map p -> A p about the centre; sample the original at A^-1 (p - c) + c
    m = scale * np.array([[1.0, b, a], [-b, 1.0, 0.0], [-a, 0.0, 1.0]])
    inv = np.linalg.inv(m)
    return ndimage.affine_transform(vol, inv, offset=c - inv @ c, order=3)


@pytest.mark.parametrize(
    "tilt_zx, tilt_zy, scale, applied",
    [(0.8, 0.0, 1.0, True), (0.0, -0.6, 1.01, True), (0.0, 0.0, 1.0, False)],
)
def test_tilt_and_scale_recovered_and_corrected(tilt_zx, tilt_zy, scale, applied):
    rng = np.random.default_rng(1)
    ref = _blobs(0)
    y, x = np.ogrid[:64, :64]
    disc = ((y - 31.5) ** 2 + (x - 31.5) ** 2 < 31**2)[None]
    mov = _transformed(ref, tilt_zx, tilt_zy, scale)
    noisy = [np.where(disc, v + 0.02 * rng.standard_normal(v.shape), np.nan) for v in (ref, mov)]
    m = register(*noisy)
    assert m.affine == applied
    assert m.tilt_deg[0] == pytest.approx(tilt_zx, abs=max(0.1, 3 * m.tilt_sigma_deg[0]))
    assert m.tilt_deg[1] == pytest.approx(tilt_zy, abs=max(0.1, 3 * m.tilt_sigma_deg[1]))
    assert m.scale == pytest.approx(scale, abs=max(0.002, 3 * m.scale_sigma))
    if applied:  # corrected: closer to the reference than the rigid pose alone
        import dataclasses

        inner = disc & (np.indices(ref.shape)[0] > 5) & (np.indices(ref.shape)[0] < 34)
        rigid = dataclasses.replace(m, affine=False)
        err = [np.nanmean((apply_motion(noisy[1], p) - ref)[inner] ** 2) for p in (m, rigid)]
        assert err[0] < 0.7 * err[1], err
