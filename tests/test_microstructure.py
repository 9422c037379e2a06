"""Microstructure generator and metrics: targets, internal pores, resolutions, analytic checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xtwin.analysis.microstructure import (
    inscribed_box,
    particle_size_distribution,
    phase_fractions,
    specific_surface_area,
    tortuosity,
)
from xtwin.forward.microstructure import (
    INTERNAL_CLOSED,
    INTERNAL_CONNECTED,
    PHASE_ACTIVE,
    coarsen,
    generate,
)
from xtwin.forward.scenario import default_scenario


def _grid(n=40, rows=20):
    sc = default_scenario()
    return sc, dataclasses.replace(sc.grid, n_pixels=n, n_rows=rows)


@pytest.mark.parametrize(
    "sample, active, cbd",
    [
        ("pillar", 0.445, 0.255),
        ("box", 0.35, 0.10),
        ("box", 0.55, 0.15),
        ("pillar", 0.5, 0.05),
    ],
)
def test_fractions_meet_targets(sample, active, cbd):
    sc, grid = _grid()
    spec = dataclasses.replace(
        sc.microstructure, sample=sample, active_fraction=active, cbd_fraction=cbd
    )
    ms = generate(grid, spec, np.random.default_rng(3))
    a = ms.achieved
    assert a["active"] == pytest.approx(active, abs=0.01)
    assert a["cbd"] == pytest.approx(cbd, abs=0.01)
    assert a["pore"] == pytest.approx(1 - active - cbd, abs=0.01)
    # the reported fractions are what the volume holds
    fr = phase_fractions(ms.phases)
    assert fr["active"] == pytest.approx(a["active"], abs=1e-9)


def test_internal_pores_closed_only_and_open():
    sc, grid = _grid(48, 24)
    closed = dataclasses.replace(
        sc.microstructure, internal_porosity=0.05, internal_connected_fraction=0.0
    )
    ms = generate(grid, closed, np.random.default_rng(4))
    assert ms.achieved["internal_pore"] > 0.01
    assert ms.achieved["internal_connected_fraction"] == 0.0
    assert not np.any(ms.internal == INTERNAL_CONNECTED)
    assert np.all(ms.particles["internal_connected_fraction"] == 0)
    opened = dataclasses.replace(closed, internal_connected_fraction=1.0)
    ms2 = generate(grid, opened, np.random.default_rng(4))
    assert ms2.achieved["internal_connected_fraction"] > 0.8
    # internal pores lie inside particles and their fraction of particle volume is as asked
    env = ms.labels > 0
    assert np.all(env[ms.internal == INTERNAL_CLOSED])
    frac = np.count_nonzero(ms.internal) / np.count_nonzero(env)
    assert frac == pytest.approx(0.05, abs=0.01)


def test_no_internal_pores_when_none_asked():
    sc, grid = _grid()
    ms = generate(
        grid,
        dataclasses.replace(sc.microstructure, internal_porosity=0.0),
        np.random.default_rng(5),
    )
    assert ms.achieved["internal_pore"] == 0.0 and not ms.internal.any()


def test_deterministic_for_a_seed():
    sc, grid = _grid()
    a = generate(grid, sc.microstructure, np.random.default_rng(9))
    b = generate(grid, sc.microstructure, np.random.default_rng(9))
    assert np.array_equal(a.phases, b.phases) and np.array_equal(a.labels, b.labels)
    c = generate(grid, sc.microstructure, np.random.default_rng(10))
    assert not np.array_equal(a.phases, c.phases)


def test_record_consistent_at_two_resolutions():
    sc, grid = _grid(48, 24)
    ms = generate(grid, sc.microstructure, np.random.default_rng(6))
    f = grid.oversample
    lab_fine = np.where(ms.phases == PHASE_ACTIVE, ms.labels, 0)
    ph_c, lab_c, _ = coarsen(ms.phases, ms.labels, f)
    n = len(ms.radii_m)
    v_fine = np.bincount(lab_fine.ravel(), minlength=n + 1)[1:]
    v_coarse = np.bincount(lab_c.ravel(), minlength=n + 1)[1:] * f**3
    big = v_fine > 2000
    assert big.sum() >= 5
    np.testing.assert_allclose(v_coarse[big], v_fine[big], rtol=0.25)
    assert set(np.unique(lab_c)) <= set(np.unique(lab_fine))
    # coarse active fraction matches fine within the partial-volume tolerance
    fine_fr = phase_fractions(ms.phases)["active"]
    assert phase_fractions(ph_c)["active"] == pytest.approx(fine_fr, abs=0.03)
    # centres lie in their own particle and depth follows the centre's z
    p = ms.particles
    assert np.allclose(p["depth_m"], sc.microstructure.depth_offset_m + p["centre_m"][:, 0])
    assert np.all((p["cbd_coverage"] >= 0) & (p["cbd_coverage"] <= 1))


def test_specific_surface_area_of_a_sphere():
    n, r = 64, 20.0
    z, y, x = np.ogrid[:n, :n, :n]
    ball = (z - 31.5) ** 2 + (y - 31.5) ** 2 + (x - 31.5) ** 2 <= r**2
    ssa = specific_surface_area(ball, 1e-6, n**3)
    assert ssa == pytest.approx(4 * np.pi * r**2 / n**3 * 1e6, rel=0.05)


def test_tortuosity_of_straight_channels_is_one():
    im = np.zeros((40, 30, 30), dtype=bool)
    im[:, ::3, :] = True
    res = tortuosity(im, axis=0)
    assert res["tortuosity"] == pytest.approx(1.0, abs=0.02)
    blocked = im.copy()
    blocked[20] = False
    assert tortuosity(blocked, axis=0)["percolating"] is False


def test_psd_from_labels_and_from_snow():
    n = 80
    z, y, x = np.ogrid[:n, :n, :n]
    labels = np.zeros((n, n, n), dtype=np.int32)
    centres = [(20, 20, 20), (20, 60, 60), (60, 20, 60), (60, 60, 20)]
    for i, c in enumerate(centres):
        labels[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= 12**2] = i + 1
    ref = particle_size_distribution(labels > 0, 1e-7, labels)
    assert ref["n"] == 4 and ref["d50_m"] == pytest.approx(24e-7, rel=0.03)
    snow = particle_size_distribution(labels > 0, 1e-7)
    assert snow["n"] == 4 and snow["d50_m"] == pytest.approx(24e-7, rel=0.05)


def test_inscribed_box_of_pillar():
    from xtwin.forward.microstructure import sample_mask

    sc, _ = _grid()
    inside = sample_mask((4, 50, 50), sc.microstructure)
    box = inside[inscribed_box(inside)]
    assert box.all() and box.shape[1] >= 30


def test_cli_microstructure_json(tmp_path, capsys):
    from xtwin.cli import main
    from xtwin.io.volumes import read_phase_volume

    sc = tmp_path / "s.toml"
    sc.write_text(
        "[grid]\nn_pixels = 32\nn_rows = 12\n[microstructure]\nsample = 'box'\n"
        "active_fraction = 0.4\ncbd_fraction = 0.1\n"
    )
    assert main(["microstructure", str(sc), "-o", str(tmp_path / "m"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["target"]) >= {"active", "cbd", "pore"}
    for k in ("active", "cbd", "pore"):
        assert doc["achieved"][k] == pytest.approx(doc["target"][k], abs=0.01)
    vol = read_phase_volume(tmp_path / "m" / "microstructure.h5", fine=True)
    assert phase_fractions(vol.phases)["active"] == pytest.approx(0.4, abs=0.01)
    assert main(["microstructure", str(sc), "-o", str(tmp_path / "m")]) == 2


def test_microstructure_command_matches_simulate(demo_run, tmp_path):
    """`xtwin microstructure` builds exactly the electrode `simulate` images (same seed)."""
    from xtwin.forward.microstructure_report import microstructure_report
    from xtwin.io.truth import read_truth
    from xtwin.io.volumes import read_phase_volume

    doc = microstructure_report(default_scenario(), tmp_path)
    vol = read_phase_volume(doc["files"]["microstructure.h5"], fine=True)
    np.testing.assert_array_equal(vol.phases, read_truth(demo_run / "truth.h5").fine_phases)
