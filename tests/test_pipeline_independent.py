"""`xtwin process` on a scan file written by independent code (h5py directly).

Uniform spheres of known lithiation, analytic parallel-beam projections (chord lengths,
4x4 supersampled per detector pixel, intensities averaged), a simple attenuation model built
here from xraylib directly (not from xtwin.physics), reference spectra in keV with a header
line and whitespace separators, one file per energy, pixel size in micrometres.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xraylib
from scipy.special import erf

from xtwin.cli import main

W_TRUE = (0.15, 0.5, 0.85)
N_COL, N_ROW, N_ANG = 48, 60, 90
PIXEL_UM = 0.5
SPHERES = [((10.0, -6.0, 4.0), 6.0), ((30.0, 5.0, -5.0), 6.5), ((50.0, -2.0, 6.0), 6.0)]


def shape(e, edge, wl):
    return 0.5 * (1 + erf((e - edge) / 2.0)) + 0.5 * np.exp(-0.5 * ((e - wl) / 2.5) ** 2)


def mu_nmc_per_um(e_eV, w):
    """Independent model: xraylib below-edge NMC, E^-2.7 background, Ni jump E^-2.75."""
    rho = 4.74
    bg = xraylib.CS_Total_CP("LiNi0.5Mn0.3Co0.2O2", 8.32) * (e_eV / 8320.0) ** -2.7
    jump = 0.3039 * (xraylib.CS_Total(28, 8.5) - xraylib.CS_Total(28, 8.3) *
                     (8500 / 8300) ** -2.7) * (e_eV / 8500.0) ** -2.75
    s = w * shape(e_eV, 8345.5, 8349.5) + (1 - w) * shape(e_eV, 8347.8, 8352.0)
    return (bg + jump * s) * rho * 1e-4


def project(energy, theta_deg):
    """Analytic transmission of the spheres, supersampled 4x4 per pixel."""
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    u = ((np.arange(N_COL) - (N_COL - 1) / 2)[:, None] + sub).ravel() * PIXEL_UM
    v = ((np.arange(N_ROW))[:, None] + sub + 0.5).ravel() * PIXEL_UM
    out = np.empty((len(theta_deg), N_ROW, N_COL))
    for k, th in enumerate(np.radians(theta_deg)):
        line = np.zeros((v.size, u.size))
        for ((z0, x0, y0), r), w in zip(SPHERES, W_TRUE):
            z0 *= PIXEL_UM
            x0, y0, r = x0 * PIXEL_UM, y0 * PIXEL_UM, r * PIXEL_UM
            u0 = x0 * np.cos(th) + y0 * np.sin(th)
            d2 = (u[None, :] - u0) ** 2 + (v[:, None] - z0) ** 2
            line += 2 * np.sqrt(np.clip(r**2 - d2, 0, None)) * mu_nmc_per_um(energy, w)
        t = np.exp(-line).reshape(N_ROW, 4, N_COL, 4).mean(axis=(1, 3))
        out[k] = t
    return out


@pytest.fixture(scope="module")
def independent_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("independent")
    rng = np.random.default_rng(2024)
    theta = np.linspace(0, 180, N_ANG, endpoint=False)
    i0 = 50000.0
    paths = []
    for e in (8320.0, 8347.0, 8400.0):
        proj = rng.poisson(i0 * project(e, theta)).astype(np.uint16)
        flats = rng.poisson(i0, (10, N_ROW, N_COL)).astype(np.uint16)
        p = d / f"scan_{e:.0f}eV.h5"
        with h5py.File(p, "w") as f:
            f["/exchange/data"] = proj
            f["/exchange/data_white"] = flats
            f["/exchange/data_dark"] = np.zeros((2, N_ROW, N_COL), np.uint16)
            f["/exchange/theta"] = theta
            f["/measurement/instrument/monochromator/energy"] = e / 1000.0
            f["/measurement/instrument/monochromator/energy"].attrs["units"] = "keV"
            f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM
            f["/measurement/instrument/detector/pixel_size"].attrs["units"] = "um"
        paths.append(p)
    e = np.concatenate([np.arange(8200, 8330, 5.0), np.arange(8330, 8380, 0.5),
                        np.arange(8380, 8900, 5.0)])
    refs = {}
    for name, w in (("lith", 1.0), ("delith", 0.0)):
        refs[name] = d / f"{name}.txt"
        rows = "\n".join(f"{a / 1000:.6f}  {b:.6f}" for a, b in zip(e, 3 * mu_nmc_per_um(e, w)
                                                                   + 0.1))
        refs[name].write_text("# standard pellet\nEnergy(keV)  Absorbance\n" + rows + "\n")
    return d, paths, refs


def test_process_recovers_uniform_spheres(independent_files):
    from xtwin.io.limap import read_limap

    d, paths, refs = independent_files
    out = d / "limap.h5"
    rc = main(["process", *map(str, paths), "--lithiated", str(refs["lith"]),
               "--delithiated", str(refs["delith"]), "-o", str(out)])
    assert rc == 0
    assert not (d / "limap.h5.resume.zarr").exists()  # the checkpoint goes once done
    lm = read_limap(out)
    assert lm.lithiation.shape == (N_ROW, N_COL, N_COL)
    assert lm.pixel_size_m == pytest.approx(PIXEL_UM * 1e-6)
    for ((z0, _, _), _r), w in zip(SPHERES, W_TRUE):
        core = lm.lithiation[int(z0) - 2:int(z0) + 3]
        vals = core[np.isfinite(core)]
        assert vals.size > 100
        assert np.mean(vals) == pytest.approx(w, abs=0.03)
    # nothing but the spheres has Ni
    between = lm.lithiation[20:22]
    assert np.isfinite(between).mean() < 0.01
