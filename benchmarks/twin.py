"""The twin at beamline size, end to end: simulate, then process, with time and peak memory
per stage, and the twin's projection + noise against ASTRA's own forward projection.

    python benchmarks/twin.py [SCENARIO.toml] [--scale 0.5] [--out benchmarks/twin_results.json]

SCENARIO defaults to ``synthetic/beamline.toml`` (512 x 512 x 256 rows x 721 angles, three
energies). ``--scale`` shrinks the grid (columns and rows, pixel size grown to keep the sample)
and the angles, for a quicker look. Peak memory per stage is sampled from /proc every 50 ms.

The peer: ASTRA's CPU forward projection of the same volume, one call per slice per energy
(what a twin without the linearity of mu would do), with its strip projector (the twin's
default) and its fastest one (``line``). ASTRA is timed on a few slices and scaled to the
volume's slices (its cost per slice is the same for every slice); the table says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))
from memory import measure  # noqa: E402  (the child-process peak-memory measurement)


class _RssSampler:
    """Peak resident memory of this process between marks."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)

    def mark(self) -> int:
        p, self.peak = max(self.peak, self.rss()), self.rss()
        return p

    def stop(self) -> None:
        self._stop = True


def scaled(scenario, scale: float):
    if scale == 1.0:
        return scenario
    g, a = scenario.grid, scenario.acquisition
    grid = dataclasses.replace(
        g,
        n_pixels=max(16, int(round(g.n_pixels * scale))),
        n_rows=max(8, int(round(g.n_rows * scale))),
        pixel_size_m=g.pixel_size_m / scale,
    )
    acq = dataclasses.replace(a, n_angles=max(16, int(round((a.n_angles - 1) * scale)) + 1))
    return dataclasses.replace(scenario, grid=grid, acquisition=acq)


def astra_forward_seconds(n: int, n_angles: int, kind: str, n_slices: int = 4) -> float:
    """Seconds per slice of ASTRA's CPU forward projection of an n x n slice."""
    import astra
    import numpy as np

    rng = np.random.default_rng(0)
    vg = astra.create_vol_geom(n, n)
    pg = astra.create_proj_geom(
        "parallel", 1.0, n, np.radians(np.linspace(0, 180, n_angles, endpoint=False))
    )
    pid = astra.create_projector(kind, pg, vg)
    img = rng.random((n, n)).astype(np.float32)
    t = time.perf_counter()
    for _ in range(n_slices):
        sid, _ = astra.create_sino(img, pid)
        astra.data2d.delete(sid)
    astra.projector.delete(pid)
    return (time.perf_counter() - t) / n_slices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "synthetic" / "beamline.toml"))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("twin_results.json")))
    ap.add_argument("--memory-limit", default="2GB")
    args = ap.parse_args()

    from xtwin.forward.scenario import load_scenario
    from xtwin.forward.twin import simulate, write_outputs

    sc = scaled(load_scenario(args.scenario), args.scale)
    g, a = sc.grid, sc.acquisition
    n_fine, nz_fine = g.n_pixels * g.oversample, g.n_rows * g.oversample
    print(
        f"{sc.name}: {g.n_pixels} x {g.n_pixels} x {g.n_rows} rows x {a.n_angles} angles x "
        f"{len(a.energies_eV)} energies; fine grid {n_fine}^2 x {nz_fine}, projector "
        f"{g.projector}",
        flush=True,
    )
    sampler = _RssSampler()
    stages: dict[str, dict[str, float]] = {}
    last = [time.perf_counter()]

    def tick(stage: str, n: int) -> None:
        t = time.perf_counter()
        s = stages.setdefault(stage, {"seconds": 0.0, "peak_GiB": 0.0})
        s["seconds"] = round(s["seconds"] + t - last[0], 2)
        s["peak_GiB"] = round(max(s["peak_GiB"], sampler.mark() / 2**30), 3)
        last[0] = t
        print(f"  {stage:16s} {s['seconds']:8.1f} s  peak {s['peak_GiB']:.2f} GiB", flush=True)

    t0 = time.perf_counter()
    res = simulate(sc, progress=tick)
    with tempfile.TemporaryDirectory(dir=os.environ.get("XTWIN_BENCH_DIR")) as tmp:
        t = time.perf_counter()
        paths = write_outputs(res, sc, tmp, force=True)
        stages["write files"] = {
            "seconds": round(time.perf_counter() - t, 2),
            "peak_GiB": round(sampler.mark() / 2**30, 3),
        }
        simulate_s = time.perf_counter() - t0
        scan_gib = paths["scan.h5"].stat().st_size / 2**30
        del res
        sampler.stop()
        twin_proj_s = sum(stages[k]["seconds"] for k in ("projections", "transmission", "noise"))
        n_e = len(a.energies_eV)
        peers = {}
        for kind in ("strip", "line"):
            per_slice = astra_forward_seconds(n_fine, a.n_angles, kind)
            peers[f"astra_{kind}_fine_grid_s"] = round(per_slice * nz_fine * n_e, 1)
            print(
                f"  ASTRA {kind}: {per_slice:.3f} s per {n_fine}^2 slice -> "
                f"{peers[f'astra_{kind}_fine_grid_s']:.0f} s for {nz_fine} slices x {n_e} energies",
                flush=True,
            )
        # the pipeline on the twin's scan, in a child process (its own peak memory)
        peak, wall = measure(
            [
                sys.executable,
                "-m",
                "xtwin.cli",
                "process",
                str(paths["scan.h5"]),
                "--lithiated",
                str(paths["reference_lithiated.csv"]),
                "--delithiated",
                str(paths["reference_delithiated.csv"]),
                "-o",
                str(Path(tmp) / "limap.h5"),
                "--memory-limit",
                args.memory_limit,
            ],
            "xtwin process",
        )
        import h5py

        with h5py.File(Path(tmp) / "limap.h5") as f:
            timing = json.loads(f["/provenance"].attrs["timing_s"])
        from xtwin.io.limap import read_limap
        from xtwin.io.truth import read_truth
        from xtwin.validate.metrics import compare

        m = compare(read_limap(Path(tmp) / "limap.h5"), read_truth(paths["truth.h5"]))
    doc = {
        "scenario": sc.name,
        "shape": {
            "cols": g.n_pixels,
            "rows": g.n_rows,
            "angles": a.n_angles,
            "energies": n_e,
            "fine_grid": [n_fine, n_fine, nz_fine],
            "projector": g.projector,
        },
        "scan_GiB": round(scan_gib, 3),
        "simulate": {"total_s": round(simulate_s, 1), "stages": stages},
        "twin_projection_and_noise_s": round(twin_proj_s, 1),
        "peers_extrapolated_from_4_slices": peers,
        "twin_over_astra_line": round(twin_proj_s / peers["astra_line_fine_grid_s"], 3),
        "twin_over_astra_strip": round(twin_proj_s / peers["astra_strip_fine_grid_s"], 3),
        "process": {
            "wall_s": round(wall, 1),
            "peak_GiB": round(peak / 2**30, 3),
            "memory_limit": args.memory_limit,
            "timing_s": timing,
        },
        "accuracy": {
            "particle_mae": round(m.particle.mae, 4),
            "voxel_rmse": round(m.voxel.rmse, 4),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
