"""Commands that run the twin: simulate, demo, microstructure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from xtwin._files import refuse_existing
from xtwin.cli._app import bar, cli
from xtwin.cli.results import summary_lines


def _simulate(scenario, out_dir: Path, force: bool, desc: str = "simulate"):
    from xtwin.forward.twin import simulate_to

    n_snap = len(scenario.electrochemistry.snapshot_times_s)
    n_steps = 3 + n_snap * (3 + len(scenario.acquisition.energies_eV))
    with bar(n_steps, desc) as progress:

        def tick(stage: str, n: int) -> None:
            progress.set_postfix_str(stage)
            progress.update(n)

        return simulate_to(scenario, out_dir, force=force, progress=tick)


def _scenario_command(fn):
    """The arguments shared by commands that build from a scenario into a directory."""
    fn = click.option("--force", is_flag=True, help="Overwrite existing outputs.")(fn)
    fn = click.option(
        "--seed", type=click.IntRange(min=0), default=None, help="Override the scenario's seed."
    )(fn)
    fn = click.option(
        "-o",
        "--out",
        "out_dir",
        required=True,
        type=click.Path(path_type=Path),
        help="Output directory.",
    )(fn)
    return click.argument(
        "scenario_path", metavar="SCENARIO.toml", type=click.Path(path_type=Path)
    )(fn)


def _load(scenario_path: Path, seed: int | None):
    from xtwin.forward.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    return scenario if seed is None else scenario.replace_seed(seed)


@cli.command()
@_scenario_command
def simulate(scenario_path: Path, out_dir: Path, seed: int | None, force: bool) -> None:
    """Run the twin: write DIR/scan.h5, truth.h5, scenario.toml and reference spectra."""

    scenario = _load(scenario_path, seed)
    paths = _simulate(scenario, out_dir, force)
    for p in paths.values():
        click.echo(str(p))


@cli.command()
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default="xtwin-demo",
    show_default=True,
    help="Output directory.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing demo directory's files.")
def demo(out_dir: Path, force: bool) -> None:
    """Simulate the default scenario, process it, compare, and write a small report."""
    from xtwin.forward.scenario import default_scenario
    from xtwin.validate.demo import demo as run_demo

    scenario = default_scenario()
    n_snap = len(scenario.electrochemistry.snapshot_times_s)
    n_steps = 3 + n_snap * (3 + len(scenario.acquisition.energies_eV))
    bars: dict[str, Any] = {}

    def simulated(stage: str, n: int) -> None:
        if "sim" not in bars:
            bars["sim"] = bar(n_steps, "1/2 simulate")
        bars["sim"].update(n)

    def processed(n: int) -> None:
        if "proc" not in bars:  # the second bar appears when the first is done
            if "sim" in bars:
                bars["sim"].close()
            bars["proc"] = bar(scenario.grid.n_rows, "2/2 process")
        bars["proc"].update(n)

    try:
        res = run_demo(
            out_dir, force=force, simulate_progress=simulated, process_progress=processed
        )
    finally:
        for b in bars.values():
            b.close()
    metrics = res["metrics"]
    click.echo("\n".join(summary_lines(metrics)))
    f = res["files"]
    click.echo(
        f"report: {f['slices']}, {f['histogram']}, {f['metrics']} ({metrics['elapsed_s']} s)"
    )


@cli.command()
@_scenario_command
@click.option("--json", "as_json", is_flag=True, help="Print targets, achieved and metrics.")
def microstructure(
    scenario_path: Path, out_dir: Path, seed: int | None, as_json: bool, force: bool
) -> None:
    """Generate the scenario's electrode microstructure, with its record and metrics.

    Writes DIR/microstructure.h5 (fine and reconstruction grids, particle record),
    DIR/slices.png (orthogonal slices) and DIR/metrics.json.
    """
    from xtwin.forward.microstructure_report import OUTPUT_NAMES, microstructure_report

    scenario = _load(scenario_path, seed)
    refuse_existing(out_dir, list(OUTPUT_NAMES), force=force)
    doc = microstructure_report(scenario, out_dir)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    a, t = doc["achieved"], doc["target"]
    click.echo(
        f"active {a['active']:.4f} (target {t['active']}), cbd {a['cbd']:.4f} "
        f"(target {t['cbd']}), pore {a['pore']:.4f} (target {t['pore']:.3f}); "
        f"{doc['particles']['n']} particles; internal pores {a['internal_pore']:.4f} "
        f"of the sample, {a['internal_connected_fraction']:.2f} connected"
    )
    for path in doc["files"].values():
        click.echo(path)
