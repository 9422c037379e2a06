"""``xtwin microstructure``: generate a scenario's electrode, write it with its metrics."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from xtwin._files import write_text_atomic
from xtwin.analysis.microstructure import microstructure_metrics
from xtwin.forward.microstructure import PHASE_ACTIVE, generate, write_microstructure
from xtwin.forward.scenario import Scenario

OUTPUT_NAMES = ("microstructure.h5", "slices.png", "metrics.json")


def microstructure_report(scenario: Scenario, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Generate (with the same random stream as ``simulate``), write and measure.

    Returns the document written to ``metrics.json``: ``target``, ``achieved``, ``metrics``,
    ``particles``, ``seed``, ``generation_s`` and ``files``.
    """
    from xtwin.plotting import plot_orthoslices

    out = Path(out_dir)
    m = scenario.microstructure
    target = {
        "active": m.active_fraction,
        "cbd": m.cbd_fraction,
        "pore": m.pore_fraction,
        "internal_pore_of_particles": m.internal_porosity,
        "internal_connected_fraction": m.internal_connected_fraction,
    }
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence(scenario.seed).spawn(4)[0])
    ms = generate(scenario.grid, m, rng)
    t_gen = time.perf_counter() - t0
    paths = {n: out / n for n in OUTPUT_NAMES}
    write_microstructure(
        paths["microstructure.h5"],
        ms,
        oversample=scenario.grid.oversample,
        scenario_toml=scenario.to_toml(),
        seed=scenario.seed,
        target=target,
    )
    metrics = microstructure_metrics(
        ms.phases, ms.voxel_m, labels=np.where(ms.phases == PHASE_ACTIVE, ms.labels, 0)
    )
    p = ms.particles
    n = int(p["id"].size)
    doc = {
        "target": target,
        "achieved": ms.achieved,
        "metrics": metrics,
        "particles": {
            "n": n,
            "internal_pore_fraction_mean": float(np.mean(p["internal_pore_fraction"]))
            if n
            else 0.0,
            "cbd_coverage_mean": float(np.mean(p["cbd_coverage"])) if n else 0.0,
        },
        "seed": scenario.seed,
        "generation_s": round(t_gen, 2),
        "files": {k: str(v) for k, v in paths.items()},
    }
    plot_orthoslices(ms.phases, ms.voxel_m, paths["slices.png"], title=scenario.name)
    write_text_atomic(paths["metrics.json"], json.dumps(doc, indent=2) + "\n")
    return doc
