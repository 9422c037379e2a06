"""`xtwin validate`: a small campaign, resumed after a lost run, on dask and in process alike."""

from __future__ import annotations

import csv
import json

import pytest

from xtwin.cli import main
from xtwin.errors import XtwinInputError

SMALL = """
name = "small"
description = "two runs on a small pillar"
scenario = "SCEN"
seeds = [3]

[[runs]]
name = "baseline"

[[runs]]
name = "rotation axis 1 px off"
process = { center_offset_px = 1.0 }

[sweep]
name = "photons"
key = "acquisition.photons_per_pixel"
values = [5000, 20000]
"""


@pytest.fixture()
def campaign(tmp_path):
    from xtwin.forward.scenario import default_scenario

    sc = default_scenario()
    text = (
        sc.to_toml().replace("n_pixels = 64", "n_pixels = 40").replace("n_rows = 40", "n_rows = 12")
    )
    (tmp_path / "small.toml").write_text(text)
    path = tmp_path / "camp.toml"
    path.write_text(SMALL.replace("SCEN", str(tmp_path / "small.toml")))
    return path


def test_campaign_runs_resumes_and_matches_dask(campaign, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["validate", str(campaign), "-o", str(out), "--scheduler", "none"]) == 0
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4  # 2 runs + 2 sweep values, 1 seed
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [r["run"] for r in summary] == [
        "baseline",
        "rotation axis 1 px off",
        "photons 5000",
        "photons 20000",
    ]
    base = next(r for r in summary if r["run"] == "baseline")
    off = next(r for r in summary if r["run"] == "rotation axis 1 px off")
    # a wrong rotation axis worsens the voxels (the effect is measured, not assumed)
    assert float(off["voxel_rmse"]) > float(base["voxel_rmse"])
    assert (out / "error_budget.md").read_text().count("|") > 10
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "sweep.png").exists() and (out / "bias.png").exists()
    # resume: a lost run is redone, the others are kept
    kept = {p.name: p.stat().st_mtime_ns for p in runs}
    lost = runs[0]
    lost.unlink()
    capsys.readouterr()
    assert main(["validate", str(campaign), "-o", str(out), "--scheduler", "none"]) == 0
    assert "resuming: 3 finished runs kept" in capsys.readouterr().err
    for p in sorted((out / "runs").glob("*.json")):
        if p.name != lost.name:
            assert p.stat().st_mtime_ns == kept[p.name]
    # the same tasks on a local dask cluster (2 workers) give the same numbers
    out2 = tmp_path / "out2"
    assert main(["validate", str(campaign), "-o", str(out2), "--workers", "2"]) == 0
    for p in sorted((out / "runs").glob("*.json")):
        assert json.loads(p.read_text()) == json.loads((out2 / "runs" / p.name).read_text())


def test_bad_campaigns(tmp_path):
    from xtwin.validate.campaign import load_campaign

    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\n[[runs]]\nname = "a"\nscenario = { acquisition = { n_angles = 2 } }\n'
    )
    with pytest.raises(XtwinInputError, match="n_angles"):
        load_campaign(bad)
    bad.write_text('name = "x"\n[[runs]]\nname = "a"\nprocess = { centre = 1 }\n')
    with pytest.raises(XtwinInputError, match="bad process option"):
        load_campaign(bad)
    bad.write_text('name = "x"\nscenario = "nope"\n[[runs]]\nname = "a"\n')
    with pytest.raises(XtwinInputError, match="not found"):
        load_campaign(bad)
    bad.write_text('name = "x"\n')
    with pytest.raises(XtwinInputError, match="no runs"):
        load_campaign(bad)
