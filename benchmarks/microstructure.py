"""Time and peak memory of the microstructure generator (and its metrics) at 256^3 and 512^3.

Usage: ``python benchmarks/microstructure.py [--sizes 256 512] [--metrics]``. Each size runs in
its own child process so its peak resident memory (``ru_maxrss``) is its own. Writes
``benchmarks/microstructure_results.json``. Peer: porespy's own packing generator
(``porespy.generators.random_spheres``, monodisperse, image only) on the same grid, timed in
the same child, as the ratio of our time to its; and porespy's ``blobs`` against the smooth
random field xtwin uses in its place for CBD patches (same recipe: Gaussian-filtered noise
thresholded at a quantile; blobiness 2 = sigma n/80).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, dataclasses
import numpy as np
from xtwin.forward.scenario import default_scenario
from xtwin.forward.microstructure import generate
n, with_metrics = int(sys.argv[1]), sys.argv[2] == "1"
sc = default_scenario()
grid = dataclasses.replace(sc.grid, n_pixels=n // 2, n_rows=n // 2, pixel_size_m=2e-7,
                           oversample=2)
spec = dataclasses.replace(sc.microstructure, sample="box", depth_offset_m=0.0)
t = time.perf_counter()
ms = generate(grid, spec, np.random.default_rng(0))
out = {"n": n, "generate_s": time.perf_counter() - t, "particles": int(len(ms.radii_m)),
       "achieved": ms.achieved}
out["peak_rss_generate_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
if with_metrics:
    from xtwin.analysis.microstructure import microstructure_metrics
    t = time.perf_counter()
    m = microstructure_metrics(ms.phases, ms.voxel_m,
                               labels=np.where(ms.phases == 1, ms.labels, 0))
    out["metrics_s"] = time.perf_counter() - t
    out["tortuosity"] = m["tortuosity_electrolyte_thickness"]["tortuosity"]
del ms
import porespy as ps
r = int(round(spec.particle_d50_m / 2 / 1e-7))
t = time.perf_counter()
ps.generators.random_spheres(shape=[n, n, n], r=r, phi=0.45, clearance=0, seed=0,
                             edges="extended", smooth=True)
out["porespy_random_spheres_s"] = time.perf_counter() - t
from xtwin.forward.microstructure import _smooth_field
t = time.perf_counter()
ps.generators.blobs(shape=[n, n, n], porosity=0.5, blobiness=2, seed=0)
out["porespy_blobs_s"] = time.perf_counter() - t
t = time.perf_counter()
f = _smooth_field((n, n, n), n / 80.0, np.random.default_rng(0))
f >= np.quantile(f, 0.5)
out["xtwin_smooth_field_blobs_s"] = time.perf_counter() - t
out["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--metrics", action="store_true", help="also time the metrics")
    ap.add_argument("--out", default=str(Path(__file__).with_name("microstructure_results.json")))
    args = ap.parse_args()
    results = []
    for n in args.sizes:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), "1" if args.metrics else "0"],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["wall_s"] = time.perf_counter() - t
        res["ratio_to_porespy_random_spheres"] = res["generate_s"] / res["porespy_random_spheres_s"]
        res["blobs_speedup_vs_porespy"] = res["porespy_blobs_s"] / res["xtwin_smooth_field_blobs_s"]
        results.append(res)
        print(json.dumps(res, indent=1), flush=True)
    doc = {
        "results": results,
        "cpus": os.cpu_count(),
        "this_process_maxrss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
