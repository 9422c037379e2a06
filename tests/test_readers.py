"""TIFF stacks with a sidecar, NSLS-II FXI exports, and TIFF export of Li maps: round trips
written with tifffile and h5py directly (not with xtwin's writers)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile

from xtwin.cli import main
from xtwin.errors import XtwinInputError

N_E, N_A, N_R, N_C = 3, 5, 12, 20
ENERGIES = [8320.0, 8347.0, 8400.0]


def _stacks(rng):
    data = rng.poisson(800, (N_E, N_A, N_R, N_C)).astype(np.uint16)
    flats = rng.poisson(1000, (N_E, 4, N_R, N_C)).astype(np.uint16)
    return data, flats


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_tiff_sidecar_round_trip(tmp_path, fmt):
    from xtwin.io.source import read_scan

    rng = np.random.default_rng(1)
    data, flats = _stacks(rng)
    for i, e in enumerate(ENERGIES):
        tifffile.imwrite(tmp_path / f"proj_{e:.0f}.tif", data[i])
        tifffile.imwrite(tmp_path / f"flat_{e:.0f}.tif", flats[i])
    tifffile.imwrite(tmp_path / "dark.tif", np.full((2, N_R, N_C), 3, np.uint16))
    meta = {
        "energies_eV": ENERGIES,
        "pixel_size_nm": 40.0,
        "angles_deg": {"start": 0.0, "stop": 180.0, "count": N_A},
        "data": [f"proj_{e:.0f}.tif" for e in ENERGIES],
        "flats": [f"flat_{e:.0f}.tif" for e in ENERGIES],
        "darks": "dark.tif",
        "exposure_s": 2.0,
        "flat_exposure_s": [1.0, 1.0, 1.0],
        "sample": "NMC532 #3",
    }
    if fmt == "json":
        side = tmp_path / "scan.json"
        side.write_text(json.dumps(meta))
    else:
        side = tmp_path / "scan.toml"
        side.write_text(
            "\n".join(
                [
                    f"energies_eV = {ENERGIES}",
                    "pixel_size_nm = 40.0",
                    f"angles_deg = {{start = 0.0, stop = 180.0, count = {N_A}}}",
                    "data = " + json.dumps(meta["data"]),
                    "flats = " + json.dumps(meta["flats"]),
                    'darks = "dark.tif"',
                    "exposure_s = 2.0",
                    "flat_exposure_s = [1.0, 1.0, 1.0]",
                    'sample = "NMC532 #3"',
                ]
            )
        )
    out = tmp_path / "scan.h5"
    assert main(["convert", str(side), "-o", str(out)]) == 0
    scan = read_scan(out)
    np.testing.assert_array_equal(scan.data, data)
    np.testing.assert_array_equal(scan.flats, flats)
    np.testing.assert_allclose(scan.theta_deg, np.linspace(0, 180, N_A, endpoint=False))
    np.testing.assert_allclose(scan.energy_eV, ENERGIES)
    assert scan.pixel_size_m == pytest.approx(40e-9)
    np.testing.assert_allclose(scan.exposure_s, [2.0] * 3)
    assert scan.darks.shape == (2, N_R, N_C)
    assert scan.metadata["sample"] == "NMC532 #3"


def test_tiff_sidecar_errors(tmp_path, capsys):
    side = tmp_path / "scan.toml"
    side.write_text('energies_eV = [8320.0]\ndata = ["missing.tif"]\npixle_size_nm = 30\n')
    assert main(["convert", str(side), "-o", str(tmp_path / "o.h5")]) == 2
    assert "pixle_size_nm" in capsys.readouterr().err  # a typo is named
    side.write_text('energies_eV = [8320.0]\ndata = ["missing.tif"]\npixel_size_nm = 30\n')
    assert main(["convert", str(side), "-o", str(tmp_path / "o.h5")]) == 2
    assert "missing.tif" in capsys.readouterr().err
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    side.write_text('energies_eV = [8320.0]\ndata = ["bad.tif"]\npixel_size_nm = 30\n')
    assert main(["convert", str(side), "-o", str(tmp_path / "o.h5")]) == 2
    assert "not a readable TIFF" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


def _fxi_tomo(path, energy_keV, theta, rng, pixel="21.3nm"):
    with h5py.File(path, "w") as f:
        f["img_tomo"] = rng.poisson(900, (theta.size, N_R, N_C)).astype(np.uint16)
        f["img_bkg"] = rng.poisson(1000, (5, N_R, N_C)).astype(np.uint16)
        f["img_dark"] = np.full((3, N_R, N_C), 2, np.uint16)
        f["img_bkg_avg"] = f["img_bkg"][()].mean(axis=0, keepdims=True).astype(np.float32)
        f["angle"] = theta
        f["X_eng"] = energy_keV
        f["Pixel Size"] = pixel
        f["scan_id"] = 1234


def test_fxi_tomography_files_become_one_scan(tmp_path):
    from xtwin.io.source import read_scan

    rng = np.random.default_rng(2)
    theta = np.linspace(-90, 90, N_A)
    paths = []
    for k, e in enumerate((8.400, 8.320, 8.347)):  # any order: sorted by energy
        p = tmp_path / f"fly_scan_id_{100 + k}.h5"
        _fxi_tomo(p, e, theta + 0.01 * k, rng)  # fly-scan angles differ a little
        paths.append(p)
    out = tmp_path / "scan.h5"
    assert main(["convert", *map(str, paths), "-o", str(out)]) == 0
    scan = read_scan(out)
    np.testing.assert_allclose(scan.energy_eV, ENERGIES)
    assert scan.shape == (3, N_A, N_R, N_C)
    assert scan.pixel_size_m == pytest.approx(21.3e-9)
    with h5py.File(paths[1], "r") as f:  # 8.320 keV is the first energy
        np.testing.assert_array_equal(scan.data[0], f["img_tomo"][()])


def test_fxi_angles_that_disagree_are_refused(tmp_path):
    from xtwin.io.fxi import fxi_to_scan

    rng = np.random.default_rng(3)
    theta = np.linspace(-90, 90, N_A)
    _fxi_tomo(tmp_path / "a.h5", 8.32, theta, rng)
    _fxi_tomo(tmp_path / "b.h5", 8.40, theta + 30.0, rng)
    with pytest.raises(XtwinInputError, match="share the rotation angles"):
        fxi_to_scan([tmp_path / "a.h5", tmp_path / "b.h5"])


def test_fxi_xanes_is_transmission(tmp_path):
    from xtwin.io.source import read_scan

    t = np.full((4, N_R, N_C), 0.5, np.float32)
    with h5py.File(tmp_path / "xanes_scan_id_5.h5", "w") as f:
        f["img_xanes"] = t
        f["X_eng"] = [8.33, 8.345, 8.35, 8.4]
        f["Pixel Size"] = "30.0nm"
    out = tmp_path / "x.h5"
    assert main(["convert", str(tmp_path / "xanes_scan_id_5.h5"), "-o", str(out)]) == 0
    scan = read_scan(out)
    assert scan.shape == (4, 1, N_R, N_C) and scan.flats is None
    np.testing.assert_allclose(scan.energy_eV, [8330, 8345, 8350, 8400])


def test_export_tiff_round_trip(demo_run, tmp_path):
    from xtwin.io.limap import read_limap

    limap_path = demo_run / "limap.h5"
    out = tmp_path / "tiffs"
    assert main(["export", str(limap_path), "--tiff", str(out)]) == 0
    lm = read_limap(limap_path)
    with tifffile.TiffFile(out / "lithiation.tif") as tf:
        arr = tf.asarray()
        assert tf.is_imagej
        x_res = tf.pages[0].tags["XResolution"].value
        spacing = tf.imagej_metadata["spacing"]
    np.testing.assert_array_equal(arr, lm.lithiation)
    pixel_um = lm.pixel_size_m * 1e6
    assert x_res[1] / x_res[0] == pytest.approx(pixel_um, rel=1e-4)  # um per pixel
    assert spacing == pytest.approx(pixel_um, rel=1e-6)
    for e in lm.energy_eV:
        assert (out / f"mu_{e:.1f}eV.tif").exists()
    assert not list(out.glob("*.part"))


@pytest.mark.parametrize(
    "body",
    [
        "energies_eV = [8320.0]\ndata = 5\npixel_size_nm = 30\n",
        'energies_eV = "x"\ndata = ["a.tif"]\npixel_size_nm = 30\n',
        'energies_eV = [8320.0]\ndata = ["a.tif"]\npixel_size_nm = "30"\n',
        'energies_eV = [8320.0]\ndata = ["a.tif"]\nangles_deg = [0, "x"]\npixel_size_nm = 30\n',
        'energies_eV = [8320.0]\ndata = ["a.tif"]\npixel_size_nm = 30\nexposure_s = "long"\n',
    ],
)
def test_tiff_sidecar_wrong_types_exit_2(tmp_path, capsys, body):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((2, 8, 8), np.float32))
    side = tmp_path / "s.toml"
    side.write_text(body)
    assert main(["convert", str(side), "-o", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert not (tmp_path / "o.h5").exists()
