"""Opening a large Li map in the napari viewer: time to the first drawn frame and the viewer
process's resident memory, for a 1024 x 1024 x 512 float32 map plus its sigma (4 GiB of data,
written here as a Li-map file with its Ni mask; the viewer's layers are dask arrays over the
HDF5 datasets, so nothing close to the whole map is read).

    xvfb-run -a python benchmarks/viewer_open.py [--shape 512,1024,1024] [--json OUT]

Needs the viewer extra (``pip install -e ".[viewer]"``) and a display (Xvfb). The map file
is made once in a temporary folder (about a minute) and removed afterwards; the opening is
measured in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_OPEN = """
import resource, sys, time
t0 = time.perf_counter()
from xtwin.viewer import open_viewer
v = open_viewer([sys.argv[1]], show=True, widget=True)
from qtpy.QtWidgets import QApplication
QApplication.processEvents()
img = v.screenshot(canvas_only=True, flash=False)
t1 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"RESULT {t1 - t0:.3f} {rss} {float(img[..., :3].std()):.2f}")
v.close()
"""


def write_map(path: Path, shape: tuple[int, int, int]) -> None:
    """A Li-map file of ``shape`` written slice by slice (smooth w, a sigma, a mask)."""
    import h5py

    nz, ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    with h5py.File(path, "w") as f:
        lith = f.create_dataset("/li/lithiation", shape, np.float32)
        sig = f.create_dataset("/li/sigma", shape, np.float32)
        mask = f.create_dataset("/li/mask", shape, np.uint8)
        for z in range(nz):
            w = 0.5 + 0.4 * np.sin(xx / 37.0 + z / 50.0) * np.cos(yy / 29.0)
            inside = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) < (0.45 * nx) ** 2
            lith[z] = np.where(inside, w, np.nan).astype(np.float32)
            sig[z] = np.where(inside, 0.05, np.nan).astype(np.float32)
            mask[z] = inside.astype(np.uint8)
        f["/recon/pixel_size_m"] = np.float64(50e-9)
        f["/recon/energy_eV"] = np.array([8320.0, 8347.0, 8400.0])
        f.create_group("/provenance")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="512,1024,1024", help="z,y,x of the map")
    ap.add_argument("--json", default=str(Path(__file__).with_name("viewer_results.json")))
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big_limap.h5"
        t = time.perf_counter()
        write_map(path, shape)  # type: ignore[arg-type]
        written = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", _OPEN, str(path)], capture_output=True, text=True, timeout=600
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
        if line is None:
            raise SystemExit(f"the viewer did not open the map:\n{out.stderr[-3000:]}")
        seconds, rss, std = line.split()[1:]
        size = path.stat().st_size
    result = {
        "shape_zyx": list(shape),
        "file_GiB": round(size / 2**30, 2),
        "write_s": round(written, 1),
        "open_to_first_frame_s": float(seconds),
        "viewer_peak_rss_MiB": round(int(rss) / 2**20, 1),
        "canvas_not_blank_std": float(std),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
