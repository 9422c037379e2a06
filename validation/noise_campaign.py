"""Noise model against the twin: measured voxel and particle errors at several photon budgets.

For each photon budget (flat-field photons per pixel per projection, the same at every energy)
and seed, the default scenario is simulated by the twin, processed by the shared pipeline and
compared with the truth. The noise model (:func:`xtwin.plan.noise.predict`, no twin inside)
predicts the voxel sigma of w in the interior of the particles (dense NMC, at least 2 voxels
from another phase) and the particle sigma (noise averaged over a 7 um particle plus the model
bias of the planner). Written: ``noise_campaign/results.csv`` (one row per run) and
``noise_campaign/summary.md`` (per budget, mean over seeds, ratio measured / predicted).

Run: ``python validation/noise_campaign.py`` (about 3 minutes on 2 cores; runs in parallel on
a local dask cluster with ``--scheduler local``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np

BUDGETS = (2000.0, 5000.0, 20000.0, 50000.0)
SEEDS = (7, 8, 9)
OUT = Path(__file__).with_name("noise_campaign")


def one_run(photons: float, seed: int) -> dict:
    from xtwin.forward.scenario import default_scenario
    from xtwin.validate.planning import run_scenario

    sc = default_scenario().replace_seed(seed)
    sc = dataclasses.replace(
        sc, acquisition=dataclasses.replace(sc.acquisition, photons_per_pixel=photons)
    )
    return {"photons": photons, "seed": seed, **run_scenario(sc)}


def predicted(photons: float) -> dict:
    from xtwin.forward.scenario import default_scenario
    from xtwin.plan.noise import AcquisitionPlan, SampleModel, predict
    from xtwin.plan.planner import make_plan

    sc = default_scenario()
    a, g, m = sc.acquisition, sc.grid, sc.microstructure
    diameter = m.pillar_diameter_fraction * g.n_pixels * g.pixel_size_m
    acq = AcquisitionPlan(
        tuple(a.energies_eV), (photons,) * len(a.energies_eV), a.n_angles, g.pixel_size_m, a.n_flats
    )
    p = predict(
        SampleModel(diameter_m=diameter, lithiation=0.65),
        acq,
        particle_diameter_m=m.particle_d50_m,
    )
    model = make_plan(
        0.5, energies_eV=tuple(a.energies_eV), split=(1, 1, 1), n_angles=a.n_angles
    ).systematic_terms["model"]
    return {
        "pred_voxel": p.sigma_w_voxel,
        "pred_particle": float(np.hypot(p.sigma_w_particle, model)),
        "pred_particle_noise": p.sigma_w_particle,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scheduler", default=None, help="'local' or a dask scheduler address")
    args = ap.parse_args()
    jobs = [(b, s) for b in BUDGETS for s in SEEDS]
    if args.scheduler:
        from dask.distributed import Client, LocalCluster

        cluster = (
            LocalCluster(n_workers=2, threads_per_worker=1) if args.scheduler == "local" else None
        )
        client = Client(cluster or args.scheduler)
        rows = client.gather([client.submit(one_run, b, s, pure=False) for b, s in jobs])
        client.close()
    else:
        rows = [one_run(b, s) for b, s in jobs]
    OUT.mkdir(exist_ok=True)
    preds = {b: predicted(b) for b in BUDGETS}
    for r in rows:
        r.update(preds[r["photons"]])
    keys = list(rows[0])
    with open(OUT / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    lines = [
        "# Noise model against the twin (default scenario, 3 seeds per budget)",
        "",
        "Regenerate: `python validation/noise_campaign.py`. Voxel: interior of the particles "
        "(dense NMC); particle: RMSE of the particle means over 30 particles.",
        "",
        "| photons/pixel/projection | voxel RMSE measured | predicted | ratio | particle RMSE "
        "measured | predicted (noise + model) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in BUDGETS:
        sel = [r for r in rows if r["photons"] == b]
        mv = float(np.mean([r["interior_voxel_rmse"] for r in sel]))
        mp = float(np.mean([r["particle_rmse"] for r in sel]))
        pv, pp = preds[b]["pred_voxel"], preds[b]["pred_particle"]
        lines.append(
            f"| {b:.0f} | {mv:.4f} | {pv:.4f} | {mv / pv:.2f} | {mp:.4f} | {pp:.4f} "
            f"| {mp / pp:.2f} |"
        )
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
