"""Writing the Li map: the pipeline's sink with its maps' rows written past the page cache
(``O_DIRECT`` at the datasets' byte offsets) against the same sink writing them through HDF5
(h5py, slice by slice), side by side in one run on the same disk.

Each run writes the blocks of a three-energy Li-map file as ``xtwin process`` makes them
(attenuation and its sigma of every energy, lithiation, its sigma, edge jump, its sigma, the
convention spread and the mask; each block made durable with ``fdatasync`` and dropped from
the page cache before its rows count as done) and reports the wall time and the process's
user and system CPU seconds. The system time is what the reconstruction loses on a machine
whose cores it keeps busy.

    python benchmarks/write.py [--cols 1024] [--rows 96] [--block 12] [--dir DIR] [--json OUT]

``--cols 1000`` makes rows that are not a multiple of the disk's blocks (written through the
direct path's staging buffer).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _block(n_c: int, rows: int, lo: int, rng: np.random.Generator):
    """A finished block's results (random values; the writer does not look at them)."""
    from xtwin.io.direct import aligned_empty
    from xtwin.pipeline._block import BlockResult
    from xtwin.retrieve.three_energy import Solution

    def field(shape):
        a = aligned_empty(shape)
        a[...] = rng.random(shape, dtype=np.float32)
        return a

    img = (rows, n_c, n_c)
    sol = Solution(*(field(img) for _ in range(5)))
    return BlockResult(
        lo,
        lo + rows,
        field((3,) + img),
        field((3,) + img),
        sol,
        rng.random(img) < 0.3,
        extra={"systematic": field(img)},
    )


def run(n_c: int, n_rows: int, block: int, directory: Path, direct: bool) -> dict:
    """Write one Li-map file of ``n_rows`` rows of ``n_c`` x ``n_c`` in blocks of ``block``."""
    import xtwin.pipeline._sinks as sinks

    shapes = {
        "mu": (3, n_rows, n_c, n_c),
        "mu_sigma": (3, n_rows, n_c, n_c),
        **{k: (n_rows, n_c, n_c) for k in ("lithiation", "sigma")},
        **{k: (n_rows, n_c, n_c) for k in ("edge_jump_per_m", "edge_jump_sigma_per_m")},
        "li/systematic": (n_rows, n_c, n_c),
    }
    res = _block(n_c, block, 0, np.random.default_rng(0))
    path = directory / ("direct.h5" if direct else "hdf5.h5")
    layout = sinks._byte_layout
    if not direct:  # the sink's own fallback: every map through HDF5
        sinks._byte_layout = lambda f, names: {}
    try:
        sink = sinks.H5Sink(path, shapes, "bench")
        r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for lo in range(0, n_rows - block + 1, block):
            sink.write(lo, res)
        wall = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        sink.close()
    finally:
        sinks._byte_layout = layout
    n_bytes = sum(4 * int(np.prod(s)) for s in shapes.values())
    path.unlink()
    return {
        "wall_s": round(wall, 2),
        "user_s": round(r1.ru_utime - r0.ru_utime, 2),
        "system_s": round(r1.ru_stime - r0.ru_stime, 2),
        "GB": round(n_bytes / 1e9, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--block", type=int, default=12)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("write_results.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        out = {
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "shape": {"cols": a.cols, "rows": a.rows, "block_rows": a.block},
        }
        for name, direct in (("hdf5", False), ("direct", True), ("hdf5 again", False)):
            out[name] = run(a.cols, a.rows, a.block, Path(d), direct)
            print(name, out[name], flush=True)
    cpu = {k: out[k]["user_s"] + out[k]["system_s"] for k in ("hdf5", "direct", "hdf5 again")}
    out["cpu_ratio_hdf5_over_direct"] = round(
        min(cpu["hdf5"], cpu["hdf5 again"]) / max(cpu["direct"], 1e-3), 1
    )
    print("CPU seconds, HDF5 / direct:", out["cpu_ratio_hdf5_over_direct"])
    a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
