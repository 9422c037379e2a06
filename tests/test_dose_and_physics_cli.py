"""Dose against a hand calculation; the `xtwin physics` planning view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xraylib

from xtwin.cli import main
from xtwin.physics import materials
from xtwin.physics.dose import acquisition_dose, nmc532_mu_en_rho_cm2_g, transmission


def test_dose_hand_calculation():
    """NMC532 at 8300 eV: mu_en/rho 76.38 cm2/g; 20,000 photons per 400 nm pixel, 121 angles.

    fluence = 2e4 * 121 / (4e-7 m)^2 = 1.5125e19 /m2; E = 8300 eV = 1.32981e-15 J;
    dose = 1.5125e19 * 1.32981e-15 * 7.638 m2/kg = 1.5363e5 Gy.
    """
    mu_en = xraylib.CS_Energy_CP("LiNi0.5Mn0.3Co0.2O2", 8.3)
    assert mu_en == pytest.approx(76.38, abs=0.01)
    rep = acquisition_dose(
        np.array([mu_en]),
        np.array([8300.0]),
        photons_per_pixel=2e4,
        n_projections=121,
        pixel_size_m=4e-7,
    )
    assert rep.fluence_per_m2[0] == pytest.approx(1.5125e19, rel=1e-6)
    assert rep.total_Gy == pytest.approx(1.5363e5, rel=1e-3)


def test_dose_adds_over_energies_and_attenuates_upstream():
    e = np.array([8320.0, 8347.0, 8400.0])
    mu_en = nmc532_mu_en_rho_cm2_g(e, 0.5)
    one = acquisition_dose(mu_en, e, photons_per_pixel=1e4, n_projections=100, pixel_size_m=3e-8)
    assert one.total_Gy == pytest.approx(one.dose_Gy.sum())
    deep = acquisition_dose(
        mu_en,
        e,
        photons_per_pixel=1e4,
        n_projections=100,
        pixel_size_m=3e-8,
        upstream_optical_depth=1.0,
    )
    np.testing.assert_allclose(deep.dose_Gy, one.dose_Gy * np.exp(-1.0))


def test_nmc_mu_en_matches_xraylib_far_above_edge():
    import dataclasses

    from xtwin.physics.xanes import DELITHIATED_DEFAULT, LITHIATED_DEFAULT, XanesModel

    model = XanesModel(
        dataclasses.replace(LITHIATED_DEFAULT, exafs_amplitude=0),
        dataclasses.replace(DELITHIATED_DEFAULT, exafs_amplitude=0),
    )
    x = float(materials.x_from_lithiation(1.0))
    ref = xraylib.CS_Energy_CP(materials.nmc532_formula(x), 8.5)
    assert nmc532_mu_en_rho_cm2_g(np.array([8500.0]), 1.0, model)[0] == pytest.approx(ref, rel=0.01)


def test_transmission_beer_lambert():
    t = transmission([(materials.kapton(), 50e-6), (materials.aluminium(), 0.0)], 8300.0)
    mu = xraylib.CS_Total_CP("C22H10N2O5", 8.3) * 1.42 * 100
    assert t[0] == pytest.approx(np.exp(-mu * 50e-6), rel=1e-3)


def test_physics_json_records(capsys):
    assert main(["physics", "--energies", "8300,8345,8400", "--lithiation", "0,1", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    keys = {
        "material",
        "energy_eV",
        "lithiation",
        "mu_rho_cm2_g",
        "mu_per_um",
        "attenuation_length_um",
        "mu_en_rho_cm2_g",
    }
    assert all(keys <= set(r) for r in recs)
    nmc = [r for r in recs if r["material"] == "NMC532"]
    assert len(nmc) == 6
    below = [r for r in nmc if r["energy_eV"] == 8300.0]
    for r in below:  # DESIGN.md: attenuation length of dense NMC532 about 22 um below the edge
        assert r["attenuation_length_um"] == pytest.approx(22.0, rel=0.02)
        assert r["attenuation_length_um"] == pytest.approx(1 / r["mu_per_um"], rel=1e-3)
    above = [r for r in nmc if r["energy_eV"] == 8400.0]
    for r in above:  # and about 11.7 um above it
        assert r["attenuation_length_um"] == pytest.approx(11.7, rel=0.03)
    edge = {r["lithiation"]: r["mu_per_um"] for r in nmc if r["energy_eV"] == 8345.0}
    assert edge[1.0] > edge[0.0]  # the lithiated edge sits at lower energy


def test_physics_bad_input_exit_2(capsys):
    assert main(["physics", "--energies", "8.3,8.4"]) == 2
    assert "eV" in capsys.readouterr().err
    assert main(["physics", "--lithiation", "2"]) == 2


def test_physics_spectra_png(tmp_path):
    out = tmp_path / "s.png"
    assert main(["physics", "--energies", "8320,8347,8400", "spectra", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_physics_dose_command(capsys):
    assert (
        main(
            [
                "physics",
                "--energies",
                "8300",
                "dose",
                "--photons",
                "20000",
                "--angles",
                "121",
                "--pixel-size-nm",
                "400",
                "--lithiation",
                "1",
                "--json",
            ]
        )
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    # the hand calculation of test_dose_hand_calculation, with the XANES-aware mu_en (x=0.95)
    assert rec["total_dose_Gy"]["NMC532"] == pytest.approx(1.5363e5, rel=0.01)
    assert rec["total_dose_Gy"]["electrolyte"] < 0.2 * rec["total_dose_Gy"]["NMC532"]
    assert 0 < rec["transmission_sample"][0] < 1
    assert main(["physics", "dose", "--photons", "-1"]) == 2
