"""File contracts: round trips, unit handling, validation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xtwin.errors import XtwinInputError
from xtwin.io.scan import ScanData, write_scan
from xtwin.io.source import read_scan, read_scans
from xtwin.physics.spectra import read_spectrum


def _scan(n_e=3, n_a=4, n_r=3, n_c=5, dtype=np.uint16):
    rng = np.random.default_rng(0)
    return ScanData(
        data=rng.integers(100, 1000, (n_e, n_a, n_r, n_c)).astype(dtype),
        flats=rng.integers(1000, 2000, (n_e, 2, n_r, n_c)).astype(dtype),
        darks=rng.integers(0, 10, (2, n_r, n_c)).astype(dtype),
        theta_deg=np.linspace(0, 180, n_a, endpoint=False),
        energy_eV=np.array([8320.0, 8347.0, 8400.0])[:n_e],
        pixel_size_m=3e-8,
        metadata={"sample": "x"},
        provenance={"k": 1},
    )


@settings(max_examples=15, deadline=None)
@given(
    n_a=st.integers(1, 6),
    n_r=st.integers(1, 4),
    n_c=st.integers(2, 6),
    dtype=st.sampled_from([np.uint16, np.float32]),
)
def test_scan_round_trip(tmp_path_factory, n_a, n_r, n_c, dtype):
    scan = _scan(n_a=n_a, n_r=n_r, n_c=n_c, dtype=dtype)
    p = tmp_path_factory.mktemp("rt") / "s.h5"
    write_scan(p, scan)
    back = read_scan(p)
    for k in ("data", "flats", "darks", "theta_deg", "energy_eV"):
        np.testing.assert_array_equal(getattr(back, k), getattr(scan, k))
    assert back.data.dtype == scan.data.dtype
    assert back.pixel_size_m == scan.pixel_size_m
    assert back.metadata == scan.metadata and back.provenance["k"] == 1


@pytest.mark.parametrize(
    "units, value, expected",
    [("nm", 30.0, 3e-8), ("um", 0.03, 3e-8), ("mm", 3e-5, 3e-8), ("m", 3e-8, 3e-8)],
)
def test_pixel_units_honoured(tmp_path, units, value, expected):
    p = tmp_path / "s.h5"
    write_scan(p, _scan())
    with h5py.File(p, "r+") as f:
        ds = "/measurement/instrument/detector/pixel_size"
        del f[ds]
        f[ds] = value
        f[ds].attrs["units"] = units
    assert read_scan(p).pixel_size_m == pytest.approx(expected)


def test_missing_pixel_size_is_assumed_and_said(tmp_path):
    p = tmp_path / "s.h5"
    write_scan(p, _scan())
    with h5py.File(p, "r+") as f:
        del f["/measurement/instrument/detector/pixel_size"]
    scan = read_scan(p)
    assert any("assumed" in n for n in scan.notes)


def test_2d_xanes_without_theta(tmp_path):
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["/exchange/data"] = np.ones((3, 1, 4, 4), np.float32) * 0.5
        f["/measurement/instrument/monochromator/energy"] = [8.32, 8.347, 8.4]
        f["/measurement/instrument/monochromator/energy"].attrs["units"] = "keV"
    scan = read_scan(p)
    assert not scan.is_tomography
    np.testing.assert_allclose(scan.energy_eV, [8320, 8347, 8400])


def test_one_file_per_energy_merges_and_sorts(tmp_path):
    full = _scan()
    paths = []
    for k in (2, 0, 1):
        p = tmp_path / f"e{k}.h5"
        with h5py.File(p, "w") as f:
            f["/exchange/data"] = full.data[k]
            f["/exchange/data_white"] = full.flats[k]
            f["/exchange/theta"] = full.theta_deg
            f["/measurement/instrument/monochromator/energy"] = full.energy_eV[k]
            f["/measurement/instrument/monochromator/energy"].attrs["units"] = "eV"
        paths.append(p)
    merged = read_scans(paths)
    np.testing.assert_array_equal(merged.energy_eV, full.energy_eV)
    np.testing.assert_array_equal(merged.data, full.data)


def test_negative_counts_refused():
    bad = _scan(dtype=np.float32)
    with pytest.raises(XtwinInputError, match="negative"):
        ScanData(
            data=-bad.data,
            flats=bad.flats,
            darks=bad.darks,
            theta_deg=bad.theta_deg,
            energy_eV=bad.energy_eV,
            pixel_size_m=1e-8,
        )


@pytest.mark.parametrize(
    "sep, scale, header", [(",", 1.0, "energy,mu"), ("  ", 1e-3, ""), ("\t", 1.0, "# comment")]
)
def test_spectrum_formats(tmp_path, sep, scale, header):
    e = np.arange(8300.0, 8400.0, 5.0)
    p = tmp_path / "s.txt"
    lines = ([header] if header else []) + [f"{a * scale}{sep}{a / 1e4}" for a in e]
    p.write_text("\n".join(lines))
    s = read_spectrum(p)
    np.testing.assert_allclose(s.energy_eV, e)


def test_real_xrm_is_not_a_scan(shared_data, tmp_path):
    """Real Xradia frames are OLE2, not HDF5: the scan reader says so (a reader comes later)."""
    from xtwin.io.source import read_scan

    xrm = next((shared_data / "txm" / "ssrl_6-2c_nca").glob("*.xrm"))
    with pytest.raises(XtwinInputError, match="not an HDF5 file"):
        read_scan(xrm)
