"""The demo as a library call: simulate the default scenario, process it through the shared
pipeline, compare with the truth and write a report (what ``xtwin demo`` runs)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_FILES = ("limap.h5", "slices.png", "error_histogram.png", "metrics.json")


def demo(
    out_dir: str | os.PathLike = "xtwin-demo",
    *,
    force: bool = False,
    simulate_progress: Callable[[str, int], None] | None = None,
    process_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the twin on the default scenario, the pipeline on its scan, and compare.

    Parameters
    ----------
    out_dir : path-like
        Directory for the scan, truth, Li map, figures and ``metrics.json``.
    force : bool
        Overwrite existing outputs.
    simulate_progress, process_progress : callable, optional
        Progress callbacks of :func:`xtwin.forward.twin.simulate`, and of the rows that
        :func:`xtwin.pipeline.process_file` finishes.

    Returns
    -------
    dict
        ``{"metrics": ..., "files": {name: path}}``; the metrics as
        :func:`xtwin.validate.metrics.compare` gives them, with ``elapsed_s`` and ``scenario``.
    """
    from xtwin._files import refuse_existing
    from xtwin.forward.scenario import default_scenario
    from xtwin.forward.twin import output_names, simulate, write_outputs
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import read_truth
    from xtwin.pipeline import process_file
    from xtwin.validate.metrics import compare
    from xtwin.validate.report import write_report

    t0 = time.perf_counter()
    out = Path(out_dir)
    scenario = default_scenario()
    refuse_existing(out, output_names(scenario) + list(DEMO_FILES), force=force)
    result = simulate(scenario, progress=simulate_progress)
    paths = write_outputs(result, scenario, out, force=force)
    limap_path = out / "limap.h5"
    if force and limap_path.exists():
        limap_path.unlink()
    process_file(
        [paths["scan.h5"]],
        paths["reference_lithiated.csv"],
        paths["reference_delithiated.csv"],
        limap_path,
        on_event=_rows_done(process_progress),
    )
    limap = read_limap(limap_path)
    truth = read_truth(paths["truth.h5"])
    metrics = compare(limap, truth).to_dict()
    metrics["elapsed_s"] = round(time.perf_counter() - t0, 1)
    metrics["scenario"] = scenario.name
    report = write_report(limap, truth, metrics, out)
    files = {
        **{k: Path(v) for k, v in paths.items()},
        "limap.h5": limap_path,
        **{k: Path(v) for k, v in report.items()},
    }
    return {"metrics": metrics, "files": files}


def _rows_done(progress: Callable[[int], None] | None):
    """A pipeline event listener that passes the rows finished to ``progress``."""
    from xtwin.pipeline import RowsDone

    def listen(event) -> None:
        if progress is not None and isinstance(event, RowsDone):
            progress(event.n)

    return listen
