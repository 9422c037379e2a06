"""A folder of one TIFF per projection, float flats and darks, an angle list with extra lines
(a common beamline export), through convert and process."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile

from xtwin.cli import main
from xtwin.io.tiff import tiff_to_scan

MU_PER_PX = 0.02  # the disc's attenuation per pixel
RADIUS_PX = 18.0


def _folder(d, n_angle=120, n_col=80, rows=3):
    rng = np.random.default_rng(3)
    theta = np.linspace(0.0, 180.0, n_angle, endpoint=False)
    x = np.arange(n_col) - (n_col - 1) / 2 + 2.0  # the axis 2 px left of the centre
    fine = x[:, None] + (np.arange(16) + 0.5)[None] / 16 - 0.5
    chord = 2 * np.sqrt(np.clip(RADIUS_PX**2 - fine**2, 0, None)).mean(axis=1)
    flat = 30000.0 * (1 + 0.2 * np.cos(np.arange(n_col) / 9.0))  # structured illumination
    dark = 100.0
    for k in range(n_angle):  # proj_1 ... proj_N: the name order is not the text order
        img = rng.poisson(np.broadcast_to(flat * np.exp(-MU_PER_PX * chord), (rows, n_col)))
        tifffile.imwrite(d / f"proj_{k + 1}.tif", (img + dark).astype(np.uint16))
    tifffile.imwrite(d / "flat.tif", np.broadcast_to(flat + dark, (rows, n_col)).astype(np.float32))
    tifffile.imwrite(d / "dark.tif", np.full((rows, n_col), dark, np.float32))
    lines = ["# rotation angles, degrees", "# projections follow"]
    lines += [f"{t:.4f}" for t in theta] + ["flat 0.0", "dark 0.0"]
    (d / "angles.txt").write_text("\n".join(lines) + "\n")
    (d / "scan.toml").write_text(
        'data = "proj_*.tif"\nflats = "flat.tif"\ndarks = "dark.tif"\n'
        f'angles_deg = "angles.txt"\nangles_lines = [3, {2 + n_angle}]\n'
    )
    return theta


def test_tiff_folder_reads_in_name_order_with_the_chosen_lines(tmp_path):
    theta = _folder(tmp_path)
    scan = tiff_to_scan(tmp_path / "scan.toml")
    assert scan.data.shape == (1, theta.size, 3, 80) and scan.data.dtype == np.uint16
    np.testing.assert_allclose(scan.theta_deg, theta, atol=1e-4)
    assert np.isnan(scan.energy_eV[0]) and scan.pixel_size_assumed
    # proj_2 comes second (numeric order), not proj_10
    second = tifffile.imread(tmp_path / "proj_2.tif")
    np.testing.assert_array_equal(scan.data[0, 1], second)


def test_tiff_folder_process_recovers_mu(tmp_path, capsys):
    _folder(tmp_path)
    out = tmp_path / "scan.h5"
    assert main(["convert", str(tmp_path / "scan.toml"), "-o", str(out)]) == 0
    limap = tmp_path / "mu.h5"
    assert main(["process", str(out), "-o", str(limap)]) == 0
    err = capsys.readouterr().err
    assert "found from the data" in err
    with h5py.File(limap, "r") as f:
        mu = f["/recon/mu"][0]
        assert f["/recon/mu"].attrs["units"] == "1/pixel"
        offset = float(f["/provenance"].attrs["rotation_center_px"])
    assert offset == pytest.approx(-2.0, abs=0.5)
    n = mu.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = mu[:, np.hypot(yy, xx + 2.0) < RADIUS_PX - 3]
    assert np.median(inside) == pytest.approx(MU_PER_PX, rel=0.03)


@pytest.mark.parametrize(
    "sidecar, match",
    [
        ('data = "nothing_*.tif"\n', "matches no file"),
        ('data = "proj_*.tif"\nflats = "flat.tif"\nangles_deg = "angles.txt"\n', "holds no angle"),
        (
            'data = "proj_*.tif"\nflats = "flat.tif"\nangles_deg = "angles.txt"\n'
            "angles_lines = [3, 9999]\n",
            "angles_lines",
        ),
        ('data = "proj_*.tif"\nflats = "flat.tif"\nangles_deg = "missing.txt"\n', "does not exist"),
    ],
)
def test_tiff_folder_bad_sidecars_exit_2(tmp_path, capsys, sidecar, match):
    _folder(tmp_path, n_angle=20)
    (tmp_path / "bad.toml").write_text(sidecar)
    rc = main(["convert", str(tmp_path / "bad.toml"), "-o", str(tmp_path / "o.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert not (tmp_path / "o.h5").exists()
