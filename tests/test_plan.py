"""The noise model, the planner and the systematic outputs, checked against the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xtwin.cli import main
from xtwin.errors import XtwinInputError


def test_fbp_gain_follows_dose_fractionation():
    """White projection noise: the FBP variance scales as 1 / n_angles (dose fractionation)."""
    from xtwin.plan.noise import fbp_noise_gain

    g = {n: fbp_noise_gain(n) * n for n in (30, 90, 360)}
    assert max(g.values()) / min(g.values()) < 1.02


def test_region_factor_beats_white_noise_averaging():
    """Ramp-filtered noise averages faster than 1/n over a particle, and a single voxel's
    'region' is the voxel itself."""
    from xtwin.plan.noise import region_factor

    r = 6.0
    n_vox = 4 / 3 * np.pi * r**3
    f = region_factor(90, r)
    assert 0 < f < 1 / n_vox
    assert region_factor(90, 0.5) == pytest.approx(1.0, rel=0.25)


def test_noise_model_agrees_with_the_pipeline(demo_run):
    """The predicted sigma of mu per energy and of w in dense interior voxels against what
    the pipeline reports for the demo scan (within 10 % and 20 %)."""
    from xtwin.forward.scenario import default_scenario
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import read_truth
    from xtwin.plan.noise import AcquisitionPlan, SampleModel, predict
    from xtwin.validate.metrics import interior_mask

    sc = default_scenario()
    a, g, m = sc.acquisition, sc.grid, sc.microstructure
    lm, tr = read_limap(demo_run / "limap.h5"), read_truth(demo_run / "truth.h5")
    inner = interior_mask(tr) & np.isfinite(lm.lithiation)
    w = float(np.nanmean(tr.lithiation[inner]))
    p = predict(
        SampleModel(
            diameter_m=m.pillar_diameter_fraction * g.n_pixels * g.pixel_size_m, lithiation=w
        ),
        AcquisitionPlan(
            tuple(a.energies_eV), (a.photons_per_pixel,) * 3, a.n_angles, g.pixel_size_m, a.n_flats
        ),
    )
    n = lm.lithiation.shape[1]
    c = slice(n // 2 - 3, n // 2 + 3)
    measured_mu = np.sqrt(np.mean(lm.mu_sigma_per_m[:, :, c, c] ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(measured_mu, p.sigma_mu_per_m, rtol=0.10)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    centre = inner & (np.hypot(yy, xx) < n / 4)[None]
    assert centre.sum() > 1000
    err = (lm.lithiation - tr.lithiation)[centre]
    assert float(np.nanmedian(lm.sigma[centre])) == pytest.approx(p.sigma_w_voxel, rel=0.2)
    assert float(np.sqrt(np.mean(err**2))) == pytest.approx(p.sigma_w_voxel, rel=0.3)


def test_plan_beats_naive_and_reacts_to_energy_uncertainty():
    from xtwin.plan.planner import make_plan

    plan = make_plan(0.02, level="voxel")
    naive = make_plan(0.02, level="voxel", naive=True)
    assert plan.dose_gy < naive.dose_gy
    assert plan.predicted_total <= 0.02 + 1e-9
    assert make_plan(0.02, level="voxel") == plan  # deterministic
    # a 0.5 eV calibration uncertainty moves the energies off the steep edge ...
    robust = make_plan(0.05, level="particle", energy_uncertainty_eV=0.5)
    assert robust.energies_eV != plan.energies_eV
    # ... where the noise-only plan's energies would carry a much larger calibration bias
    fixed = make_plan(
        0.5, level="particle", energy_uncertainty_eV=0.5, energies_eV=tuple(plan.energies_eV)
    )
    assert (
        robust.systematic_terms["energy_calibration"]
        < 0.5 * (fixed.systematic_terms["energy_calibration"])
    )
    with pytest.raises(XtwinInputError, match="systematic terms alone"):
        make_plan(0.02, naive=True, energy_uncertainty_eV=0.5)


def test_plan_counts_the_three_state_chemistry_model_bias():
    """At w = 0.6 (where Ni2+ is used up) the three-state Ni chemistry puts a model bias on the
    two-end-member retrieval: the naive energies carry several times the two-state model term,
    and the plan keeps the total within the target by choosing its energies."""
    from xtwin.plan.noise import SampleModel
    from xtwin.plan.planner import make_plan

    two = SampleModel(lithiation=0.6)
    three = SampleModel(lithiation=0.6, ni_chemistry="three-state")
    naive2 = make_plan(0.5, level="particle", sample=two, naive=True)
    naive3 = make_plan(0.5, level="particle", sample=three, naive=True)
    assert naive3.systematic_terms["model"] > 0.02
    assert naive3.systematic_terms["model"] > 4 * naive2.systematic_terms["model"]
    plan3 = make_plan(0.05, level="particle", sample=three)
    assert plan3.predicted_total <= 0.05 + 1e-9
    assert plan3.systematic_terms["model"] < naive3.systematic_terms["model"]


def test_plan_cli_json(capsys):
    rc = main(["plan", "--target-sigma", "0.03", "--level", "voxel", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "energies_eV",
        "photons_per_pixel",
        "n_angles",
        "dose_gy",
        "predicted_sigma",
        "predicted_systematic",
    ):
        assert key in out
    assert len(out["energies_eV"]) == len(out["photons_per_pixel"]) == 3
    assert main(["plan", "--target-sigma", "0.03", "--max-dose-gy", "1"]) == 2
    assert "max-dose-gy" in capsys.readouterr().err
    assert main(["plan", "--target-sigma", "2"]) == 2


def test_plan_scenario_is_simulable(tmp_path):
    from xtwin.forward.scenario import load_scenario, photons_per_energy

    out = tmp_path / "plan.toml"
    assert (
        main(["plan", "--target-sigma", "0.05", "--level", "voxel", "--scenario-out", str(out)])
        == 0
    )
    sc = load_scenario(out)
    plan = json.loads(json.dumps(sc.acquisition.energies_eV))
    assert len(plan) == 3
    photons = photons_per_energy(sc.acquisition)
    assert len(set(round(p) for p in photons)) > 1  # the split is kept


def test_process_reports_systematic_beside_sigma(demo_run):
    import h5py

    with h5py.File(demo_run / "limap.h5", "r") as f:
        s = f["/li/systematic"]
        conv = json.loads(s.attrs["conventions"])
        assert conv[0] == "xtwin" and len(conv) >= 3
        sys_map = s[()]
        lith = f["/li/lithiation"][()]
        assert np.isfinite(sys_map[np.isfinite(lith)]).all()
        assert 0 < s.attrs["map_median"] < 0.1


def test_narrow_references_are_flagged(tmp_path, shared_data, demo_run):
    """The NMC622 spectra stop 24 eV above the edge: the normalization falls back to a narrow
    range, and process says so with the numbers."""
    import h5py

    spectra = shared_data / "spectra"
    out = tmp_path / "narrow.h5"
    scan = demo_run / "scan.h5"
    rc = main(
        [
            "process",
            str(scan),
            "--lithiated",
            str(spectra / "nmc622_ni_k_pristine_1.csv"),
            "--delithiated",
            str(spectra / "nmc622_ni_k_4p3V_1.csv"),
            "-o",
            str(out),
        ]
    )
    if rc == 0:
        with h5py.File(out, "r") as f:
            notes = json.loads(f["/provenance"].attrs["notes"])
        assert any("fell back" in n and "eV" in n for n in notes)
    else:
        # the demo's post-edge energy (8400 eV) lies outside these references: refused
        assert rc == 2


def test_low_count_log_bias_is_removed():
    from xtwin.prep.normalize import normalize_block

    rng = np.random.default_rng(0)
    t = 0.4
    for lam in (15, 60):
        data = rng.poisson(lam, (100, 40, 40)).astype(np.uint16)
        flats = rng.poisson(lam / t, (10, 40, 40)).astype(np.uint16)
        p, v, _ = normalize_block(data, flats, None)
        # uncorrected, -ln n is biased by about 1 / (2 lam): 0.033 and 0.008 here
        assert abs(float(p.mean()) + np.log(t)) < 0.2 / (2 * lam)


def test_plan_counts_a_quick_xanes_and_recommends_one():
    """An uncertain energy scale (0.3 eV) is recommended a quick XANES (with its dose); a plan
    with one counts its dose and the calibrated uncertainty instead, at a lower total dose;
    the default states that it assumes an exact energy scale."""
    from xtwin.errors import XtwinInputError
    from xtwin.plan.planner import CALIBRATED_UNCERTAINTY_EV, make_plan

    loose = make_plan(0.02, energy_uncertainty_eV=0.3)
    assert any("--quick-xanes" in n for n in loose.notes)
    assert loose.calibration["counted_energy_uncertainty_eV"] == 0.3
    calibrated = make_plan(0.02, energy_uncertainty_eV=0.3, quick_xanes_energies=25)
    cal = calibrated.calibration
    assert cal["counted_energy_uncertainty_eV"] == CALIBRATED_UNCERTAINTY_EV
    assert 0 < cal["quick_xanes_dose_gy"] < 0.2 * calibrated.dose_gy
    assert calibrated.dose_gy < loose.dose_gy
    assert not any("--quick-xanes" in n for n in calibrated.notes)
    exact = make_plan(0.02)
    assert "assumed exact" in exact.calibration["assumption"]
    assert "calibration" in exact.to_dict()
    with pytest.raises(XtwinInputError, match="8 or more"):
        make_plan(0.02, quick_xanes_energies=4)
