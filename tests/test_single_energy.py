"""Single-energy scans: the attenuation only, on an analytic phantom and on a real tomogram
(tomopy's tooth.h5, shared/data/txm/tomopy)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xtwin.cli import main
from xtwin.io.limap import read_limap
from xtwin.io.scan import ScanData, read_header, write_scan

MU_PER_M = 2.0e4  # the disc's attenuation
PIXEL_M = 50e-9
RADIUS_PX = 20.0


def _disc_scan(n_col: int = 96, n_angle: int = 180, energy: float | None = 8400.0) -> ScanData:
    """Exact strip integrals of a centred disc (the chord averaged over each pixel's width),
    Poisson counts (seed 0) with flats."""
    x = np.arange(n_col) - (n_col - 1) / 2
    fine = x[:, None] + (np.arange(16) + 0.5)[None] / 16 - 0.5
    chord = 2 * np.sqrt(np.clip(RADIUS_PX**2 - fine**2, 0, None)).mean(axis=1)
    trans = np.exp(-MU_PER_M * PIXEL_M * chord)
    flat = 20000.0
    rng = np.random.default_rng(0)
    proj = rng.poisson(np.broadcast_to(flat * trans, (1, n_angle, 4, n_col))).astype(np.uint16)
    return ScanData(
        data=proj,
        flats=rng.poisson(flat, (1, 3, 4, n_col)).astype(np.uint16),
        darks=np.zeros((2, 4, n_col), np.uint16),
        theta_deg=np.linspace(0, 180, n_angle, endpoint=False),
        energy_eV=np.array([np.nan if energy is None else energy]),
        pixel_size_m=PIXEL_M,
    )


def _interior(mu: np.ndarray) -> np.ndarray:
    n = mu.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    return mu[..., np.hypot(yy, xx) < RADIUS_PX - 3]


def test_single_energy_disc_mu_in_per_metre(tmp_path, capsys):
    scan_path = tmp_path / "disc.h5"
    write_scan(scan_path, _disc_scan())
    out = tmp_path / "mu.h5"
    assert main(["process", str(scan_path), "-o", str(out), "--center-offset", "0"]) == 0
    text = capsys.readouterr().out
    assert "1/m" in text and "no lithiation" in text
    with h5py.File(out, "r") as f:
        assert "/li" not in f  # no lithiation written
        assert f["/recon/mu"].attrs["units"] == "1/m"
        assert f["/recon"].attrs["mode"] == "attenuation"
        mu, sig = f["/recon/mu"][0], f["/recon/mu_sigma"][0]
    inside = _interior(mu)
    # the disc's mu within 2 % (the FBP's filter and interpolation, and the noise)
    assert np.median(inside) == pytest.approx(MU_PER_M, rel=0.02)
    assert np.all(np.isfinite(_interior(sig))) and np.all(_interior(sig) > 0)
    lm = read_limap(out)
    assert not lm.has_lithiation and np.all(np.isnan(lm.lithiation))


def test_single_energy_unknown_energy_and_pixel(tmp_path, capsys):
    scan = _disc_scan(energy=None)
    scan_path = tmp_path / "disc.h5"
    write_scan(scan_path, scan)
    with h5py.File(scan_path, "r+") as f:
        del f["/measurement/instrument/detector/pixel_size"]
    h = read_header(scan_path)[0]
    assert not h.energy_known and h.pixel_size_assumed
    assert main(["info", str(scan_path)]) == 0
    assert "1 energy (not recorded)" in capsys.readouterr().out
    out = tmp_path / "mu.h5"
    assert main(["process", str(scan_path), "-o", str(out), "--center-offset", "0"]) == 0
    with h5py.File(out, "r") as f:
        assert f["/recon/mu"].attrs["units"] == "1/pixel"
        assert np.isnan(f["/recon/energy_eV"][0])
        mu = f["/recon/mu"][0]
    # per pixel: mu * pixel size
    assert np.median(_interior(mu)) == pytest.approx(MU_PER_M * PIXEL_M, rel=0.02)
    assert main(["info", str(out)]) == 0
    assert "1/pixel" in capsys.readouterr().out
    assert main(["analyze", str(out), "-o", str(tmp_path / "an")]) == 2
    assert "single-energy" in capsys.readouterr().err
    assert main(["export", str(out), "--tiff", str(tmp_path / "tif")]) == 0
    assert (tmp_path / "tif" / "mu_energy_unknown.tif").exists()
    assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
    assert "no lithiation" in (tmp_path / "rep" / "report.html").read_text()


def test_single_energy_series_and_refusals(tmp_path, capsys):
    paths = []
    for k in range(2):
        p = tmp_path / f"t{k}.h5"
        write_scan(p, _disc_scan(energy=None))
        paths.append(str(p))
    out = tmp_path / "series.h5"
    args = ["process", *paths, "-o", str(out), "--center-offset", "0"]
    assert main(args) == 0
    for name in ("series_t000.h5", "series_t001.h5"):
        assert read_limap(tmp_path / name).mode == "attenuation"
    # an energy calibration needs energies
    rc = main(["process", paths[0], "-o", str(tmp_path / "x.h5"), "--energy-offset", "0.2"])
    assert rc == 2 and "single-energy" in capsys.readouterr().err
    # several energy stacks without energies are still refused
    multi = tmp_path / "multi.h5"
    with h5py.File(multi, "w") as f:
        f["/exchange/data"] = np.ones((2, 3, 4, 8), np.float32)
        f["/exchange/theta"] = np.arange(3.0)
    rc = main(["process", str(multi), "-o", str(tmp_path / "m.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and "energies" in err and "Traceback" not in err


def _com_axis(path) -> float:
    """Rotation axis (column) from the projections' centre of mass: it traces
    c + a cos(theta) + b sin(theta) in parallel-beam tomography (a method independent of
    xtwin's reconstruction-based search)."""
    with h5py.File(path, "r") as f:
        d = f["/exchange/data"][()]
        white = f["/exchange/data_white"][()].mean(axis=0)
        dark = f["/exchange/data_dark"][()].mean(axis=0)
        theta = np.radians(f["/exchange/theta"][()])
    p = -np.log(np.clip((d - dark) / (white - dark), 1e-3, None)).mean(axis=1)
    x = np.arange(p.shape[1])
    com = (p * x).sum(axis=1) / p.sum(axis=1)
    a = np.c_[np.ones_like(theta), np.cos(theta), np.sin(theta)]
    return float(np.linalg.lstsq(a, com, rcond=None)[0][0])


def test_tooth_single_energy_real_tomogram(shared_data, tmp_path, capsys):
    tooth = shared_data / "txm" / "tomopy" / "tooth.h5"
    assert main(["info", str(tooth)]) == 0
    text = capsys.readouterr().out
    assert "1 energy (not recorded)" in text and "181 angles" in text
    out = tmp_path / "tooth_mu.h5"
    assert main(["process", str(tooth), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "found from the data" in err and "Traceback" not in err
    with h5py.File(out, "r") as f:
        mu = f["/recon/mu"][0]
        assert mu.shape == (2, 640, 640)
        assert f["/recon/mu"].attrs["units"] == "1/pixel"
        offset = float(f["/provenance"].attrs["rotation_center_px"])
    axis = (640 - 1) / 2 + offset
    assert abs(axis - _com_axis(tooth)) < 1.0
    # it looks like a tooth: a dense object in the middle of an empty field (both rows)
    n = mu.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    for row in mu:
        dense = np.percentile(row[np.hypot(yy, xx) < 150], 90)
        empty = row[(np.hypot(yy, xx) > 250) & (np.hypot(yy, xx) < 300)]
        assert dense > 10 * np.std(empty)
        assert abs(np.median(empty)) < 0.05 * dense
        solid = np.mean(row > 0.5 * dense)  # the tooth's cross-section: 5-20 % of the slice
        assert 0.05 < solid < 0.2
