"""The twin's operando series through the whole chain (simulate, process every time point,
analyze the series), against the truth: issue 26's acceptance numbers.

Runs, from synthetic/operando_motion.toml (four time points, the sample moving (0, 1, 3) px
and turning 0.5 degrees between them, particles breathing with their lithiation, regions of
higher activity):

* ``moving``: the registration's error and sigma per time point; the truth's particles
  larger than 1.5 um that stay in the field of view (half their voxels or more, after the
  known motion) matched at every time point; the rates against the truth's (Spearman over
  the particles whose rate sigma is below half the truth's spread of rates);
* ``still``: the same sample and seed with the motion off: the registration must report no
  motion (every component within 2 sigma of 0);
* ``regions on / off`` over seeds: how often the clustering test reports regions of higher
  activity at 5 % (power with the regions on at the scenario's strength, false positives
  with them off).

    python validation/series/operando_campaign.py [--seeds 4]

Writes validation/series/operando_campaign.json (about 2 minutes per series on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "synthetic" / "operando_motion.toml"


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _chain(sc, work: Path) -> tuple[Path, Path]:
    """Simulate, process and analyze one series; the twin's and the analysis's folders."""
    from xtwin.cli import main
    from xtwin.forward.twin import simulate_to

    twin = work / "twin"
    simulate_to(sc, twin)
    scans = sorted(str(p) for p in twin.glob("scan_t*.h5"))
    refs = ["--lithiated", str(twin / "reference_lithiated.csv")]
    refs += ["--delithiated", str(twin / "reference_delithiated.csv")]
    assert main(["process", *scans, *refs, "-o", str(work / "li.h5")]) == 0
    maps = sorted(str(p) for p in work.glob("li_t*.h5"))
    out = work / "series"
    assert main(["analyze", *maps, "-o", str(out)]) == 0
    return twin, out


def _in_view(labels: np.ndarray, k: int, a) -> set[int]:
    """Truth particles with half their voxels or more in the field of view at time point
    ``k`` (the twin's motion applied to the first time point's labels)."""
    from scipy import ndimage

    moved = labels
    if k and a.sample_rotation_deg:
        moved = ndimage.rotate(
            moved, k * a.sample_rotation_deg, axes=(2, 1), reshape=False, order=0
        )
    if k and any(a.sample_motion_px):
        moved = ndimage.shift(moved, [k * v for v in a.sample_motion_px], order=0)
    nz, ny, nx = labels.shape
    y, x = np.ogrid[:ny, :nx]
    disc = (y - (ny - 1) / 2) ** 2 + (x - (nx - 1) / 2) ** 2 <= (min(ny, nx) / 2 - 1) ** 2
    before = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    after = np.bincount((moved * disc[None]).ravel(), minlength=before.size)
    return {int(p) for p in np.flatnonzero((before > 0) & (after >= 0.5 * before)) if p}


def moving(sc, work: Path) -> dict:
    import h5py
    from scipy.stats import spearmanr

    twin, out = _chain(sc, work)
    a = sc.acquisition
    reg = _csv(out / "registration.csv")
    reg_err = []
    for k, r in enumerate(reg):
        true = [k * v for v in a.sample_motion_px] + [k * a.sample_rotation_deg]
        got = [float(r[c]) for c in ("dz_px", "dy_px", "dx_px", "rotation_deg")]
        sig = [float(r[c]) for c in ("dz_sigma_px", "dy_sigma_px", "dx_sigma_px")]
        sig.append(float(r["rotation_sigma_deg"]))
        reg_err.append(
            {
                "time_point": k,
                "error": [round(g - t, 4) for g, t in zip(got, true)],
                "sigma": [round(s, 4) for s in sig],
            }
        )
    with h5py.File(twin / "truth_t000.h5", "r") as f:
        labels = f["/truth/labels"][()]
        pix_um = float(f["/truth"].attrs["pixel_size_m"]) * 1e6
    truth = {int(r["particle"]): r for r in _csv(twin / "truth_rates.csv")}
    n_t = len(reg)
    big = {p for p, r in truth.items() if float(r["diameter_um"]) > 1.5}
    views = [_in_view(labels, k, a) & big for k in range(n_t)]
    always = set.intersection(*views)
    # each of the analysis's particles is the truth particle under its first centroid
    seen: dict[int, set[float]] = {}
    first: dict[int, int] = {}
    for r in _csv(out / "particles_time.csv"):
        c = np.round([float(r[k]) / pix_um for k in ("z_um", "y_um", "x_um")]).astype(int)
        c = np.clip(c, 0, np.array(labels.shape) - 1)
        t = int(labels[tuple(c)])
        if t:
            first.setdefault(int(r["particle"]), t)
            seen.setdefault(t, set()).add(float(r["time_s"]))
    per_time = []
    times = sorted({float(r["time_s"]) for r in _csv(out / "particles_time.csv")})
    for k, view in enumerate(views):
        got = sum(1 for p in view if times[k] in seen.get(p, set()))
        per_time.append({"in_view": len(view), "matched": got})
    followed = sum(1 for p in always if len(seen.get(p, set())) >= n_t)
    rates = [r for r in _csv(out / "rates.csv") if int(r["particle"]) in first]
    tr = np.array([float(truth[first[int(r["particle"])]]["rate_per_h"]) for r in rates])
    fr = np.array([float(r["rate_per_h"]) for r in rates])
    sig = np.array([float(r["rate_sigma_per_h"]) for r in rates])
    spread = float(np.std(tr, ddof=1))
    # the particles whose rate the series can resolve: sigma below half the true spread
    ok = sig < spread / 2
    summary = json.loads((out / "summary.json").read_text())
    return {
        "registration": reg_err,
        "truth_particles_over_1p5um": len(big),
        "in_view_at_every_time_point": len(always),
        "matched_at_every_time_point": followed,
        "matched_fraction": round(followed / max(len(always), 1), 4),
        "per_time_point": per_time,
        "truth_rate_spread_per_h": round(spread, 5),
        "rate_sigma_median_per_h": round(float(np.median(sig)), 5),
        "particles_rated": int(tr.size),
        "particles_resolved": int(ok.sum()),
        "spearman_rates_resolved": round(float(spearmanr(tr[ok], fr[ok]).statistic), 4),
        "spearman_rates_all": round(float(spearmanr(tr, fr).statistic), 4),
        "rate_error_median_per_h": round(float(np.median(np.abs(fr - tr))), 5),
        "summary": {
            k: summary.get(k)
            for k in (
                "mechanism",
                "activity_clustered",
                "clustering_p_value",
                "hot_spots_persist",
                "internal_pores",
                "uniform_across_depth",
                "rate_drivers",
            )
        },
    }


def still(sc, work: Path) -> dict:
    a = dataclasses.replace(sc.acquisition, sample_motion_px=(0.0, 0.0, 0.0))
    a = dataclasses.replace(a, sample_rotation_deg=0.0)
    _, out = _chain(dataclasses.replace(sc, acquisition=a), work)
    rows = []
    for r in _csv(out / "registration.csv")[1:]:
        got = [float(r[c]) for c in ("dz_px", "dy_px", "dx_px", "rotation_deg")]
        sig = [float(r[c]) for c in ("dz_sigma_px", "dy_sigma_px", "dx_sigma_px")]
        sig.append(float(r["rotation_sigma_deg"]))
        rows.append(
            {
                "estimate": [round(g, 4) for g in got],
                "sigma": [round(s, 4) for s in sig],
                "within_2_sigma": bool(all(abs(g) <= 2 * s for g, s in zip(got, sig))),
            }
        )
    return {"time_points": rows, "no_motion_reported": all(r["within_2_sigma"] for r in rows)}


def regions(sc, work: Path, seeds: int) -> dict:
    from xtwin.errors import XtwinInputError

    e = sc.electrochemistry
    out: dict[str, list] = {"on": [], "off": []}
    failed: list[str] = []
    for s in range(seeds):
        for key, strength in (("on", e.activity_region_strength), ("off", 0.0)):
            es = dataclasses.replace(e, activity_region_strength=strength)
            one = dataclasses.replace(sc, electrochemistry=es, seed=100 + s)
            try:
                series = _chain(one, work / f"{key}{s}")[1]
            except XtwinInputError as exc:  # a seed the electrochemistry cannot solve
                failed.append(f"seed {100 + s} regions {key}: {exc}")
                print(failed[-1], flush=True)
                continue
            summ = json.loads((series / "summary.json").read_text())
            out[key].append(summ.get("clustering_p_value"))
            print(f"seed {100 + s} regions {key}: p = {out[key][-1]}", flush=True)

    def rate(ps: list) -> float | None:
        return sum(p is not None and p < 0.05 for p in ps) / len(ps) if ps else None

    return {
        "seeds": seeds,
        "strength": e.activity_region_strength,
        "length_um": e.activity_region_length_m * 1e6,
        "power_at_5pc": rate(out["on"]),
        "false_positive_rate_at_5pc": rate(out["off"]),
        "series_on": len(out["on"]),
        "series_off": len(out["off"]),
        "p_values": out,
        "failed": failed,
    }


def main_() -> None:
    from xtwin.forward.scenario import load_scenario

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default=str(SCENARIO))
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    result: dict = {"scenario": sc.name, "seed": sc.seed}
    path = Path(__file__).with_name("operando_campaign.json")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("moving", moving), ("still", still)):
            t0 = time.time()
            result[name] = fn(sc, Path(tmp) / name)
            print(name, f"{time.time() - t0:.0f} s", json.dumps(result[name]), flush=True)
            path.write_text(json.dumps(result, indent=2) + "\n")
        if args.seeds:
            result["regions"] = regions(sc, Path(tmp) / "regions", args.seeds)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main_()
