"""Three-energy retrieval: exactness on its own model, bias traps, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from xtwin.errors import XtwinInputError
from xtwin.forward.twin import reference_spectra
from xtwin.physics.spectra import normalize
from xtwin.physics.xanes import XanesModel
from xtwin.retrieve import calibrate, retrieve

E3 = np.array([8320.0, 8347.0, 8400.0])


@pytest.fixture(scope="module")
def refs():
    model = XanesModel()
    l, d = reference_spectra(model, np.random.default_rng(0), noise=0.0)
    return model, normalize(l), normalize(d)


def test_recovers_w_from_physical_mu_with_partial_volume(refs):
    """mu from the physics model (dense NMC, any volume fraction, + electrolyte) -> w."""
    from xtwin.physics import materials
    from xtwin.physics.attenuation import mu_per_m

    model, l, d = refs
    cal = calibrate(E3, l, d)
    w = np.linspace(0, 1, 11)
    frac = np.array([1.0, 0.6, 0.3])[:, None]
    mu_nmc = model.nmc532_mu_per_m(E3, w)  # (11, 3)
    elyte = mu_per_m(materials.electrolyte(), E3)
    mu = frac[..., None] * mu_nmc[None] + (1 - frac[..., None]) * elyte  # (3, 11, 3)
    mu = np.moveaxis(mu, -1, 0)
    res = retrieve(mu, np.full(mu.shape, 1e-3), cal, min_jump_fraction=0.0)
    np.testing.assert_allclose(res.lithiation, np.broadcast_to(w, (3, 11)), atol=0.012)


def test_ignoring_the_traps_biases_w(refs):
    """Assuming S(post)=1 and equal J at edge and post-edge biases w (DESIGN.md: ~+0.05)."""
    import dataclasses

    model, l, d = refs
    cal = calibrate(E3, l, d)
    naive = dataclasses.replace(
        cal,
        jump=np.ones(3),
        s_lithiated=np.array([cal.s_lithiated[0], cal.s_lithiated[1], 1.0]),
        s_delithiated=np.array([cal.s_delithiated[0], cal.s_delithiated[1], 1.0]),
    )
    mu = model.nmc532_mu_per_m(E3, np.array([0.5])).T
    good = retrieve(mu, np.full(mu.shape, 1e-3), cal, min_jump_fraction=0).lithiation
    bad = retrieve(mu, np.full(mu.shape, 1e-3), naive, min_jump_fraction=0).lithiation
    assert abs(good[0] - 0.5) < 0.01
    assert abs(bad[0] - 0.5) > 0.02


def test_sigma_matches_monte_carlo(refs):
    model, l, d = refs
    cal = calibrate(E3, l, d)
    rng = np.random.default_rng(5)
    mu0 = model.nmc532_mu_per_m(E3, 0.4)
    sig = 0.02 * mu0
    n = 20000
    mu = mu0[:, None] + sig[:, None] * rng.standard_normal((3, n))
    res = retrieve(
        mu,
        np.broadcast_to(sig[:, None], mu.shape).copy(),
        cal,
        min_jump_fraction=0.0,
        min_jump_snr=0.0,
    )
    w = res.lithiation
    assert np.nanmean(w) == pytest.approx(0.4, abs=0.01)  # bias-corrected ratio
    assert np.nanmedian(res.sigma) == pytest.approx(np.nanstd(w), rel=0.1)


def test_no_ni_is_masked(refs):
    from xtwin.physics import materials
    from xtwin.physics.attenuation import mu_per_m

    _, l, d = refs
    cal = calibrate(E3, l, d)
    mu = np.stack([mu_per_m(materials.electrolyte(), E3)] * 5, axis=1)
    mu = mu + 1e-3 * mu.mean() * np.random.default_rng(1).standard_normal(mu.shape)
    res = retrieve(mu, np.full(mu.shape, 1e-3 * mu.mean()), cal)
    assert not res.mask.any() and np.all(np.isnan(res.lithiation))


@pytest.mark.parametrize(
    "energies, match",
    [
        ([8300.0, 8310.0, 8320.0], "bracket"),
        ([8380.0, 8400.0, 8420.0], "bracket"),
        ([8320.0], "at least two"),
        ([8300.0, 8320.0], "bracket"),
        ([8100.0, 8347.0, 8400.0], "outside"),
    ],
)
def test_bad_energies_are_refused(refs, energies, match):
    _, l, d = refs
    with pytest.raises(XtwinInputError, match=match):
        calibrate(np.array(energies), l, d)


def test_convention_half_range_matches_full_solves(refs):
    """The three-energy shortcut for /li/systematic (two matrix rows per convention, the main
    solution's bias correction) against a full solve per convention, on noisy voxels."""
    from xtwin.retrieve.conventions import convention_references
    from xtwin.retrieve.three_energy import convention_half_range, solve

    model, _, _ = refs
    raw_l, raw_d = reference_spectra(model, np.random.default_rng(1), noise=0.0)
    cals = [calibrate(E3, l, d) for l, d in convention_references(raw_l, raw_d).values()]
    assert len(cals) >= 3
    rng = np.random.default_rng(2)
    w = rng.uniform(0, 1, 2000)
    mu = np.moveaxis(model.nmc532_mu_per_m(E3, w), -1, 0)
    sig = 0.02 * mu
    mu = mu + sig * rng.standard_normal(mu.shape)
    main = solve(mu, sig, cals[0])
    fast = convention_half_range(mu, sig, main, cals[0], tuple(cals[1:]))
    ws = np.stack([main.lithiation] + [solve(mu, sig, c).lithiation for c in cals[1:]])
    full = 0.5 * (np.nanmax(ws, axis=0) - np.nanmin(ws, axis=0))
    ok = np.isfinite(full) & (np.abs(main.lithiation) < 2)
    assert np.median(full[ok]) > 1e-3  # the conventions do differ
    # the shortcut differs from the full solves by much less than the spread itself
    assert np.median(np.abs(fast[ok] - full[ok])) < 0.1 * np.median(full[ok])


def test_convention_half_range_where_writes_only_those_voxels(refs):
    """``where=`` / ``out=`` (the streamed rows: an energy's row of a block, strided) give
    the unmasked values on the chosen voxels and leave the others untouched, for the compiled
    three-energy pass and for the general path (an output that is not contiguous)."""
    from xtwin.retrieve.conventions import convention_references
    from xtwin.retrieve.three_energy import convention_half_range, solve

    model, _, _ = refs
    raw_l, raw_d = reference_spectra(model, np.random.default_rng(1), noise=0.0)
    cals = [calibrate(E3, l, d) for l, d in convention_references(raw_l, raw_d).values()]
    rng = np.random.default_rng(3)
    w = rng.uniform(0, 1, (2, 30, 40))
    block = np.moveaxis(model.nmc532_mu_per_m(E3, w), -1, 0).astype(np.float32)
    mu, sig = block[:, 1], np.float32(0.02) * block[:, 1]  # rows of a block: strided
    assert not mu.flags.c_contiguous
    main = solve(mu, sig, cals[0])
    every = convention_half_range(mu, sig, main, cals[0], tuple(cals[1:]))
    where = rng.uniform(size=mu.shape[1:]) < 0.3
    out = np.full(mu.shape[1:], -7.0, np.float32)
    convention_half_range(mu, sig, main, cals[0], tuple(cals[1:]), where=where, out=out)
    np.testing.assert_array_equal(out[where], every[where])
    assert np.all(out[~where] == -7.0)
    # the general path (full solves; taken for a float64 output), here not contiguous
    every64 = np.full(mu.shape[1:], np.nan)
    convention_half_range(mu, sig, main, cals[0], tuple(cals[1:]), out=every64)
    out64 = np.full((40, 30), -7.0).T
    convention_half_range(mu, sig, main, cals[0], tuple(cals[1:]), where=where, out=out64)
    np.testing.assert_array_equal(out64[where], every64[where])
    assert np.all(out64[~where] == -7.0)
    assert np.median(every64) > 1e-3  # the conventions do differ


# -- a measured chemistry path (calibration series) ------------------------------------------


def _three_state_series(narrow: bool):
    from xtwin.physics.spectra import Spectrum, normalize
    from xtwin.physics.xanes import XanesModel, chemistry_model

    model = XanesModel(chemistry=chemistry_model("three-state", "parametric"))
    grid = np.arange(8330.0, 8370.0, 0.4) if narrow else np.arange(8150.0, 8800.0, 0.5)
    ws = np.array([0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0])
    spectra = []
    for w in ws:
        if narrow:  # as some sources publish them: the pre-edge removed, scaled to a maximum of 1
            s = model.shape(grid, w)
            spectra.append(Spectrum(grid, (s - s[0]) / (s - s[0]).max(), f"w={w}"))
        else:
            spectra.append(Spectrum(grid, model.nmc532_mu_per_m(grid, w) * 5e-6, f"w={w}"))
    return model, ws, tuple(normalize(s) for s in spectra)


@pytest.mark.parametrize("narrow", [False, True])
def test_chemistry_path_retrieves_the_three_state_chemistry(narrow):
    """Noise-free voxels of the three-state chemistry: on the path through seven of its
    spectra w is within 0.02 everywhere (the two end members are off by more than 0.1), also
    from spectra that stop 22 eV above the edge and were scaled to a maximum of 1."""
    from xtwin.retrieve.three_energy import calibrate, solve

    model, ws, norm = _three_state_series(narrow)
    e = np.array([8333.0, 8349.0, 8368.0 if narrow else 8400.0])
    w = np.linspace(0.02, 0.98, 49)
    mu = model.nmc532_mu_per_m(e, w).T
    sig = np.full_like(mu, 1e-6)
    path = calibrate(e, norm[-1], norm[0], series=(ws, norm))
    ends = calibrate(e, norm[-1], norm[0])
    assert np.max(np.abs(solve(mu, sig, path).lithiation - w)) < 0.02
    assert np.max(np.abs(solve(mu, sig, ends).lithiation - w)) > 0.1
    if narrow:  # each narrow spectrum's own edge jump (a 2 eV post-edge): a stack sees it
        return
    # a stack: the per-segment fits
    stack = np.array([8320.0, 8335.0, 8343.0, 8347.0, 8352.0, 8360.0, 8400.0])
    mu7 = model.nmc532_mu_per_m(stack, w).T
    path7 = calibrate(stack, norm[-1], norm[0], series=(ws, norm))
    assert np.max(np.abs(solve(mu7, np.full_like(mu7, 1e-6), path7).lithiation - w)) < 0.02


def test_chemistry_path_noise_bias_at_a_node_is_reduced():
    """At a node where the path bends, noise biases the mean of w (Jensen); the first-order
    correction takes at least a third of it off, and leaves a straight stretch unbiased."""
    import xtwin.retrieve.path as path_module
    from xtwin.retrieve.three_energy import calibrate, solve

    model, ws, norm = _three_state_series(False)
    e = np.array([8333.0, 8349.0, 8400.0])
    cal = calibrate(e, norm[-1], norm[0], series=(ws, norm))
    rng = np.random.default_rng(4)
    truth = solve(
        *(lambda m: (m, np.full_like(m, 1e-6)))(model.nmc532_mu_per_m(e, [[0.6]]).T.reshape(3, 1)),
        cal,
    ).lithiation[0]
    mu0 = model.nmc532_mu_per_m(e, np.full(200_000, 0.6)).T
    noisy = mu0 + 1500.0 * rng.standard_normal(mu0.shape)
    sig = np.full_like(noisy, 1500.0)
    corrected = float(np.mean(solve(noisy, sig, cal).lithiation)) - truth
    h = path_module._h
    try:
        path_module._h = lambda z: 0.0 * z
        plain = float(np.mean(solve(noisy, sig, cal).lithiation)) - truth
    finally:
        path_module._h = h
    assert abs(plain) > 0.01
    assert abs(corrected) < 0.67 * abs(plain)


def test_chemistry_path_pools_nodes_the_energies_cannot_tell_apart():
    from xtwin.retrieve.three_energy import calibrate

    _, ws, norm = _three_state_series(False)
    twice = norm[:3] + (norm[2],) + norm[3:]  # a repeat of the w = 0.4 spectrum called 0.45
    w = np.array([0.0, 0.2, 0.4, 0.45, 0.5, 0.6, 0.8, 1.0])
    cal = calibrate(np.array([8333.0, 8349.0, 8400.0]), norm[-1], norm[0], series=(w, twice))
    assert cal.path is not None and cal.path.lithiation.size < w.size
    assert any("0.45" in p for p in cal.path.pooled)


def test_three_energy_solve_and_mask_keep_ieee_nan_and_match_float64(refs):
    """The compiled solve gives the float64 formulas to float32 rounding; a voxel with a NaN
    attenuation, or a zero edge jump with a zero sigma (0 / 0), is not masked as Ni."""
    from xtwin.retrieve.three_energy import solve

    _, l, d = refs
    cal = calibrate(E3, l, d)
    rng = np.random.default_rng(3)
    coef = np.stack([rng.uniform(1e4, 3e4, 200), rng.uniform(1e4, 3e4, 200), rng.random(200)])
    coef[2] *= coef[1]
    mu = (cal.matrix @ coef).astype(np.float32)
    sig = np.full_like(mu, 300.0)
    mu[:, 5] = np.nan
    mu[:, 6] = 0.0
    sig[:, 6] = 0.0
    got = solve(mu, sig, cal)
    pinv = np.linalg.pinv(cal.matrix)
    b, j, k = pinv @ mu.astype(np.float64)
    var = sig.astype(np.float64) ** 2
    c_jj, c_kk, c_jk = pinv[1] ** 2 @ var, pinv[2] ** 2 @ var, (pinv[1] * pinv[2]) @ var
    with np.errstate(all="ignore"):
        w = k / j - (k / j * c_jj - c_jk) / j**2
        s = np.sqrt(np.maximum(c_kk - 2 * w * c_jk + w * w * c_jj, 0)) / np.abs(j)
    ok = np.isfinite(w)
    assert np.allclose(got.lithiation[ok], w[ok], atol=1e-5)
    assert np.allclose(got.sigma[ok], s[ok], rtol=1e-4)
    assert np.allclose(got.edge_jump, j, rtol=1e-5, equal_nan=True)
    res = retrieve(mu, sig, cal, jump_reference_per_m=float(np.nanmax(j)))
    assert not res.mask[5] and not res.mask[6] and np.isnan(res.lithiation[[5, 6]]).all()
    assert res.mask[ok & (j > 0.2 * np.nanmax(j))].all()
