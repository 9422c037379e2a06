"""The streaming pipeline's array reuse gives the same numbers as fresh arrays.

Block arrays come from a scratch, the normalization and the registration shifts work a few
angles at a time, and each thread keeps its NUFFT plan: each must give what the plain
whole-array computation gives, to the bit where the arithmetic is the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from xtwin.pipeline._read import Scratch


def test_scratch_reuses_its_buffer_and_grows_when_asked_for_more():
    s = Scratch()
    a = s.get("p", (3, 4, 5))
    a[...] = 7.0
    b = s.get("p", (3, 4, 4))  # smaller: a prefix of the same buffer, C-contiguous
    assert np.shares_memory(a, b) and b.flags.c_contiguous and b.shape == (3, 4, 4)
    c = s.get("p", (3, 4, 6))  # larger: a new buffer
    assert not np.shares_memory(a, c) and c.shape == (3, 4, 6)
    d = s.get("mask", (2, 2), bool)
    assert d.dtype == bool and not np.shares_memory(c, d)


def _plain_normalize(data, flats, dark, g, ratio):
    """The normalization written on whole arrays (the formulas of xtwin.prep.normalize)."""
    dark = dark.astype(np.float32)
    flat_raw = flats.astype(np.float32).mean(axis=0)
    flat = flat_raw - dark
    flat_rel_var = np.float32(g) * flat_raw / (flats.shape[0] * flat**2)
    flat = flat * np.float32(ratio)
    signal = data.astype(np.float32) - dark
    signal = np.maximum(signal, np.float32(0.5))
    p = -np.log(signal / flat)
    var = np.maximum(data.astype(np.float32), np.float32(0.5)) * np.float32(g) / signal**2
    p = p - np.float32(0.5) * (var - flat_rel_var)
    return p, var + flat_rel_var


@pytest.mark.parametrize("n_angle", [1, 7, 200])
def test_normalization_in_steps_of_angles_equals_whole_array_formula(n_angle):
    rng = np.random.default_rng(n_angle)
    from xtwin.prep import normalize as nz

    n_r, n_c = 40, 300  # several angles per step, and a last partial step
    data = rng.poisson(800.0, (n_angle, n_r, n_c)).astype(np.uint16)
    data[0, 0, :3] = 0  # clamped values
    flats = rng.poisson(1000.0, (5, n_r, n_c)).astype(np.uint16)
    dark = rng.poisson(20.0, (n_r, n_c)).astype(np.float32)
    old = nz.STEP_VALUES
    try:
        nz.STEP_VALUES = 3 * n_r * n_c
        p, v, report = nz.normalize_block(
            data, flats, dark, counts_per_photon=1.3, exposure_ratio=0.9
        )
    finally:
        nz.STEP_VALUES = old
    p_ref, v_ref = _plain_normalize(data, flats, dark, 1.3, 0.9)
    np.testing.assert_allclose(p, p_ref, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(v, v_ref, rtol=2e-6)
    assert report.clamped == 3
    assert any("3 values" in n and "clamped" in n for n in report.lines())
    # into given arrays: the same values, in them
    out = (np.empty(data.shape, np.float32), np.empty(data.shape, np.float32))
    p2, v2, _ = nz.normalize_block(
        data, flats, dark, counts_per_photon=1.3, exposure_ratio=0.9, out=out
    )
    assert p2 is out[0] and v2 is out[1]
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(v2, v)


def test_registration_shift_in_steps_equals_one_pass():
    """apply_shift works a few angles at a time; every angle is shifted alone, so the
    result is the one-pass shift to the bit."""
    from xtwin.prep.register import apply_shift
    from xtwin.shifts import shift_axis_local, shift_rows, source_rows

    rng = np.random.default_rng(3)
    n_a, n_c, lo, hi, dy, dx = 300, 257, 10, 30, 1.37, -0.61
    a, b = source_rows(lo, hi, dy)
    block = rng.random((n_a, b - a, n_c)).astype(np.float32)
    for variance in (False, True):
        got = apply_shift(block, lo, hi, dy, dx, variance=variance)
        ref = shift_rows(
            np.ascontiguousarray(shift_axis_local(block, lo, hi, dy, axis=1, squared=variance)),
            -dx,
        )
        if variance:
            ref = np.maximum(ref, 0.0)
        np.testing.assert_array_equal(got, ref.astype(np.float32))


def test_kept_nufft_plan_gives_the_one_off_transform():
    """FourierFBP keeps a plan per thread for small batches: the same slice reconstructed in
    a batch of 3 (kept plan) and of 9 (one-off transform) agrees to float32 rounding, and a
    second call with the kept plan is bit-identical to the first."""
    from xtwin.recon.fourier import FourierFBP

    rng = np.random.default_rng(5)
    theta = np.linspace(0.0, 180.0, 90, endpoint=False)
    g = FourierFBP(64, theta, 0.3)
    sinos = rng.random((9, 90, 64)).astype(np.float32)
    small = g.fbp(sinos[:3])
    again = g.fbp(sinos[:3])
    big = g.fbp(sinos)
    np.testing.assert_array_equal(small, again)
    scale = float(np.abs(big).max())
    np.testing.assert_allclose(small, big[:3], rtol=0, atol=1e-5 * scale)


def test_a_list_of_angles_read_from_a_file_equals_fancy_indexing(tmp_path):
    """Angles given as a list are read from HDF5 as runs of consecutive slices (h5py's list
    selection is 30 times slower): any order, repeats and negative indices give what numpy's
    indexing of the same array gives."""
    from xtwin.io.scan import ScanData, write_scan
    from xtwin.io.source import open_scan

    rng = np.random.default_rng(5)
    data = rng.integers(100, 4000, (2, 12, 6, 5)).astype(np.uint16)
    scan = ScanData(
        data=data,
        flats=rng.integers(4000, 5000, (2, 3, 6, 5)).astype(np.uint16),
        darks=None,
        theta_deg=np.linspace(0, 180, 12, endpoint=False),
        energy_eV=np.array([8320.0, 8400.0]),
        pixel_size_m=4e-8,
    )
    path = tmp_path / "scan.h5"
    write_scan(path, scan)
    with open_scan([path]) as src:
        for angles in ([0, 1, 2, 7, 8, 11], [3, 3, 2, 10, -1], [5], list(range(12))):
            got = src.projections(1, 1, 5, np.asarray(angles))
            np.testing.assert_array_equal(got, data[1, angles, 1:5])
