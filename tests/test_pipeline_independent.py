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
    jump = (
        0.3039
        * (xraylib.CS_Total(28, 8.5) - xraylib.CS_Total(28, 8.3) * (8500 / 8300) ** -2.7)
        * (e_eV / 8500.0) ** -2.75
    )
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
    return d, paths, write_references(d)


def write_references(d) -> dict:
    """The two end members' spectra as a standard pellet gives them (3x the attenuation per um
    plus a background), in keV with a comment and a header line."""
    e = np.concatenate(
        [np.arange(8200, 8330, 5.0), np.arange(8330, 8380, 0.5), np.arange(8380, 8900, 5.0)]
    )
    refs = {}
    for name, w in (("lith", 1.0), ("delith", 0.0)):
        refs[name] = d / f"{name}.txt"
        rows = "\n".join(
            f"{a / 1000:.6f}  {b:.6f}" for a, b in zip(e, 3 * mu_nmc_per_um(e, w) + 0.1)
        )
        refs[name].write_text("# standard pellet\nEnergy(keV)  Absorbance\n" + rows + "\n")
    return refs


def test_process_recovers_uniform_spheres(independent_files):
    from xtwin.io.limap import read_limap

    d, paths, refs = independent_files
    out = d / "limap.h5"
    rc = main(
        [
            "process",
            *map(str, paths),
            "--lithiated",
            str(refs["lith"]),
            "--delithiated",
            str(refs["delith"]),
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    assert not (d / "limap.h5.partial").exists()  # the partial file becomes the output
    lm = read_limap(out)
    assert lm.lithiation.shape == (N_ROW, N_COL, N_COL)
    assert lm.pixel_size_m == pytest.approx(PIXEL_UM * 1e-6)
    for ((z0, _, _), _r), w in zip(SPHERES, W_TRUE):
        core = lm.lithiation[int(z0) - 2 : int(z0) + 3]
        vals = core[np.isfinite(core)]
        assert vals.size > 100
        assert np.mean(vals) == pytest.approx(w, abs=0.03)
    # nothing but the spheres has Ni
    between = lm.lithiation[20:22]
    assert np.isfinite(between).mean() < 0.01


# -- streaming, bounded memory, dask, resume ------------------------------------------------


@pytest.fixture(scope="module")
def drifted_scan(tmp_path_factory, independent_files):
    """The independent spheres in one multi-energy file, with the post-edge image drifted by
    (1.6, -0.7) px, so the streamed registration kernel and its halo are exercised."""
    from scipy import ndimage

    d, paths, refs = independent_files
    out = tmp_path_factory.mktemp("drift") / "scan.h5"
    data, flats = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            data.append(f["/exchange/data"][()])
            flats.append(f["/exchange/data_white"][()])
            theta = f["/exchange/theta"][()]
    data[2] = np.clip(
        np.rint(ndimage.shift(data[2].astype(float), (0, 1.6, -0.7), order=3, mode="nearest")),
        0,
        65535,
    ).astype(np.uint16)
    with h5py.File(out, "w") as f:
        f["/exchange/data"] = np.stack(data)
        f["/exchange/data_white"] = np.stack(flats)
        f["/exchange/theta"] = theta
        f["/measurement/instrument/monochromator/energy"] = [8320.0, 8347.0, 8400.0]
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        f["/measurement/instrument/detector/pixel_size"] = PIXEL_UM * 1e-6
    return out, refs


def _same(a, b):
    for k in ("lithiation", "sigma", "mu_per_m", "mu_sigma_per_m", "edge_jump_per_m"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_streamed_blocks_match_in_memory_bit_for_bit(drifted_scan, tmp_path):
    """Blocks of 7 rows read from the file (with the registration halo) give exactly the
    in-memory result; so does a memory limit whose plan needs several blocks."""
    from xtwin.io.limap import read_limap
    from xtwin.io.source import read_scan
    from xtwin.memory import block_bytes, current_rss_bytes, predicted_peak
    from xtwin.pipeline import ProcessOptions, RunOptions, process_file, process_scan

    scan_path, refs = drifted_scan
    ref_args = (refs["lith"], refs["delith"])
    whole = process_scan(read_scan(scan_path), *ref_args, center_offset_px=0.0)
    # the post-edge energy is the reference: the others sit 1.6 rows above it
    reg = whole.provenance["energy_registration_px"]
    assert reg["8400.00"] == [0.0, 0.0]
    np.testing.assert_allclose(reg["8320.00"], [-1.6, 0.7], atol=0.15)
    out = tmp_path / "blocks.h5"
    process_file(
        scan_path,
        *ref_args,
        out,
        options=ProcessOptions(center_offset_px=0.0),
        run=RunOptions(block_rows=7),
    )
    _same(read_limap(out), whole)
    # a memory limit that fits about 5 rows: several blocks, the same result
    shape = (3, N_ANG, N_ROW, N_COL)
    limit = predicted_peak(
        current_rss_bytes(),
        0,
        block_bytes(shape, 2, 5, halo=12, workers=1, n_flat=10, tomography=True),
    ) + (4 << 20)
    out2 = tmp_path / "limited.h5"
    process_file(
        scan_path,
        *ref_args,
        out2,
        options=ProcessOptions(center_offset_px=0.0),
        run=RunOptions(memory_limit_bytes=limit, workers=1),
    )
    lm2 = read_limap(out2)
    assert lm2.provenance["memory"]["rows_per_block"] < N_ROW
    _same(lm2, whole)
    # a row subset gives the same mu and unmasked lithiation as the whole run
    sub = process_scan(read_scan(scan_path), *ref_args, center_offset_px=0.0, rows=(20, 40))
    np.testing.assert_array_equal(sub.mu_per_m, whole.mu_per_m[:, 20:40])
    both = sub.mask & whole.mask[20:40]
    np.testing.assert_array_equal(sub.lithiation[both], whole.lithiation[20:40][both])


def test_dask_two_workers_identical_to_threads(drifted_scan):
    from xtwin.io.source import read_scan
    from xtwin.pipeline import process_scan

    scan_path, refs = drifted_scan
    scan = read_scan(scan_path)
    threads = process_scan(
        scan, refs["lith"], refs["delith"], center_offset_px=0.0, block_rows=8, workers=1
    )
    dask2 = process_scan(
        scan,
        refs["lith"],
        refs["delith"],
        center_offset_px=0.0,
        block_rows=8,
        workers=2,
        scheduler="local",
    )
    _same(dask2, threads)


def test_memory_limit_too_small_is_refused_up_front(drifted_scan, tmp_path):
    scan_path, refs = drifted_scan
    out = tmp_path / "x.h5"
    rc = main(
        [
            "process",
            str(scan_path),
            "--lithiated",
            str(refs["lith"]),
            "--delithiated",
            str(refs["delith"]),
            "-o",
            str(out),
            "--memory-limit",
            "10MB",
        ]
    )
    assert rc == 2
    assert not out.exists() and not (tmp_path / "x.h5.partial").exists()


def _slow_scan(path):
    """A scan big enough that processing one row at a time takes a few seconds."""
    rng = np.random.default_rng(3)
    n_c, n_r, n_a = 160, 120, 360
    theta = np.linspace(0, 180, n_a, endpoint=False)
    u = np.arange(n_c) - (n_c - 1) / 2
    chord = 2 * np.sqrt(np.clip(50.0**2 - u**2, 0, None))
    data = []
    for mu in (0.004, 0.006, 0.008):
        t = np.exp(-mu * chord)[None, None, :] * np.ones((n_a, n_r, 1))
        data.append(rng.poisson(20000 * t).astype(np.uint16))
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.stack(data)
        f["/exchange/data_white"] = rng.poisson(20000, (3, 4, n_r, n_c)).astype(np.uint16)
        f["/exchange/theta"] = theta
        f["/measurement/instrument/monochromator/energy"] = [8320.0, 8347.0, 8400.0]
        f["/measurement/instrument/detector/pixel_size"] = 1e-6


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGINT"])
def test_interrupted_process_resumes_bit_identical(independent_files, tmp_path, sig):
    """SIGKILL mid-run, then the same command: bit-identical to an uninterrupted run.
    SIGINT: exit 130, a message naming what was kept, no final output."""
    import signal
    import subprocess
    import sys
    import time

    from xtwin.io.limap import read_limap

    _, _, refs = independent_files
    scan = tmp_path / "slow.h5"
    _slow_scan(scan)
    args = [
        sys.executable,
        "-m",
        "xtwin.cli",
        "process",
        str(scan),
        "--lithiated",
        str(refs["lith"]),
        "--delithiated",
        str(refs["delith"]),
        "--block-rows",
        "1",
        "--workers",
        "1",
        "--center-offset",
        "0",
    ]
    out = tmp_path / "killed.h5"
    partial = tmp_path / "killed.h5.partial"
    proc = subprocess.Popen(args + ["-o", str(out)], stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not partial.exists() and time.time() - t0 < 60:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert partial.exists() and not out.exists(), err
    if sig == "SIGINT":
        assert proc.returncode == 130
        assert "kept in" in err and "resume" in err and "Traceback" not in err
    rc = subprocess.run(args + ["-o", str(out)], capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr
    assert "resuming" in rc.stderr and not partial.exists()
    ref = tmp_path / "whole.h5"
    assert subprocess.run(args + ["-o", str(ref)], capture_output=True).returncode == 0
    a, b = read_limap(out), read_limap(ref)
    _same(a, b)
    assert any("resumed" in n for n in a.provenance["notes"])
