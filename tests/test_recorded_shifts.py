"""Recorded per-projection shifts (Xradia's alignment shifts, kept in the scan file):
applied as they are (--xradia-shifts use), a starting point and candidate of the run-out
estimate (auto), or ignored; on an analytic phantom displaced by known offsets."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.test_runout import _offsets, _sinogram
from xtwin.cli import main
from xtwin.io.scan import ScanData, read_header, write_scan

N_ROW = 20


def _scan(theta, dx, recorded) -> ScanData:
    rng = np.random.default_rng(5)
    flat = 40000.0
    p = _sinogram(theta, dx)  # (n_angle, n_col), attenuation per pixel
    counts = rng.poisson(flat * np.exp(-np.repeat(p[:, None, :], N_ROW, axis=1)))
    n_col = p.shape[1]
    return ScanData(
        data=counts[None].astype(np.uint16),
        flats=rng.poisson(flat, (1, 4, N_ROW, n_col)).astype(np.uint16),
        darks=np.zeros((2, N_ROW, n_col), np.uint16),
        theta_deg=theta,
        energy_eV=np.array([8400.0]),
        pixel_size_m=1e-6,
        projection_shifts_px=recorded,
    )


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("shifts")
    theta = np.linspace(0.0, 180.0, 121, endpoint=False)
    dx = _offsets(np.random.default_rng(3), theta)
    shifts = np.zeros((1, theta.size, 2))
    shifts[0, :, 1] = -dx  # the shift that aligns each projection
    write_scan(d / "moved.h5", _scan(theta, dx, shifts))
    write_scan(d / "still.h5", _scan(theta, np.zeros_like(dx), None))
    out = {}
    for name, scan, extra in (
        ("still", "still.h5", ["--align-projections", "off"]),
        ("none", "moved.h5", ["--align-projections", "off", "--xradia-shifts", "ignore"]),
        ("use", "moved.h5", ["--xradia-shifts", "use"]),
        ("auto", "moved.h5", ["--align-projections", "on"]),
    ):
        args = ["process", str(d / scan), "-o", str(d / f"map_{name}.h5"), "--center-offset", "0"]
        assert main(args + extra) == 0, name
        with h5py.File(d / f"map_{name}.h5", "r") as f:
            out[name] = (
                f["/recon/mu"][0],
                json.loads(f["/provenance"].attrs["projection_alignment"]),
            )
    return d, out


def test_recorded_shifts_kept_in_the_scan_file(maps):
    d, _ = maps
    h = read_header(d / "moved.h5")[0]
    assert h.projection_shifts_px is not None and h.projection_shifts_px.shape == (1, 121, 2)


def _err(mu, ref):
    """Rms difference inside the pillar of the slices averaged over the rows (every row sees
    the same discs: the average leaves the motion's blur, not the noise)."""
    n = mu.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    inside = np.hypot(yy, xx) < 26
    return float(np.sqrt(np.mean((mu.mean(axis=0) - ref.mean(axis=0))[inside] ** 2)))


def test_use_and_auto_undo_the_motion(maps):
    _, out = maps
    still = out["still"][0]
    e_none, e_use, e_auto = (_err(out[k][0], still) for k in ("none", "use", "auto"))
    # the recorded shifts undo the motion: the map of the moving sample comes to the noise of
    # the still one (two independent noisy maps: about 2300 in 1/m after the row average),
    # against 6300 without alignment
    print(f"rms vs still: none {e_none:.0f}, use {e_use:.0f}, auto {e_auto:.0f}")
    assert e_use < 0.55 * e_none
    assert e_auto < 0.55 * e_none
    rec = out["use"][1]
    assert rec["applied"] and "recorded" in rec["method"]
    auto = out["auto"][1]
    assert auto["applied"]
    assert [i["matched_to"] for i in auto["per_energy"].values()] == ["recorded shifts"]
