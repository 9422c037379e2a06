"""The ``xtwin`` command line.

Exit codes: 0 success; 2 bad input or usage (a message naming the problem and the fix, no
traceback); 1 internal error. No command leaves a half-written output behind or overwrites an
existing output without ``--force``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from xtwin._files import refuse_existing
from xtwin.errors import XtwinInputError


def _bar(total: int, desc: str):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    # in a batch job (no terminal) the bar still reports, every 30 s, as plain lines
    return tqdm(
        total=total,
        desc=desc,
        unit="step",
        file=sys.stderr,
        leave=True,
        mininterval=0.1 if tty else 30.0,
        ascii=not tty,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xtwin")
def cli() -> None:
    """xtwin: digital twin and shared pipeline for operando XANES-TXM nano-CT of NMC532.

    \b
    xtwin demo                     simulate, process and compare the default scenario
    xtwin simulate SCENARIO -o DIR write scan.h5, truth.h5 and reference spectra
    xtwin process SCAN ... -o OUT  the shared pipeline: Li map from a scan file
    xtwin compare OUT TRUTH        error metrics against the truth
    xtwin info FILE                what a file holds
    xtwin convert FILES -o SCAN    Xradia, TIFF+sidecar or FXI files to scan file(s)
    xtwin export MAP --tiff DIR    a Li map as float32 TIFF stacks
    xtwin analyze MAP -o DIR       particles, profiles, hot spots of a Li map or truth
    xtwin report MAP [TRUTH] -o DIR   figures and a self-contained HTML page
    xtwin validate CAMPAIGN -o DIR sweeps of the twin through the pipeline, on dask
    xtwin plan --target-sigma 0.02 energies, photons and angles at the least dose
    xtwin physics --energies ...   attenuation and dose numbers for planning
    xtwin microstructure SCENARIO -o DIR   an electrode microstructure and its metrics
    xtwin metrics FILE             microstructure metrics of any volume
    xtwin bench recon              reconstruction speed and accuracy against the peers
    """


def _simulate(scenario, out_dir: Path, force: bool, desc: str = "simulate"):
    from xtwin.forward.twin import simulate_to

    n_snap = len(scenario.electrochemistry.snapshot_times_s)
    n_steps = 3 + n_snap * (3 + len(scenario.acquisition.energies_eV))
    with _bar(n_steps, desc) as bar:

        def tick(stage: str, n: int) -> None:
            bar.set_postfix_str(stage)
            bar.update(n)

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


def _process(
    scans: list[Path],
    lithiated: Path | None,
    delithiated: Path | None,
    out: Path,
    force: bool,
    options=None,
    desc: str = "process",
) -> Path:
    from xtwin._files import check_can_write
    from xtwin.io.scan import read_header
    from xtwin.pipeline import partial_path, process_file

    check_can_write(out, force=force)
    n_rows = read_header(scans[0])[0].shape[2] if len(scans) else 0
    if options is not None and options.rows:
        n_rows = options.rows[1] - options.rows[0]
    if partial_path(out).exists():
        click.echo(f"resuming from {partial_path(out)}", err=True)

    bars: list = []  # the bar opens once the plan is made (a run refused up front shows none)

    def said(plan: dict) -> None:
        c = plan["center_offset_px"]
        how = "found from the data" if plan["center_search"] else "as given"
        click.echo(
            f"rotation axis: {c:+.2f} px from the detector centre ({how}); blocks of "
            f"{plan['rows_per_block']} rows, predicted peak memory "
            f"{plan['predicted_peak_bytes'] / 2**30:.2f} GiB",
            err=True,
        )
        bars.append(_bar(n_rows, desc))

    try:
        process_file(
            list(scans),
            lithiated,
            delithiated,
            out,
            options=options,
            progress=lambda n: bars[0].update(n),
            on_plan=said,
        )
    except KeyboardInterrupt:
        if partial_path(out).exists():
            click.echo(
                f"interrupted: the finished rows are kept in {partial_path(out)}; run "
                "the same command again to resume",
                err=True,
            )
        raise
    finally:
        for b in bars:
            b.close()
    return out


def _process_series(scans, lithiated, delithiated, out: Path, force: bool, options) -> None:
    from xtwin._files import ensure_writable_dir
    from xtwin.io.scan import read_header
    from xtwin.pipeline import partial_path, process_series

    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    n_rows = read_header(scans[0])[0].shape[2]
    if options is not None and options.rows:
        n_rows = options.rows[1] - options.rows[0]
    current: list[Path] = []
    with _bar(n_rows * len(scans), "series") as bar:

        def start(k: int, scan: Path, limap: Path) -> None:
            current[:] = [limap]
            if partial_path(limap).exists():
                click.echo(f"resuming from {partial_path(limap)}", err=True)

        def done(k: int, scan: Path, limap: Path, kept: bool) -> None:
            if kept:
                bar.update(n_rows)
            click.echo(f"{limap}: time point {k} from {scan}" + (" (kept)" if kept else ""))

        try:
            process_series(
                scans,
                lithiated,
                delithiated,
                out,
                options=options,
                force=force,
                progress=bar.update,
                on_start=start,
                on_file=done,
            )
        except KeyboardInterrupt:
            if current and partial_path(current[0]).exists():
                click.echo(
                    f"interrupted: finished time points are kept; the rows of "
                    f"{current[0].name} are kept in {partial_path(current[0])}; run "
                    "the same command again to resume",
                    err=True,
                )
            raise


def _options(
    center_offset: str,
    recon: str,
    memory_limit: str | None,
    workers: int | None,
    scheduler: str | None,
    rows: str | None,
):
    from xtwin.memory import parse_bytes
    from xtwin.pipeline import ProcessOptions

    row_range = None
    if rows:
        try:
            a, b = (int(x) for x in rows.split(":"))
        except ValueError:
            raise XtwinInputError(f"--rows {rows!r} is not START:STOP (e.g. 100:164)") from None
        row_range = (a, b)
    return ProcessOptions(
        center_offset_px=_center(center_offset),
        method=recon,
        memory_limit_bytes=parse_bytes(memory_limit) if memory_limit else None,
        workers=workers,
        scheduler=scheduler,
        rows=row_range,
    )


@cli.command()
@click.argument("scans", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--lithiated",
    default=None,
    type=click.Path(path_type=Path),
    help="Reference spectrum of the lithiated (discharged) end member "
    "(needed for 3 or more energies).",
)
@click.option(
    "--delithiated",
    default=None,
    type=click.Path(path_type=Path),
    help="Reference spectrum of the delithiated (charged) end member "
    "(needed for 3 or more energies).",
)
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output Li-map file (HDF5)."
)
@click.option(
    "--center-offset",
    default="auto",
    show_default=True,
    help="Rotation axis minus detector centre, in pixels, or 'auto' to find it.",
)
@click.option(
    "--recon",
    default="fourier",
    show_default=True,
    type=click.Choice(["fourier", "fast", "astra", "gridrec"]),
    help="Reconstruction backend (gridrec needs tomopy).",
)
@click.option(
    "--memory-limit",
    default=None,
    help="Cap on peak memory, e.g. 2GB (default: half the available memory).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads (or dask workers) reconstructing at once (default: CPU count).",
)
@click.option(
    "--scheduler",
    default=None,
    help="Run blocks on dask.distributed: 'local' or a scheduler address.",
)
@click.option("--rows", default=None, help="Process only detector rows START:STOP.")
@click.option(
    "--block-rows",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many detector rows per block.",
)
@click.option(
    "--allow-swapped-references",
    is_flag=True,
    help="Accept a lithiated reference whose edge lies above the delithiated one.",
)
@click.option(
    "--reference-convention",
    type=click.Choice(["xtwin", "athena", "linear-post", "e0-half-jump", "short-post"]),
    default="xtwin",
    show_default=True,
    help="How the reference spectra are normalized (the others give /li/systematic).",
)
@click.option(
    "--ring-removal", is_flag=True, help="Remove sinogram stripes (ring artefacts) first."
)
@click.option(
    "--align-projections",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Per-projection alignment for stage run-out and jitter (auto: when >= 0.2 px rms).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def process(
    scans: tuple[Path, ...],
    lithiated: Path | None,
    delithiated: Path | None,
    out: Path,
    center_offset: str,
    recon: str,
    memory_limit: str | None,
    workers: int | None,
    scheduler: str | None,
    rows: str | None,
    block_rows: int | None,
    allow_swapped_references: bool,
    reference_convention: str,
    ring_removal: bool,
    align_projections: str,
    force: bool,
) -> None:
    """The shared pipeline: normalize, register, reconstruct each energy, retrieve lithiation.

    The number of energies sets what comes out: two give the Ni edge jump and a Ni mask
    (no lithiation; the output names the third energy that would give it), three the
    closed-form lithiation, four or more (XANES stacks) a weighted fit of the two end members
    per voxel plus edge-position and white-line maps.

    SCAN is a Data Exchange HDF5 file with all energies, or several files with one energy
    each of the same acquisition, or the files of an operando series (several files with
    several energies each): then one Li map per time point, OUT_t000.h5, OUT_t001.h5, ...
    in time order. The scan is streamed in blocks of detector rows within --memory-limit;
    the Li map is built in OUT.h5.partial, so an interrupted run (even killed) resumes where
    it stopped when the same command is run again.
    """
    import dataclasses

    from xtwin.io.source import series_order

    options = dataclasses.replace(
        _options(center_offset, recon, memory_limit, workers, scheduler, rows),
        block_rows=block_rows,
        allow_swapped_references=allow_swapped_references,
        reference_convention=reference_convention,
        ring_removal=ring_removal,
        align_projections=align_projections,
    )
    order = series_order(list(scans))
    if order is not None:  # an operando series: one Li map per time point
        _process_series(list(scans), lithiated, delithiated, out, force, options)
        return
    _process(list(scans), lithiated, delithiated, out, force, options)
    from xtwin.io.limap import read_limap_summary

    n, med, med_sig = read_limap_summary(out)
    if med == med:  # not NaN
        click.echo(
            f"{out}: {n} voxels with Ni; median lithiation {med:.3f}, median sigma {med_sig:.3f}"
        )
    else:
        click.echo(
            f"{out}: {n} voxels with Ni; edge-jump map in /li/edge_jump_per_m (no lithiation "
            "from two energies: see the provenance notes for the third energy to add)"
        )


def _center(center_offset: str) -> float | str:
    if center_offset.strip().lower() == "auto":
        return "auto"
    try:
        return float(center_offset)
    except ValueError:
        raise XtwinInputError(
            f"--center-offset {center_offset!r} is neither a number of pixels nor 'auto'"
        ) from None


def _nanmedian(a) -> float:
    import numpy as np

    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")


def _summary_lines(metrics: dict) -> list[str]:
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
        click.echo("\n".join(_summary_lines(metrics)))


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
            bars["sim"] = _bar(n_steps, "1/2 simulate")
        bars["sim"].update(n)

    def processed(n: int) -> None:
        if "proc" not in bars:  # the second bar appears when the first is done
            if "sim" in bars:
                bars["sim"].close()
            bars["proc"] = _bar(scenario.grid.n_rows, "2/2 process")
        bars["proc"].update(n)

    try:
        res = run_demo(
            out_dir, force=force, simulate_progress=simulated, process_progress=processed
        )
    finally:
        for b in bars.values():
            b.close()
    metrics = res["metrics"]
    click.echo("\n".join(_summary_lines(metrics)))
    f = res["files"]
    click.echo(
        f"report: {f['slices']}, {f['histogram']}, {f['metrics']} ({metrics['elapsed_s']} s)"
    )


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output scan file (Data Exchange HDF5); several acquisitions: OUT_t000_<group>.h5, ...",
)
@click.option("--flats", default=None, help="Glob of the flat-field frames (Xradia), e.g. '*bg*'.")
@click.option("--darks", default=None, help="Glob of the dark frames (Xradia).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
def convert(
    files: tuple[Path, ...], out: Path, flats: str | None, darks: str | None, force: bool
) -> None:
    """Convert beamline files to scan file(s) for `process`.

    FILES are Xradia .xrm/.txrm frames (sample images; flat-field references named *_ref_*,
    ref_*, bkg* or given with --flats; darks), or one .toml/.json sidecar describing TIFF
    stacks, or NSLS-II FXI / Data Exchange HDF5 files. Xradia frames are grouped by name and
    exposure: each state of charge or time point becomes its own scan, never summed with
    another. Repeated images are summed and measure the detector's counts per photon; flats
    are scaled to the sample exposure; an energy missing from the file is read from its name.
    """
    from xtwin.io.convert import convert_files

    for path, scan in convert_files(list(files), out, force=force, flats=flats, darks=darks):
        n_e, n_a, n_r, n_c = scan.shape
        group = scan.metadata.get("group")
        click.echo(
            f"{path}: {n_e} energies {scan.energy_eV.tolist()} eV, {n_a} angle(s), "
            f"{n_r} x {n_c} pixels of {scan.pixel_size_m * 1e9:.1f} nm, "
            f"{0 if scan.flats is None else scan.flats.shape[1]} flats per energy, "
            f"counts per photon {scan.counts_per_photon:.3f}"
            + (f", group {group!r}" if group else "")
            + (f", t = {scan.metadata['time_s']:.0f} s" if "time_s" in scan.metadata else "")
        )


@cli.command()
@click.argument("limap", type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
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
    limap: Path, out: Path, depth_offset_um: float, min_deviation: float, fdr: float
) -> None:
    """Particles, depth and pore-distance profiles, surface hot spots and heterogeneity of a
    Li map (or of a twin's truth file): CSV tables, labels, figures and a text summary."""
    from xtwin.analysis.report import analyze_file

    files = analyze_file(
        limap, out, depth_offset_m=depth_offset_um * 1e-6, min_deviation=min_deviation, fdr=fdr
    )
    click.echo(files["summary.txt"].read_text().rstrip())
    click.echo(f"{len(files)} files in {out}")


@cli.command()
@click.argument("limap", type=click.Path(path_type=Path))
@click.argument("truth", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", required=True, type=click.Path(path_type=Path), help="Output directory."
)
def report(limap: Path, truth: Path | None, out: Path) -> None:
    """Figures and a self-contained HTML page (report.html) for a Li map, with the comparison
    against the truth when TRUTH is given."""
    from xtwin.validate.report import report_with_truth

    files = report_with_truth(limap, out, truth)
    click.echo(f"{files['report.html']}")


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


@cli.command("export")
@click.argument("limap", type=click.Path(path_type=Path))
@click.option(
    "--tiff",
    "tiff_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for float32 TIFF stacks (ImageJ, Avizo, Dragonfly).",
)
def export(limap: Path, tiff_dir: Path) -> None:
    """Write a Li map's volumes as float32 TIFF stacks with the pixel size in the tags."""
    from xtwin.io.tiff import export_tiff

    paths = export_tiff(limap, tiff_dir)
    click.echo(f"{len(paths)} TIFF stacks in {tiff_dir}: " + ", ".join(p.name for p in paths))


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
def info(path: Path) -> None:
    """Say what a file holds (scan, truth, Li-map, reference spectrum, any HDF5)."""
    from xtwin.inspect import describe

    click.echo(describe(path))


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


def _float_list(text: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise XtwinInputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise XtwinInputError(f"{what} is empty; give e.g. 8300,8345,8400")
    return vals


@cli.command()
@click.option("--target-sigma", type=float, required=True, help="Wanted error of w, e.g. 0.02.")
@click.option(
    "--level",
    type=click.Choice(["voxel", "particle"]),
    default="particle",
    show_default=True,
    help="The error of one voxel of dense NMC, or of a particle's mean.",
)
@click.option("--max-dose-gy", type=float, default=None, help="Refuse plans above this NMC dose.")
@click.option(
    "--diameter-um", type=float, default=23.04, show_default=True, help="Sample diameter."
)
@click.option(
    "--pixel-size-nm", type=float, default=400.0, show_default=True, help="Pixel at the sample."
)
@click.option(
    "--particle-diameter-um",
    type=float,
    default=7.0,
    show_default=True,
    help="For --level particle.",
)
@click.option("--lithiation", type=float, default=0.5, show_default=True, help="Expected w.")
@click.option(
    "--electrolyte-um",
    type=float,
    default=0.0,
    show_default=True,
    help="Electrolyte layer in the beam.",
)
@click.option(
    "--energy-uncertainty-ev",
    type=float,
    default=0.0,
    show_default=True,
    help="Energy calibration uncertainty counted as a systematic term.",
)
@click.option(
    "--ni-chemistry",
    type=click.Choice(["two-state", "three-state"]),
    default="two-state",
    show_default=True,
    help="Ni K-edge model of the sample (three-state: the linear retrieval's model bias counts).",
)
@click.option("--energies", default=None, help="Fix the energies (eV, comma-separated, >= 3).")
@click.option("--split", default=None, help="Fix the relative photons per energy, e.g. 1,2,2.")
@click.option("--angles", type=click.IntRange(min=8), default=None, help="Fix the projections.")
@click.option(
    "--lithiated", type=click.Path(path_type=Path), default=None, help="Reference spectrum."
)
@click.option(
    "--delithiated", type=click.Path(path_type=Path), default=None, help="Reference spectrum."
)
@click.option(
    "--include-normalization",
    is_flag=True,
    help="Count the spread over reference-normalization conventions in the constraint.",
)
@click.option("--naive", is_flag=True, help="Also show the naive plan (E0-50, edge, E0+50 eV).")
@click.option(
    "--scenario-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the plan as a twin scenario.",
)
@click.option("--verify", is_flag=True, help="Run the twin and the pipeline with the plan.")
@click.option(
    "--verify-offset-ev", type=float, default=0.0, help="True energy offset in the --verify run."
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    target_sigma: float,
    level: str,
    max_dose_gy: float | None,
    diameter_um: float,
    pixel_size_nm: float,
    particle_diameter_um: float,
    lithiation: float,
    electrolyte_um: float,
    energy_uncertainty_ev: float,
    ni_chemistry: str,
    energies: str | None,
    split: str | None,
    angles: int | None,
    lithiated: Path | None,
    delithiated: Path | None,
    include_normalization: bool,
    naive: bool,
    scenario_out: Path | None,
    verify: bool,
    verify_offset_ev: float,
    as_json: bool,
) -> None:
    """Choose energies, photons per energy and angles that reach a target error of w at the
    lowest dose to the NMC, counting noise and the systematic terms that depend on the choice
    (energy calibration, model bias, low counts; reference normalization on request).
    """
    from xtwin.plan.noise import SampleModel
    from xtwin.plan.planner import make_plan

    refs = None
    if (lithiated is None) != (delithiated is None):
        raise XtwinInputError("give both --lithiated and --delithiated, or neither")
    if lithiated is not None and delithiated is not None:
        from xtwin.physics.spectra import read_spectrum

        refs = (read_spectrum(lithiated), read_spectrum(delithiated))
    sample = SampleModel(
        diameter_m=diameter_um * 1e-6,
        lithiation=lithiation,
        electrolyte_path_m=electrolyte_um * 1e-6,
        ni_chemistry=ni_chemistry,
    )
    kw: dict[str, Any] = dict(
        level=level,
        sample=sample,
        pixel_size_m=pixel_size_nm * 1e-9,
        particle_diameter_m=particle_diameter_um * 1e-6,
        energy_uncertainty_eV=energy_uncertainty_ev,
        n_angles=angles,
        references=refs,
        include_normalization=include_normalization,
    )
    the_plan = make_plan(
        target_sigma,
        energies_eV=tuple(_float_list(energies, "--energies")) if energies else None,
        split=tuple(_float_list(split, "--split")) if split else None,
        max_dose_gy=max_dose_gy,
        **kw,
    )
    plans = {"plan": the_plan}
    if naive:
        plans["naive"] = make_plan(target_sigma, naive=True, **kw)
    out: dict[str, Any] = {k: p.to_dict() for k, p in plans.items()}
    if scenario_out is not None:
        from xtwin._files import check_can_write, write_text_atomic
        from xtwin.validate.planning import plan_scenario

        check_can_write(scenario_out, force=True)
        write_text_atomic(scenario_out, plan_scenario(the_plan).to_toml())
    if verify:
        from xtwin.validate.planning import verify_plan

        click.echo("verifying on the twin (simulate, process, compare) ...", err=True)
        for k, p in plans.items():
            out[k]["verify"] = verify_plan(p, energy_offset_eV=verify_offset_ev)
            out[k]["verify"].pop("scenario")
    if as_json:
        click.echo(json.dumps(out if naive else out["plan"], indent=2))
        return
    for k, p in plans.items():
        click.echo(_plan_table(k, p))
        if "verify" in out[k]:
            m = out[k]["verify"]["measured"]
            meas = m["particle_rmse"] if p.level == "particle" else m["interior_voxel_rmse"]
            click.echo(
                f"  verified on the twin: measured {p.level} RMSE {meas:.4f} vs predicted "
                f"{p.predicted_total:.4f} (interior voxel RMSE {m['interior_voxel_rmse']:.4f})"
            )
    if scenario_out is not None:
        click.echo(f"scenario written to {scenario_out} (xtwin simulate {scenario_out} -o DIR)")


def _plan_table(name: str, p) -> str:
    lines = [
        f"{name}: {p.level} target {p.target_sigma:g} -> predicted {p.predicted_total:.4f} "
        f"(noise {p.predicted_sigma:.4f}, systematic {p.predicted_systematic:.4f}; "
        f"dominant: {p.dominant})",
        "  energy (eV)   photons/pixel/projection",
    ]
    lines += [f"  {e:10.2f}   {n:12.1f}" for e, n in zip(p.energies_eV, p.photons_per_pixel)]
    lines.append(
        f"  {p.n_angles} angles; dose {p.dose_gy:.3g} Gy to the NMC, "
        f"{p.dose_gy_electrolyte:.3g} Gy to the electrolyte"
    )
    lines.append(
        "  systematic terms: " + ", ".join(f"{k} {v:.4f}" for k, v in p.systematic_terms.items())
    )
    lines += [f"  note: {n}" for n in p.notes]
    return "\n".join(lines)


@cli.group(invoke_without_command=True)
@click.option(
    "--energies",
    default="8320,8347,8400",
    show_default=True,
    help="Comma-separated energies in eV.",
)
@click.option(
    "--lithiation",
    default="0,1",
    show_default=True,
    help="Comma-separated lithiation fractions w for NMC532.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a list of records as JSON.")
@click.pass_context
def physics(ctx: click.Context, energies: str, lithiation: str, as_json: bool) -> None:
    """Attenuation of the cell's materials at given energies, for planning an experiment.

    Per energy and material: mu/rho (cm2/g), mu (1/um), attenuation length (um) and
    mu_en/rho (cm2/g). NMC532 near the Ni K edge uses the XANES model at each lithiation.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"energies": energies}
        return
    from xtwin.physics.tables import attenuation_records, format_records

    recs = attenuation_records(
        _float_list(energies, "--energies"), _float_list(lithiation, "--lithiation")
    )
    click.echo(json.dumps(recs, indent=2) if as_json else format_records(recs))


@physics.command("spectra")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default="spectra.png",
    show_default=True,
    help="Output PNG.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.pass_context
def physics_spectra(ctx: click.Context, out: Path, force: bool) -> None:
    """Plot the end-member spectra with the chosen energies marked (PNG)."""
    from xtwin._files import check_can_write
    from xtwin.physics.tables import plot_end_members

    check_can_write(out, force=force)
    plot_end_members(_float_list(ctx.obj["energies"], "--energies"), out)
    click.echo(str(out))


@physics.command("dose")
@click.option(
    "--photons",
    type=float,
    default=20000.0,
    show_default=True,
    help="Photons per pixel per projection (flat-field level).",
)
@click.option("--angles", type=int, default=121, show_default=True, help="Projections per energy.")
@click.option(
    "--pixel-size-nm",
    type=float,
    default=400.0,
    show_default=True,
    help="Pixel size at the sample, nm.",
)
@click.option(
    "--lithiation",
    type=float,
    default=0.5,
    show_default=True,
    help="Lithiation fraction w of the NMC532.",
)
@click.option(
    "--sample-thickness-um",
    type=float,
    default=20.0,
    show_default=True,
    help="Electrode thickness crossed by the beam, um.",
)
@click.option(
    "--window-um",
    type=float,
    default=0.0,
    show_default=True,
    help="Thickness of each of two Kapton cell windows, um.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def physics_dose(
    ctx: click.Context,
    photons: float,
    angles: int,
    pixel_size_nm: float,
    lithiation: float,
    sample_thickness_um: float,
    window_um: float,
    as_json: bool,
) -> None:
    """Dose (Gy) to NMC532 and electrolyte for a whole acquisition, and transmissions."""
    from xtwin.physics.tables import dose_records

    if photons <= 0 or angles <= 0 or pixel_size_nm <= 0:
        raise XtwinInputError("--photons, --angles and --pixel-size-nm must be positive")
    rec = dose_records(
        _float_list(ctx.obj["energies"], "--energies"),
        photons_per_pixel=photons,
        n_projections=angles,
        pixel_size_m=pixel_size_nm * 1e-9,
        lithiation=lithiation,
        sample_thickness_m=sample_thickness_um * 1e-6,
        window_thickness_m=window_um * 1e-6,
    )
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    click.echo(f"fluence per energy {rec['fluence_per_m2_per_energy']:.4g} photons/m2")
    click.echo(
        f"{'E (eV)':>8s} {'dose NMC532 (Gy)':>17s} {'dose electrolyte (Gy)':>22s} "
        f"{'T sample':>9s} {'T windows':>10s}"
    )
    for i, e in enumerate(rec["energy_eV"]):
        click.echo(
            f"{e:8.1f} {rec['dose_Gy']['NMC532'][i]:17.4g} "
            f"{rec['dose_Gy']['electrolyte'][i]:22.4g} "
            f"{rec['transmission_sample'][i]:9.3f} {rec['transmission_windows'][i]:10.3f}"
        )
    click.echo(
        f"total dose: NMC532 {rec['total_dose_Gy']['NMC532']:.4g} Gy, electrolyte "
        f"{rec['total_dose_Gy']['electrolyte']:.4g} Gy"
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that files are closed on the way out."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


@cli.group()
def bench() -> None:
    """Benchmarks measured side by side in one run on this machine."""


@bench.command("recon")
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=512,
    show_default=True,
    help="Slice width in pixels.",
)
@click.option(
    "--angles",
    type=click.IntRange(min=8),
    default=720,
    show_default=True,
    help="Projections over 180 degrees.",
)
@click.option(
    "--slices",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Slices reconstructed (and timed) per method.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for every method (default: CPU count).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench_recon_cmd(
    size: int, angles: int, slices: int, workers: int | None, as_json: bool
) -> None:
    """Reconstruction: xtwin's FBP against ASTRA CPU FBP, algotom FBP and scikit-image iradon
    (seconds and RMSE against the Shepp-Logan phantom)."""
    from xtwin.validate.bench import bench_recon

    res = bench_recon(size, angles, slices=slices, workers=workers)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    ref = res["methods"].get("xtwin fourier", {}).get("seconds")
    click.echo(
        f"{size}^2 x {angles} angles, {slices} slices, {res['workers']} threads ({res['machine']})"
    )
    click.echo(f"{'method':24s} {'seconds':>9s} {'x xtwin':>8s} {'RMSE':>10s} {'RMSE noisy':>11s}")
    for name, m in res["methods"].items():
        ratio = m["seconds"] / ref if ref else float("nan")
        noisy = f"{m['rmse_noisy']:11.3e}" if m["rmse_noisy"] is not None else f"{'-':>11s}"
        click.echo(f"{name:24s} {m['seconds']:9.3f} {ratio:8.2f} {m['rmse']:10.3e} {noisy}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes (0 ok, 2 user error, 1 bug,
    130 interrupted by SIGINT, 143 terminated by SIGTERM)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        from xtwin._signals import on_sigint

        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, on_sigint)
    try:
        cli.main(args=argv, prog_name="xtwin", standalone_mode=False)
    except XtwinInputError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, _Terminated):
            click.echo("terminated (SIGTERM); no finished output was replaced", err=True)
            return 143
        click.echo("interrupted (SIGINT); no finished output was replaced", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except _Terminated:
        click.echo("terminated (SIGTERM); no finished output was replaced", err=True)
        return 143
    except KeyboardInterrupt:
        click.echo("interrupted (SIGINT); no finished output was replaced", err=True)
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        click.echo(
            "internal error: this is a bug in xtwin; please report it with the traceback above",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
