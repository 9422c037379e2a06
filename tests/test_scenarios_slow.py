"""Every scenario in synthetic/ end to end: simulate, process every time point, compare.

Slow (about 2 minutes in all on 2 cores): run with ``python -m pytest -m slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtwin.cli import main

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "synthetic").glob("*.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_end_to_end(scenario, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", str(scenario), "-o", str(out)]) == 0
    scans = sorted(out.glob("scan*.h5"))
    truths = sorted(out.glob("truth*.h5"))
    refs = [
        "--lithiated",
        str(out / "reference_lithiated.csv"),
        "--delithiated",
        str(out / "reference_delithiated.csv"),
    ]
    li = tmp_path / "li.h5"
    assert main(["process", *map(str, scans), *refs, "-o", str(li)]) == 0
    maps = [li] if len(scans) == 1 else sorted(tmp_path.glob("li_t*.h5"))
    assert len(maps) == len(truths)
    capsys.readouterr()
    for lm, tr in zip(maps, truths):
        assert main(["compare", str(lm), str(tr), "--json"]) == 0
        m = json.loads(capsys.readouterr().out)
        assert m["particle"]["mae"] < 0.05, (scenario.stem, lm.name, m["particle"])
        assert 0.7 < m["voxel"]["z_score_std"] < 1.4
