"""Commands on results: compare, analyze, report, metrics, validate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xtwin.cli._app import cli
from xtwin.errors import XtwinInputError


def summary_lines(metrics: dict) -> list[str]:
    v, p = metrics["voxel"], metrics["particle"]
    return [
        f"voxels compared   {v['n']} (coverage {v['coverage']:.3f})",
        f"voxel RMSE        {v['rmse']:.4f}",
        f"voxel bias        {v['bias']:+.4f}",
        f"error/sigma std   {v['z_score_std']:.3f}",
        f"particles         {p['n']}",
        f"particle MAE      {p['mae']:.4f}",
        f"particle max err  {p['max_abs_error']:.4f}",
        f"particle bias     {p['bias']:+.4f}",
    ]


@cli.command()
@click.argument("limap_path", metavar="OUT.h5", type=click.Path(path_type=Path))
@click.argument("truth_path", metavar="TRUTH.h5", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def compare(limap_path: Path, truth_path: Path, as_json: bool) -> None:
    """Error metrics of a recovered Li map against the twin's truth."""
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import read_truth
    from xtwin.validate.metrics import compare as run_compare

    metrics = run_compare(read_limap(limap_path), read_truth(truth_path)).to_dict()
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo("\n".join(summary_lines(metrics)))


def _times(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise XtwinInputError(
            f"--times-s {text!r} is not a list of seconds like 0,600,1200"
        ) from None


@cli.command()
@click.argument("limaps", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
)
@click.option(
    "--times-s",
    default=None,
    help="Series: the time points' times in seconds, T0,T1,... (default: each map's own).",
)
@click.option(
    "--depth-offset-um", type=float, default=0.0, help="Depth of the imaged window's top (um)."
)
@click.option(
    "--min-deviation", type=float, default=0.05, show_default=True, help="Smallest hot-spot |dw|."
)
@click.option(
    "--fdr", type=float, default=0.05, show_default=True, help="Hot-spot false-discovery rate."
)
def analyze(
    limaps: tuple[Path, ...],
    out: Path,
    times_s: str | None,
    depth_offset_um: float,
    min_deviation: float,
    fdr: float,
) -> None:
    """Particles, depth and pore-distance profiles, surface hot spots and heterogeneity of a
    Li map (or of a twin's truth file): CSV tables, labels, figures and a text summary.

    Several Li maps (an operando series, in time order) are registered to the first and
    their particles followed through time: particles_time.csv, rates.csv, registration.csv,
    w(t) and rate figures, and a summary."""
    if len(limaps) > 1:
        from xtwin.analysis.series import analyze_series_files

        files = analyze_series_files(list(limaps), out, _times(times_s))
        click.echo(files["summary.txt"].read_text().rstrip())
        click.echo(f"{len(files)} files in {out}")
        return
    if times_s:
        raise XtwinInputError("--times-s is for a series: give two or more Li maps")
    from xtwin.analysis.report import analyze_file

    files = analyze_file(
        limaps[0], out, depth_offset_m=depth_offset_um * 1e-6, min_deviation=min_deviation, fdr=fdr
    )
    click.echo(files["summary.txt"].read_text().rstrip())
    click.echo(f"{len(files)} files in {out}")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
)
@click.option(
    "--times-s", default=None, help="Series: the time points' times in seconds, T0,T1,..."
)
def report(files: tuple[Path, ...], out: Path, times_s: str | None) -> None:
    """Figures and a self-contained HTML page (report.html): FILES is a Li map (with its twin's
    TRUTH file for the comparison), or the Li maps of an operando series (time-resolved)."""
    if len(files) >= 2 and not _is_truth(files[1]):
        from xtwin.analysis.series import series_report

        made = series_report(list(files), out, _times(times_s))
        click.echo(f"{made['report.html']}")
        return
    if len(files) > 2:
        raise XtwinInputError(
            "give one Li map (and its truth file), or two or more Li maps of a series"
        )
    from xtwin.validate.report import report_with_truth

    made = report_with_truth(files[0], out, files[1] if len(files) == 2 else None)
    click.echo(f"{made['report.html']}")


def _is_truth(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "/truth/lithiation" in f
    except (OSError, ValueError):
        return False


@cli.command()
@click.argument("campaign", type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
)
@click.option(
    "--scheduler",
    default="local",
    show_default=True,
    help="'local' (a local dask cluster), a scheduler address, or 'none' (in this process).",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
def validate(campaign: Path, out: Path, scheduler: str, workers: int) -> None:
    """Run a validation campaign (sweeps of twin scenarios through the pipeline) on dask,
    resuming finished runs, and write CSV tables, figures, an error budget and report.html."""
    from xtwin.validate.campaign import load_campaign, run_campaign

    camp = load_campaign(campaign)
    n = len(camp.runs) * len(camp.seeds)
    click.echo(
        f"{camp.name}: {len(camp.runs)} runs x {len(camp.seeds)} seeds = {n} tasks", err=True
    )
    files = run_campaign(
        camp,
        out,
        scheduler=None if scheduler.lower() == "none" else scheduler,
        workers=workers,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(f"{files['report.html']} ({len(files)} files in {out})")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--fine", is_flag=True, help="Use the fine simulation grid of a truth or microstructure file."
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def metrics(path: Path, fine: bool, as_json: bool) -> None:
    """Microstructure metrics of any volume: microstructure, truth or Li-map file."""
    from xtwin.analysis.microstructure import metrics_of_file

    out = metrics_of_file(path, fine=fine)
    kind = out["source"]["kind"]
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    fr = ", ".join(f"{k} {v:.4f}" for k, v in out["fractions"].items())
    ps_ = out["particle_size"]
    tau = out["tortuosity_electrolyte_thickness"]
    click.echo(f"{path} ({kind}): {fr}")
    if ps_.get("n"):
        click.echo(
            f"particles {ps_['n']} ({ps_['method']}): D10/D50/D90 "
            f"{ps_['d10_m'] * 1e6:.2f}/{ps_['d50_m'] * 1e6:.2f}/"
            f"{ps_['d90_m'] * 1e6:.2f} um"
        )
    click.echo(f"specific surface area {out['specific_surface_area_per_m'] / 1e6:.3f} 1/um")
    click.echo(
        f"electrolyte tortuosity along depth {tau.get('tortuosity')} (Bruggeman "
        f"{tau.get('bruggeman')})"
    )
