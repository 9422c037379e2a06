"""Write a beamline-size scan (Data Exchange, uint16 counts) without xtwin, angle block by
angle block, so its size is not limited by memory; and a pair of reference spectra.

The phantom is independent of xtwin's physics: spheres of NMC-like attenuation with three
lithiation levels, analytic chord lengths, an energy model written here (erf edge + white
line, E^-2.7 background), Poisson noise at a stated photon count.

    python benchmarks/bigscan.py OUT_DIR --cols 1024 --rows 512 --angles 721 [--photons 20000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
from scipy.special import erf

ENERGIES_EV = (8320.0, 8347.0, 8400.0)


def _shape(e, edge, wl):
    return 0.5 * (1 + erf((e - edge) / 2.0)) + 0.5 * np.exp(-0.5 * ((e - wl) / 2.5) ** 2)


def mu_per_px(e_eV, w, pixel_um=0.04):
    """Attenuation per pixel of dense NMC-like material (xraylib-free model)."""
    bg = 95.7 * (e_eV / 8300.0) ** -2.7  # cm2/g below the edge
    jump = 85.0 * (e_eV / 8350.0) ** -2.75  # cm2/g Ni edge jump
    s = w * _shape(e_eV, 8345.5, 8349.5) + (1 - w) * _shape(e_eV, 8347.8, 8352.0)
    return (bg + jump * s) * 4.74 * pixel_um * 1e-4


def spheres(n_col, n_row, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    n = max(8, int(n_col * n_row / 6000))
    for _ in range(n):
        r = rng.uniform(0.03, 0.07) * n_col
        x, y = rng.uniform(-0.3, 0.3, 2) * n_col
        z = rng.uniform(r, n_row - r) if n_row > 2 * r else n_row / 2
        out.append((x, y, z, r, float(rng.choice([0.2, 0.5, 0.8]))))
    return out


def write_big_scan(out_dir, n_col=1024, n_row=512, n_angle=721, photons=20000.0, seed=0):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scan.h5"
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, 180, n_angle, endpoint=False)
    balls = spheres(n_col, n_row)
    u = np.arange(n_col) - (n_col - 1) / 2
    v = np.arange(n_row) + 0.5
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "/exchange/data", (3, n_angle, n_row, n_col), np.uint16, chunks=(1, 1, n_row, n_col)
        )
        f["/exchange/data_white"] = rng.poisson(photons, (3, 10, n_row, n_col)).astype(np.uint16)
        f["/exchange/data_dark"] = np.zeros((4, n_row, n_col), np.uint16)
        f["/exchange/theta"] = theta
        f["/exchange/theta"].attrs["units"] = "degrees"
        f["/measurement/instrument/monochromator/energy"] = np.array(ENERGIES_EV)
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = 40.0
        f["/measurement/instrument/detector/pixel_size"].attrs["units"] = "nm"
        mus = np.array([[mu_per_px(e, w) for (_, _, _, _, w) in balls] for e in ENERGIES_EV])
        for k, th in enumerate(np.radians(theta)):
            line = np.zeros((3, n_row, n_col))
            for i, (x, y, z, r, _) in enumerate(balls):
                uc = x * np.cos(th) + y * np.sin(th)
                c0, c1 = (
                    int(max(0, uc + (n_col - 1) / 2 - r - 1)),
                    int(min(n_col, uc + (n_col - 1) / 2 + r + 2)),
                )
                r0, r1 = int(max(0, z - r - 1)), int(min(n_row, z + r + 2))
                d2 = (u[None, c0:c1] - uc) ** 2 + (v[r0:r1, None] - z) ** 2
                chord = 2 * np.sqrt(np.clip(r * r - d2, 0, None))
                line[:, r0:r1, c0:c1] += mus[:, i, None, None] * chord[None]
            ds[:, k] = rng.poisson(photons * np.exp(-line)).astype(np.uint16)
    e = np.concatenate(
        [np.arange(8200, 8330, 5.0), np.arange(8330, 8380, 0.5), np.arange(8380, 8900, 5.0)]
    )
    refs = {}
    for name, w in (("lithiated", 1.0), ("delithiated", 0.0)):
        refs[name] = out_dir / f"reference_{name}.csv"
        np.savetxt(
            refs[name],
            np.column_stack([e, mu_per_px(e, w) * 100]),
            delimiter=",",
            header="energy_eV,absorbance",
            comments="",
        )
    return path, refs, time.perf_counter() - t0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--angles", type=int, default=721)
    ap.add_argument("--photons", type=float, default=20000.0)
    a = ap.parse_args()
    p, r, dt = write_big_scan(a.out_dir, a.cols, a.rows, a.angles, a.photons)
    print(f"{p} ({p.stat().st_size / 2**30:.2f} GiB) in {dt:.0f} s; references {r}")
