"""The twin's operando series with sample motion (synthetic/operando_motion.toml: four time
points, the sample moving (0, 1, 3) px and turning 0.5 degrees between them) through the whole
chain: simulate, process every time point, analyze the series; then against the truth:
the registration's error, the truth particles larger than 1.5 um followed through every time
point, and the rates against the truth's (Spearman, where the truth's spread exceeds twice the
rate sigma).

    python validation/series/operando_motion.py [--scenario synthetic/operando_motion.toml]

Writes validation/series/operando_motion.json (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def run(scenario: Path, work: Path) -> dict:
    import h5py
    from scipy.stats import spearmanr

    from xtwin.cli import main
    from xtwin.forward.scenario import load_scenario

    sc = load_scenario(scenario)
    twin = work / "twin"
    assert main(["simulate", str(scenario), "-o", str(twin)]) == 0
    scans = sorted(str(p) for p in twin.glob("scan_t*.h5"))
    refs = [
        "--lithiated",
        str(twin / "reference_lithiated.csv"),
        "--delithiated",
        str(twin / "reference_delithiated.csv"),
    ]
    assert main(["process", *scans, *refs, "-o", str(work / "li.h5")]) == 0
    maps = sorted(str(p) for p in work.glob("li_t*.h5"))
    out = work / "series"
    assert main(["analyze", *maps, "-o", str(out)]) == 0
    reg = _csv(out / "registration.csv")
    a = sc.acquisition
    reg_err = [
        {
            "time_point": k,
            "dz_err_px": float(r["dz_px"]) - k * a.sample_motion_px[0],
            "dy_err_px": float(r["dy_px"]) - k * a.sample_motion_px[1],
            "dx_err_px": float(r["dx_px"]) - k * a.sample_motion_px[2],
            "rotation_err_deg": float(r["rotation_deg"]) - k * a.sample_rotation_deg,
            "rotation_sigma_deg": float(r["rotation_sigma_deg"]),
        }
        for k, r in enumerate(reg)
    ]
    # the truth's particles on the reconstruction grid, and their rates
    with h5py.File(twin / "truth_t000.h5", "r") as f:
        labels = f["/truth/labels"][()]
        pix_um = float(f["/truth"].attrs["pixel_size_m"]) * 1e6
    truth = {int(r["particle"]): r for r in _csv(twin / "truth_rates.csv")}
    big = {p for p, r in truth.items() if float(r["diameter_um"]) > 1.5 and np.any(labels == p)}
    rows = _csv(out / "particles_time.csv")
    n_times = len(maps)
    seen: dict[int, int] = {}
    first = {}
    for r in rows:
        c = np.round([float(r[k]) / pix_um for k in ("z_um", "y_um", "x_um")]).astype(int)
        c = np.clip(c, 0, np.array(labels.shape) - 1)
        t = int(labels[tuple(c)])
        if t:
            seen[t] = seen.get(t, 0) + 1
            first.setdefault(int(r["particle"]), t)
    followed = sum(1 for p in big if seen.get(p, 0) >= n_times)
    rates = _csv(out / "rates.csv")
    pairs = [
        (
            float(truth[first[int(r["particle"])]]["rate_per_h"]),
            float(r["rate_per_h"]),
            float(r["rate_sigma_per_h"]),
        )
        for r in rates
        if int(r["particle"]) in first and first[int(r["particle"])] in truth
    ]
    tr, fr, fs = (np.array(v) for v in zip(*pairs)) if pairs else (np.zeros(0),) * 3
    spread = float(np.std(tr, ddof=1)) if tr.size > 1 else 0.0
    sigma = float(np.sqrt(np.mean(fs**2))) if fs.size else float("nan")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "scenario": sc.name,
        "time_points": n_times,
        "registration_error": reg_err,
        "truth_particles_over_1p5um": len(big),
        "followed_through_every_time_point": followed,
        "followed_fraction": round(followed / max(len(big), 1), 4),
        "truth_rate_spread_per_h": round(spread, 5),
        "rate_sigma_per_h": round(sigma, 5),
        "rates_testable": bool(spread > 2 * sigma),
        "spearman_rates": round(float(spearmanr(tr, fr).statistic), 4) if tr.size > 2 else None,
        "median_rate_error_per_h": round(float(np.median(np.abs(fr - tr))), 5) if tr.size else None,
        "analysis_summary": {
            k: summary[k]
            for k in (
                "particles_first",
                "particles_followed_through_all",
                "splits",
                "merges",
                "left_field_of_view",
                "mechanism",
            )
        },
    }


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default=str(ROOT / "synthetic" / "operando_motion.toml"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(args.scenario), Path(tmp))
    path = Path(__file__).with_name("operando_motion.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main_()
