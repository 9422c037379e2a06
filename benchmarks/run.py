"""Time each stage of the twin and the pipeline on the default scenario.

Usage: ``python benchmarks/run.py [--out benchmarks/results.json]``. Numbers are wall-clock
seconds on this machine; compare runs only on the same machine. Peers named in issues (e.g.
porespy generators, tomopy) are added here as those issues land.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()
    import numpy as np

    from xtwin.forward.electrochem import solve
    from xtwin.forward.microstructure import generate
    from xtwin.forward.scenario import default_scenario
    from xtwin.forward.twin import simulate
    from xtwin.physics.spectra import normalize
    from xtwin.prep import normalize_scan
    from xtwin.recon import reconstruct
    from xtwin.retrieve import calibrate, retrieve

    sc = default_scenario()
    res: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        res[name] = round(time.perf_counter() - t, 3)
        print(f"{name:28s} {res[name]:8.3f} s", flush=True)
        return out

    timed("microstructure", generate, sc.grid, sc.microstructure, np.random.default_rng(0))
    timed("pybamm_dfn_solve", solve, sc.electrochemistry)
    twin = timed("simulate_total", simulate, sc)
    ab = timed("normalize_scan", normalize_scan, twin.scan)
    vol = timed("reconstruct_fbp", reconstruct, ab)
    cal = calibrate(
        vol.energy_eV, normalize(twin.reference_lithiated), normalize(twin.reference_delithiated)
    )
    timed("retrieve", retrieve, vol.mu_per_m, vol.mu_sigma_per_m, cal)
    n_slices = vol.mu_per_m.shape[0] * vol.mu_per_m.shape[1]
    res["fbp_ms_per_slice_64px_121ang"] = round(1000 * res["reconstruct_fbp"] / n_slices, 2)
    doc = {
        "results_s": res,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
