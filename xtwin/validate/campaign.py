"""Validation campaigns: sweeps of twin scenarios through the shared pipeline, on dask.

What ``xtwin validate CAMPAIGN.toml -o DIR`` runs. A campaign file names a base scenario, the
seeds, and runs (each a set of scenario overrides and pipeline options), listed or generated as
a sweep::

    name = "error_budget"
    scenario = "default"            # synthetic/NAME.toml beside the campaign, or a path
    seeds = [7, 8, 9]

    [[runs]]
    name = "baseline"

    [[runs]]
    name = "energy calibration +0.3 eV"
    scenario = { acquisition = { standards_offset_from_scan_eV = 0.3 } }

    [[runs]]
    name = "rotation axis 1 px off"
    process = { center_offset_px = 1.0 }

    [sweep]                          # optional: one run per value (crossed with the seeds)
    name = "photons"
    key = "acquisition.photons_per_pixel"
    values = [2000, 5000, 20000, 50000]

Every (run, seed) is one task on a dask.distributed cluster (a local one by default, or the
scheduler at ``--scheduler ADDRESS``); each finished task's metrics are written at once to
``DIR/runs/``, so an interrupted campaign resumes without redoing them. Then ``results.csv``
(one row per run and seed), ``summary.csv`` (mean and spread over seeds), figures and a
self-contained ``report.html``; a campaign with a ``baseline`` run also gets
``error_budget.md`` (each run's bias relative to the baseline, and, for a run named
``all effects``, the measured error against the quadrature sum of the others).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtwin.errors import XtwinInputError

#: Metrics written per run (see :func:`run_one`).
METRICS = (
    "particle_bias",
    "particle_rmse",
    "particle_mae",
    "voxel_rmse",
    "voxel_bias",
    "interior_voxel_rmse",
    "interior_voxel_bias",
    "surface_voxel_bias",
    "sample_bias",
    "median_sigma",
    "median_systematic",
    "coverage",
    "ring_amplitude",
)


@dataclass(frozen=True)
class Run:
    """One campaign run: scenario overrides (nested tables) and pipeline options."""

    name: str
    scenario: dict[str, Any] = field(default_factory=dict)
    process: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name."""
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", self.name).strip("_") or "run"


@dataclass(frozen=True)
class Campaign:
    """A parsed campaign file."""

    name: str
    scenario_toml: str
    seeds: tuple[int, ...]
    runs: tuple[Run, ...]
    description: str = ""
    sweep_key: str | None = None
    combined: tuple[str, ...] = ()


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(d))
    cur = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_campaign(path: str | os.PathLike) -> Campaign:
    """Read and check a campaign file (every run's scenario is validated up front).

    Raises
    ------
    XtwinInputError
        Unreadable TOML, unknown keys, a scenario that does not exist, invalid overrides.
    """
    from xtwin.forward.scenario import default_scenario, load_scenario, scenario_from_dict
    from xtwin.pipeline import ProcessOptions, RunOptions
    from xtwin.pipeline.options import split_options

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise XtwinInputError(f"{path}: cannot read the campaign ({exc})") from None
    unknown = set(doc) - {"name", "description", "scenario", "seeds", "runs", "sweep", "combined"}
    if unknown:
        raise XtwinInputError(f"{path}: unknown key(s) {sorted(unknown)}")
    sc_name = doc.get("scenario", "default")
    if sc_name == "default":
        base = default_scenario()
    else:
        cand = [Path(sc_name), path.parent.parent / "synthetic" / f"{sc_name}.toml"]
        found = next((c for c in cand if c.is_file()), None)
        if found is None:
            raise XtwinInputError(f"{path}: scenario {sc_name!r} not found (tried {cand})")
        base = load_scenario(found)
    seeds = tuple(int(s) for s in doc.get("seeds", [base.seed]))
    runs = [
        Run(str(r.get("name", f"run{k}")), dict(r.get("scenario", {})), dict(r.get("process", {})))
        for k, r in enumerate(doc.get("runs", []))
    ]
    sweep_key = None
    if "sweep" in doc:
        sw = doc["sweep"]
        sweep_key = str(sw["key"])
        for v in sw["values"]:
            over = _set_path({}, sweep_key, v)
            target = "process" if sweep_key.startswith("process.") else "scenario"
            if target == "process":
                runs.append(Run(f"{sw.get('name', sweep_key)} {v}", {}, {sweep_key[8:]: v}))
            else:
                runs.append(Run(f"{sw.get('name', sweep_key)} {v}", over, {}))
    if not runs:
        raise XtwinInputError(f"{path}: no runs (give [[runs]] or a [sweep])")
    if len({r.slug for r in runs}) != len(runs):
        raise XtwinInputError(f"{path}: run names must be distinct")
    base_doc = tomllib.loads(base.to_toml())
    for r in runs:
        scenario_from_dict(_merge(base_doc, r.scenario), f"{path} run {r.name!r}")
        try:
            sci, how = split_options(**r.process)
            ProcessOptions(**sci), RunOptions(**how)
        except (TypeError, XtwinInputError) as exc:
            raise XtwinInputError(f"{path} run {r.name!r}: bad process option ({exc})") from None
    combined = tuple(str(x) for x in doc.get("combined", []))
    missing = [c for c in combined if c not in {r.name for r in runs}]
    if missing:
        raise XtwinInputError(f"{path}: 'combined' names runs that do not exist: {missing}")
    return Campaign(
        str(doc.get("name", path.stem)),
        base.to_toml(),
        seeds,
        tuple(runs),
        str(doc.get("description", "")),
        sweep_key,
        combined,
    )


def run_one(scenario_toml: str, run: Run, seed: int) -> dict[str, Any]:
    """Simulate, process and compare one (run, seed); the metrics as a flat dict."""
    import tempfile

    from scipy import ndimage

    from xtwin.forward.scenario import scenario_from_dict
    from xtwin.forward.twin import simulate, write_outputs
    from xtwin.io.limap import read_limap
    from xtwin.io.truth import PHASE_ACTIVE, read_truth
    from xtwin.pipeline import ProcessOptions, RunOptions, process_file
    from xtwin.pipeline.options import split_options
    from xtwin.validate.metrics import compare, interior_mask, ring_amplitude

    sci, how = split_options(**run.process)
    doc = _merge(tomllib.loads(scenario_toml), run.scenario)
    sc = scenario_from_dict(doc, f"run {run.name!r}").replace_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_outputs(simulate(sc), sc, tmp, force=True)
        scan = sorted(k for k in paths if k.startswith("scan"))[0]
        out = Path(tmp) / "limap.h5"
        # "twin:NAME" names a file the twin wrote (a quick XANES, a calibration series)
        sci = {
            k: str(Path(tmp) / v[5:]) if isinstance(v, str) and v.startswith("twin:") else v
            for k, v in sci.items()
        }
        series = sci.get("calibration_series") is not None
        process_file(
            [paths[scan]],
            None if series else paths["reference_lithiated.csv"],
            None if series else paths["reference_delithiated.csv"],
            out,
            options=ProcessOptions(**sci),
            run=RunOptions(**{"workers": 1, **how}),
        )
        lm, tr = read_limap(out), read_truth(paths[scan.replace("scan", "truth")])
    m = compare(lm, tr)
    active = tr.phases == PHASE_ACTIVE
    both = active & np.isfinite(lm.lithiation) & np.isfinite(tr.lithiation)
    err = lm.lithiation - tr.lithiation
    interior = interior_mask(tr) & both
    surface = (active & ~ndimage.binary_erosion(active, iterations=1)) & both
    return {
        "run": run.name,
        "seed": seed,
        "particle_bias": m.particle.bias,
        "particle_rmse": m.particle.rmse,
        "particle_mae": m.particle.mae,
        "voxel_rmse": m.voxel.rmse,
        "voxel_bias": m.voxel.bias,
        "interior_voxel_rmse": float(np.sqrt(np.mean(err[interior] ** 2))),
        "interior_voxel_bias": float(np.mean(err[interior])),
        "surface_voxel_bias": float(np.mean(err[surface])) if surface.any() else float("nan"),
        "sample_bias": float(np.mean(lm.lithiation[both]) - np.mean(tr.lithiation[both])),
        "median_sigma": float(np.nanmedian(lm.sigma[both])),
        "median_systematic": float(np.nanmedian(lm.systematic[both]))
        if lm.systematic is not None
        else float("nan"),
        "coverage": m.voxel.coverage,
        "ring_amplitude": ring_amplitude(err, both),
    }


def run_campaign(
    campaign: Campaign,
    out_dir: str | os.PathLike,
    *,
    scheduler: str | None = "local",
    workers: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Run every (run, seed) not yet finished in ``out_dir/runs``, then write the tables,
    figures and report.

    Parameters
    ----------
    campaign : Campaign
    out_dir : path-like
    scheduler : str or None
        ``"local"`` (a LocalCluster of ``workers`` processes), a scheduler address, or None
        (in this process, one after the other).
    workers : int
    progress : callable, optional
        Called with a line per finished task.

    Returns
    -------
    dict
        Name -> path of the files written.
    """
    from xtwin._files import ensure_writable_dir, write_text_atomic

    out = ensure_writable_dir(out_dir)
    runs_dir = ensure_writable_dir(out / "runs")
    todo = [
        (r, s)
        for r in campaign.runs
        for s in campaign.seeds
        if not (runs_dir / f"{r.slug}_s{s}.json").exists()
    ]
    done = len(campaign.runs) * len(campaign.seeds) - len(todo)
    if progress and done:
        progress(f"resuming: {done} finished runs kept")

    def save(res: dict[str, Any], run: Run) -> None:
        write_text_atomic(
            runs_dir / f"{run.slug}_s{res['seed']}.json", json.dumps(res, indent=1) + "\n"
        )
        if progress:
            progress(
                f"{run.name} (seed {res['seed']}): particle bias {res['particle_bias']:+.4f}, "
                f"RMSE {res['particle_rmse']:.4f}"
            )

    if todo and scheduler:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = (
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
            if scheduler == "local"
            else None
        )
        try:
            client = Client(cluster or scheduler, timeout="30s")
        except OSError as exc:
            raise XtwinInputError(
                f"cannot reach the dask scheduler {scheduler!r} ({exc})"
            ) from None
        try:
            futs = {
                client.submit(run_one, campaign.scenario_toml, r, s, pure=False): r for r, s in todo
            }
            for fut in as_completed(futs):
                save(fut.result(), futs[fut])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        for r, s in todo:
            save(run_one(campaign.scenario_toml, r, s), r)
    return write_results(campaign, out)


def _load_rows(campaign: Campaign, out: Path) -> list[dict[str, Any]]:
    rows = []
    for r in campaign.runs:
        for s in campaign.seeds:
            p = out / "runs" / f"{r.slug}_s{s}.json"
            if p.exists():
                rows.append(json.loads(p.read_text()))
    return rows


def summarize(campaign: Campaign, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of every metric, per run (campaign order)."""
    out = []
    for r in campaign.runs:
        sel = [x for x in rows if x["run"] == r.name]
        if not sel:
            continue
        rec: dict[str, Any] = {"run": r.name, "n_seeds": len(sel)}
        for k in METRICS:
            vals = np.array([x.get(k, np.nan) for x in sel], dtype=float)
            rec[k] = float(np.nanmean(vals))
            rec[k + "_sd"] = float(np.nanstd(vals)) if vals.size > 1 else 0.0
        out.append(rec)
    return out


def error_budget(summary: list[dict[str, Any]], combined: tuple[str, ...] = ()) -> str:
    """The error-budget table (markdown): each run's shift of the particle, surface-voxel and
    whole-sample biases from the baseline, and the combined check (the ``all effects`` run
    against the sum of the single effects it combines, ``combined``)."""
    base = next((s for s in summary if s["run"] == "baseline"), None)
    if base is None:
        return ""
    keys = ("particle_bias", "surface_voxel_bias", "sample_bias")
    lines = [
        "| source (run) | particle bias shift | surface-voxel bias shift | whole-sample bias "
        "shift | particle RMSE | seeds |",
        "|---|---|---|---|---|---|",
    ]
    shifts = {}
    for s in summary:
        d = {k: s[k] - base[k] for k in keys}
        shifts[s["run"]] = d
        sd = np.hypot(s["particle_bias_sd"], base["particle_bias_sd"])
        lines.append(
            f"| {s['run']} | {d['particle_bias']:+.4f} (+-{sd:.4f}) | "
            f"{d['surface_voxel_bias']:+.4f} | {d['sample_bias']:+.4f} | "
            f"{s['particle_rmse']:.4f} | {s['n_seeds']} |"
        )
    combined_row = next((s for s in summary if s["run"] == "all effects"), None)
    if combined_row is not None:
        names = combined or tuple(n for n in shifts if n not in ("baseline", "all effects"))
        parts = [shifts[n] for n in names if n in shifts]
        quad = float(np.sqrt(sum(d["particle_bias"] ** 2 for d in parts)))
        lin = float(sum(d["particle_bias"] for d in parts))
        meas = shifts["all effects"]["particle_bias"]
        combined_sd = float(combined_row["particle_bias_sd"])
        lines += [
            "",
            f"Combined: all effects at once shift the particle bias by {meas:+.4f} "
            f"(+-{combined_sd:.4f} over seeds); the sum of the {len(parts)} single-effect shifts "
            f"it combines is {lin:+.4f} and their quadrature sum {quad:.4f}.",
        ]
    return "\n".join(lines)


def write_results(campaign: Campaign, out: Path) -> dict[str, Path]:
    """Tables, figures and the HTML report of the finished runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xtwin._files import write_csv_atomic, write_text_atomic
    from xtwin.analysis.report import write_html
    from xtwin.plotting import save_png

    rows = _load_rows(campaign, out)
    summary = summarize(campaign, rows)
    files = {"results.csv": out / "results.csv", "summary.csv": out / "summary.csv"}
    write_csv_atomic(files["results.csv"], rows, ("run",))
    write_csv_atomic(files["summary.csv"], summary, ("run",))
    budget = error_budget(summary, campaign.combined)
    if budget:
        files["error_budget.md"] = out / "error_budget.md"
        write_text_atomic(files["error_budget.md"], f"# {campaign.name}\n\n{budget}\n")
    figs = []
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(summary) + 1.5), constrained_layout=True)
    y = np.arange(len(summary))
    ax.errorbar(
        [s["particle_bias"] for s in summary],
        y,
        xerr=[s["particle_bias_sd"] for s in summary],
        fmt="o",
        label="particle bias (mean +- sd over seeds)",
    )
    ax.scatter(
        [s["surface_voxel_bias"] for s in summary],
        y,
        marker="x",
        color="C3",
        label="surface-voxel bias",
    )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [s["run"] for s in summary])
    ax.set_xlabel("recovered - true lithiation")
    ax.set_title(f"{campaign.name}: bias per run")
    ax.legend(loc="best", fontsize=8)
    figs.append(out / "bias.png")
    save_png(fig, figs[-1], dpi=100)
    if campaign.sweep_key:
        xs, sel = [], []
        for s in summary:
            try:
                xs.append(float(s["run"].rsplit(" ", 1)[1]))
                sel.append(s)
            except (ValueError, IndexError):
                continue
        if sel:
            order = np.argsort(xs)
            x = np.asarray(xs)[order]
            fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
            for key, label, c in (
                ("interior_voxel_rmse", "interior voxel RMSE", "C0"),
                ("particle_rmse", "particle RMSE", "C1"),
                ("median_sigma", "median reported sigma", "C2"),
            ):
                mval = np.array([sel[i][key] for i in order])
                sd = np.array([sel[i][key + "_sd"] for i in order])
                ax.plot(x, mval, "o-", color=c, label=label)
                ax.fill_between(x, mval - sd, mval + sd, color=c, alpha=0.25)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(campaign.sweep_key)
            ax.set_ylabel("error of lithiation w")
            ax.set_title(
                f"{campaign.name}: accuracy against {campaign.sweep_key} (bands: sd over seeds)"
            )
            ax.legend()
            figs.append(out / "sweep.png")
            save_png(fig, figs[-1], dpi=100)
    table = "\n".join(
        f"{s['run']}: particle bias {s['particle_bias']:+.4f} +- {s['particle_bias_sd']:.4f}, "
        f"particle RMSE {s['particle_rmse']:.4f}, interior voxel RMSE "
        f"{s['interior_voxel_rmse']:.4f}, surface-voxel bias {s['surface_voxel_bias']:+.4f}"
        for s in summary
    )
    sections = [(campaign.name, campaign.description + "\n\n" + table, figs)]
    if budget:
        sections.append(("Error budget", budget, []))
    files["report.html"] = write_html(
        out / "report.html", f"xtwin validate: {campaign.name}", sections
    )
    for f in figs:
        files[f.name] = f
    return files
