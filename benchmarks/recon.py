"""Reconstruction against the peers at 512^2 x 720 and 2048^2 x 1500 (one run, one machine).

    python benchmarks/recon.py [--quick]

tomopy's gridrec joins when tomopy is importable: build it from ``../shared/peers/`` with
``bash ../shared/peers/build-tomopy.sh $(which python)`` and run with
``LD_LIBRARY_PATH=$(python -c 'import sys; print(sys.prefix)')/lib``. Every method: an
untimed warm-up, then the best of three calls over the batch of slices, on the same threads.

Writes benchmarks/recon_results.json and prints seconds, ratio to xtwin and RMSE per method.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from xtwin.validate.bench import bench_recon

CASES = [(512, 720, 8, True), (2048, 1500, 2, False)]

if __name__ == "__main__":
    cases = [(256, 360, 4, True)] if "--quick" in sys.argv else CASES
    results = []
    for size, angles, slices, noisy in cases:
        r = bench_recon(size, angles, slices=slices, noisy=noisy)
        results.append(r)
        ref = r["methods"]["xtwin fourier"]["seconds"]
        print(f"\n{size}^2 x {angles} angles, {slices} slices, {r['workers']} threads")
        for name, m in r["methods"].items():
            noisy_txt = f"{m['error_scaled_noisy']:.4f}" if m["rmse_noisy"] is not None else "-"
            print(
                f"  {name:26s} {m['ms_per_slice']:9.1f} ms/slice  {m['seconds'] / ref:6.2f}x  "
                f"error {m['error_scaled']:.4f}  noisy {noisy_txt}  (RMSE {m['rmse']:.3e})",
                flush=True,
            )
        print(f"  fastest peer / xtwin: {r['speedup_vs_fastest_peer']:.2f}")
    out = Path(__file__).with_name("recon_results.json")
    if "--quick" not in sys.argv:
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out}")
