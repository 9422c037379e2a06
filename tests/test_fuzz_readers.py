"""Fuzzing every reader with damaged copies of real files: truncated at random offsets, bytes
flipped at random places, random bytes. Only the project's own error may escape."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtwin.errors import XtwinInputError

SHARED_XRM = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "txm"
    / "ssrl_6-2c_nca"
    / "rep01_20161456_ssrl-test-data_08324.0_eV_001of003.xrm"
)


@pytest.fixture(scope="module")
def originals(tmp_path_factory, demo_run):
    from xtwin.forward.scenario import default_scenario
    from xtwin.io.limap import LiMap, write_limap
    from xtwin.io.scan import ScanData, write_scan

    d = tmp_path_factory.mktemp("orig")
    rng = np.random.default_rng(0)
    scan = ScanData(
        data=rng.integers(100, 1000, (3, 4, 3, 5)).astype(np.uint16),
        flats=rng.integers(1000, 2000, (3, 2, 3, 5)).astype(np.uint16),
        darks=rng.integers(0, 10, (2, 3, 5)).astype(np.uint16),
        theta_deg=np.linspace(0, 180, 4, endpoint=False),
        energy_eV=np.array([8320.0, 8347.0, 8400.0]),
        pixel_size_m=3e-8,
    )
    write_scan(d / "scan.h5", scan)
    shape = (2, 4, 4)
    f = np.ones(shape, np.float32)
    write_limap(
        d / "limap.h5",
        LiMap(
            lithiation=f * 0.5,
            sigma=f * 0.1,
            mask=f > 0,
            edge_jump_per_m=f,
            mu_per_m=np.ones((3,) + shape, np.float32),
            mu_sigma_per_m=np.ones((3,) + shape, np.float32),
            energy_eV=np.array([8320.0, 8347.0, 8400.0]),
            pixel_size_m=3e-8,
        ),
    )
    e = np.arange(8200, 8600, 2.0)
    (d / "spec.csv").write_text(
        "energy_eV,mu\n"
        + "\n".join(f"{x},{0.1 + 1 / (1 + np.exp(-(x - 8345) / 2))}" for x in e)
        + "\n"
    )
    (d / "scenario.toml").write_text(default_scenario().to_toml())
    files = {
        "scan": d / "scan.h5",
        "limap": d / "limap.h5",
        "spectrum": d / "spec.csv",
        "scenario": d / "scenario.toml",
        "truth": d / "truth.h5",
    }
    shutil.copy(demo_run / "truth.h5", d / "truth.h5")
    if SHARED_XRM.is_file():
        shutil.copy(SHARED_XRM, d / "frame.xrm")
        files["xradia"] = d / "frame.xrm"
    return files


def _readers():
    from xtwin.forward.scenario import load_scenario
    from xtwin.io.limap import read_limap
    from xtwin.io.source import read_scan
    from xtwin.io.truth import read_truth
    from xtwin.io.xradia import read_xrm
    from xtwin.physics.spectra import normalize, read_spectrum

    return {
        "scan": [read_scan, read_truth, read_limap],
        "limap": [read_limap, read_scan],
        "truth": [read_truth, read_limap],
        "spectrum": [lambda p: normalize(read_spectrum(p))],
        "scenario": [load_scenario],
        "xradia": [read_xrm],
    }


def _check(readers, path):
    for read in readers:
        try:
            read(path)
        except XtwinInputError:
            pass


KINDS = ["scan", "limap", "truth", "spectrum", "scenario", "xradia"]
FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(frac=st.floats(0.0, 1.0))
def test_truncated_files_give_only_our_error(originals, tmp_path, kind, frac):
    if kind not in originals:
        pytest.skip("shared Xradia frame not present")
    raw = originals[kind].read_bytes()
    p = tmp_path / f"trunc{originals[kind].suffix}"
    p.write_bytes(raw[: int(frac * len(raw))])
    _check(_readers()[kind], p)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_mutated_files_give_only_our_error(originals, tmp_path, kind, data):
    if kind not in originals:
        pytest.skip("shared Xradia frame not present")
    raw = bytearray(originals[kind].read_bytes())
    n = data.draw(st.integers(1, 24))
    for _ in range(n):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    p = tmp_path / f"mut{originals[kind].suffix}"
    p.write_bytes(bytes(raw))
    _check(_readers()[kind], p)


@FUZZ
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from([".h5", ".csv", ".toml", ".xrm"]))
def test_random_bytes_give_only_our_error(tmp_path, blob, suffix):
    p = tmp_path / f"random{suffix}"
    p.write_bytes(blob)
    for readers in _readers().values():
        _check(readers, p)
