"""xtwin's gridding (the type-1 transform of the Fourier FBP) against FINUFFT at 1e-7."""

from __future__ import annotations

import finufft
import numpy as np
import pytest

from xtwin.recon._gridding import PolarGridder
from xtwin.recon.fourier import FourierFBP


@pytest.mark.parametrize("n", [32, 33, 96])
def test_gridding_matches_a_tight_nufft_at_any_points(n):
    """Points anywhere in [-pi, pi]^2 (the grid's wrap-around included) and random complex
    coefficients (a white image, the hardest case): the real part of the transform within
    5e-3 rms (relative) of FINUFFT at 1e-7 inside the disc of radius 0.45 n (measured
    2.5-2.9e-3; 9e-4 for the FBP of a phantom), and within 3e-2 over the whole square (the
    corners, outside the field of view, are where a kernel of 4 cells on a grid oversampled
    1.25 times aliases most: measured 1.2-1.8e-2)."""
    rng = np.random.default_rng(n)
    x, y = (rng.uniform(-np.pi, np.pi, 20000).astype(np.float32) for _ in range(2))
    c = (rng.standard_normal(20000) + 1j * rng.standard_normal(20000)).astype(np.complex64)
    ref = finufft.nufft2d1(
        x.astype(np.float64), y.astype(np.float64), c.astype(np.complex128), (n, n), eps=1e-7
    )
    out = np.empty((n, n), np.float32)
    PolarGridder(x, y, n).coefficients(c, None, out)
    k = np.arange(-(n // 2), n - n // 2)
    disc = np.hypot(k[:, None], k[None, :]) < 0.45 * n

    def err(mask):
        return np.sqrt(np.mean((out - ref.real)[mask] ** 2) / np.mean(ref.real[mask] ** 2))

    assert err(disc) < 5e-3, err(disc)
    assert err(np.ones_like(disc)) < 3e-2, err(np.ones_like(disc))
    # the same transform spread twice as much would be twice as large: not a tautology
    assert np.sqrt(np.mean((2 * out - ref.real) ** 2) / np.mean(ref.real**2)) > 0.5


def test_pair_of_spectra_is_each_slice_alone():
    """Two slices packed as a + i b and spread at the points and their mirror images give
    each slice as its own transform gives it (to float32 rounding)."""
    rng = np.random.default_rng(1)
    geom = FourierFBP(48, np.linspace(0, 180, 60, endpoint=False))
    s = rng.random((2, 60, 48)).astype(np.float32)
    pair = geom.fbp(s)
    for k in range(2):
        alone = geom.fbp(s[k])
        assert np.abs(pair[k] - alone).max() <= 1e-5 * np.abs(alone).max()
