"""Time the PyBaMM solve and the Li mapping for a 256^3 electrode (fine grid).

Usage: ``python benchmarks/lifield.py [--size 256]``; writes ``benchmarks/lifield_results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).with_name("lifield_results.json")))
    args = ap.parse_args()
    from xtwin.forward.electrochem import solve
    from xtwin.forward.lifield import map_lithiation, particle_activity, wetted_distance
    from xtwin.forward.microstructure import generate
    from xtwin.forward.scenario import default_scenario
    from xtwin.forward.twin import geometry_of

    n = args.size
    sc = default_scenario()
    sc = dataclasses.replace(
        sc,
        grid=dataclasses.replace(
            sc.grid, n_pixels=n // 2, n_rows=n // 2, pixel_size_m=2e-7, oversample=2
        ),
        microstructure=dataclasses.replace(sc.microstructure, sample="box"),
        electrochemistry=dataclasses.replace(
            sc.electrochemistry, hotspot_strength=0.3, activity_spread=0.2
        ),
    )
    res: dict[str, float] = {"size": n}
    t = time.perf_counter()
    ms = generate(sc.grid, sc.microstructure, np.random.default_rng(0))
    res["microstructure_s"] = time.perf_counter() - t
    t = time.perf_counter()
    echem = solve(sc.electrochemistry, geometry_of(ms, sc))
    res["pybamm_dfn_psd_solve_s"] = time.perf_counter() - t
    t = time.perf_counter()
    act = particle_activity(ms, sc.electrochemistry, np.random.default_rng(1))
    dist = wetted_distance(ms)
    w, table = map_lithiation(ms, echem, 0, sc.electrochemistry, act, dist)
    res["mapping_s"] = time.perf_counter() - t
    res["particles"] = int(len(ms.radii_m))
    res["active_voxels"] = int(np.isfinite(w).sum())
    res["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(res, indent=1))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
