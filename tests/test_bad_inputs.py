"""A corpus of bad and awkward inputs, each with its expected outcome.

Every case runs the command line as a user would. Expected: exit 2 with a message naming the
problem (a fragment is checked), no traceback and no output file; or, where the input is
awkward but usable, exit 0 with the documented note.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from xtwin.cli import main

ENERGIES = (8320.0, 8347.0, 8400.0)
N_A, N_R, N_C = 24, 6, 24
SHARED_TXM = Path(__file__).resolve().parents[2] / "shared" / "data" / "txm" / "ssrl_6-2c_nca"


def _mu(e, w):
    """An independent NMC-like model (per pixel): background + erf edge that moves with w."""
    from scipy.special import erf

    edge = 8347.8 - 2.3 * w
    return 0.004 * (e / 8300) ** -2.7 + 0.004 * (e / 8350) ** -2.75 * 0.5 * (
        1 + erf((e - edge) / 2.0)
    )


def write_good_scan(path: Path, **edit) -> Path:
    """A small valid scan: a disc of NMC in the middle rows, Poisson counts."""
    rng = np.random.default_rng(1)
    theta = np.linspace(0, 180, N_A, endpoint=False)
    u = np.arange(N_C) - (N_C - 1) / 2
    chord = 2 * np.sqrt(np.clip(8.0**2 - u**2, 0, None))
    data = np.stack(
        [
            rng.poisson(2e4 * np.exp(-_mu(e, 0.5) * chord)[None, None, :] * np.ones((N_A, N_R, 1)))
            for e in ENERGIES
        ]
    ).astype(np.uint16)
    d = {
        "/exchange/data": data,
        "/exchange/data_white": rng.poisson(2e4, (3, 4, N_R, N_C)).astype(np.uint16),
        "/exchange/data_dark": np.zeros((2, N_R, N_C), np.uint16),
        "/exchange/theta": theta,
        "/measurement/instrument/monochromator/energy": np.array(ENERGIES),
        "/measurement/instrument/detector/pixel_size": 40.0,
    }
    units = {
        "/measurement/instrument/monochromator/energy": "eV",
        "/measurement/instrument/detector/pixel_size": "nm",
        "/exchange/theta": "degrees",
    }
    for k, v in edit.items():
        key = "/" + k.replace("__", "/")
        if v is None:
            d.pop(key, None)
        elif isinstance(v, tuple) and v[0] == "units":
            units[key] = v[1]
        else:
            d[key] = v
    with h5py.File(path, "w") as f:
        for k, v in d.items():
            f[k] = v
            if k in units:
                f[k].attrs["units"] = units[k]
    return path


def write_refs(d: Path, swap: bool = False, lo: float = 8200.0) -> list[str]:
    e = np.arange(lo, 8700.0, 1.0)
    paths = []
    for name, w in (("lith", 1.0), ("delith", 0.0)):
        p = d / f"{name}.csv"
        p.write_text("energy,mu\n" + "\n".join(f"{x},{_mu(x, w) * 100:.6f}" for x in e))
        paths.append(p)
    if swap:
        paths.reverse()
    return ["--lithiated", str(paths[0]), "--delithiated", str(paths[1])]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]  # builds the inputs, returns the CLI arguments
    rc: int
    match: str


def _process(scan_edit=None, extra=(), refs_kw=None, scan_name="scan.h5"):
    def make(d: Path) -> list[str]:
        scan = write_good_scan(d / scan_name, **(scan_edit or {}))
        return [
            "process",
            str(scan),
            *write_refs(d, **(refs_kw or {})),
            "-o",
            str(d / "out" / "li.h5"),
            *extra,
        ]

    return make


def _damaged(transform: Callable[[bytes], bytes]):
    def make(d: Path) -> list[str]:
        scan = write_good_scan(d / "good.h5")
        bad = d / "scan.h5"
        bad.write_bytes(transform(scan.read_bytes()))
        return ["process", str(bad), *write_refs(d), "-o", str(d / "out" / "li.h5")]

    return make


def _flats(value):
    return {"exchange__data_white": np.full((3, 4, N_R, N_C), value, np.int32)}


def _float_data(fill):
    a = np.full((3, N_A, N_R, N_C), 0.5, np.float32)
    a[0, 0, 0, 0] = fill
    return {"exchange__data": a, "exchange__data_white": None}


def _bad_ref(text):
    def make(d: Path) -> list[str]:
        scan = write_good_scan(d / "scan.h5")
        args = write_refs(d)
        Path(args[1]).write_text(text)
        return ["process", str(scan), *args, "-o", str(d / "out" / "li.h5")]

    return make


def _scenario(text):
    def make(d: Path) -> list[str]:
        (d / "s.toml").write_text(text)
        return ["simulate", str(d / "s.toml"), "-o", str(d / "out")]

    return make


def _xrm(transform):
    def make(d: Path) -> list[str]:
        src = SHARED_TXM / "rep01_20161456_ssrl-test-data_08324.0_eV_001of003.xrm"
        if not src.is_file():
            pytest.skip("shared TXM frames not present")
        p = d / src.name
        p.write_bytes(transform(src.read_bytes()))
        ref = SHARED_TXM / "rep01_000051_ref_20161456_ssrl-test-data_08324.0_eV_001of010.xrm"
        shutil.copy(ref, d / ref.name)
        return ["convert", str(p), str(d / ref.name), "-o", str(d / "out" / "scan.h5")]

    return make


def _exists(d: Path) -> list[str]:
    args = _process()(d)
    (d / "out").mkdir(exist_ok=True)
    (d / "out" / "li.h5").write_text("precious")
    return args


CASES = [
    # damaged and foreign files
    Case("truncated scan", _damaged(lambda b: b[: len(b) // 2]), 2, "scan.h5"),
    Case("empty file", _damaged(lambda b: b""), 2, "not an HDF5 file"),
    Case("text file named .h5", _damaged(lambda b: b"time,value\n1,2\n"), 2, "not an HDF5"),
    Case("scan header zeroed", _damaged(lambda b: b[:512] + bytes(2048) + b[2560:]), 2, "scan.h5"),
    Case(
        "missing file",
        lambda d: ["process", str(d / "nope.h5"), *write_refs(d), "-o", str(d / "out" / "li.h5")],
        2,
        "does not exist",
    ),
    # missing datasets, wrong shapes and dtypes
    Case("no projections", _process({"exchange__data": None}), 2, "/exchange/data"),
    Case(
        "2-D projections",
        _process({"exchange__data": np.ones((N_R, N_C), np.uint16)}),
        2,
        "dimensions",
    ),
    Case(
        "complex projections",
        _process({"exchange__data": np.ones((3, N_A, N_R, N_C), np.complex64)}),
        2,
        "dtype",
    ),
    Case(
        "flats of the wrong shape",
        _process({"exchange__data_white": np.ones((3, 4, N_R, N_C + 1), np.uint16)}),
        2,
        "flats",
    ),
    Case(
        "darks of the wrong shape",
        _process({"exchange__data_dark": np.ones((2, N_R + 1, N_C), np.uint16)}),
        2,
        "darks",
    ),
    Case(
        "no energies",
        _process({"measurement__instrument__monochromator__energy": None}),
        2,
        "monochromator",
    ),
    Case(
        "one energy per stack missing",
        _process({"measurement__instrument__monochromator__energy": np.array([8320.0, 8347.0])}),
        2,
        "energies",
    ),
    Case("theta missing", _process({"exchange__theta": None}), 2, "theta"),
    Case("theta of the wrong length", _process({"exchange__theta": np.arange(5.0)}), 2, "theta"),
    # values
    Case("NaN in float projections", _process(_float_data(np.nan)), 2, "NaN"),
    Case("Inf in float projections", _process(_float_data(np.inf)), 2, "NaN or infinite"),
    Case("negative float projections", _process(_float_data(-1.0)), 2, "negative"),
    Case("zero flats", _process(_flats(0)), 2, "flat fields are not above the dark"),
    Case("negative flats", _process(_flats(-5)), 2, "not above the dark"),
    Case(
        "flats and darks swapped",
        _process(
            {
                "exchange__data_white": np.zeros((3, 4, N_R, N_C), np.uint16),
                "exchange__data_dark": np.full((2, N_R, N_C), 20000, np.uint16),
            }
        ),
        2,
        "swapped",
    ),
    Case("counts without flats", _process({"exchange__data_white": None}), 2, "no flat fields"),
    # energies
    Case(
        "duplicated energies",
        _process(
            {"measurement__instrument__monochromator__energy": np.array([8320.0, 8320.0, 8400.0])}
        ),
        2,
        "repeat",
    ),
    Case(
        "energies below the edge",
        _process(
            {"measurement__instrument__monochromator__energy": np.array([8300.0, 8310.0, 8320.0])}
        ),
        2,
        "bracket",
    ),
    Case(
        "keV written where eV is declared",
        _process({"measurement__instrument__monochromator__energy": np.array([8.32, 8.347, 8.4])}),
        2,
        "outside",
    ),
    Case(
        "unknown energy unit",
        _process({"measurement__instrument__monochromator__energy": ("units", "eV/s")}),
        2,
        "unknown energy unit",
    ),
    Case(  # one energy is a single-energy scan (attenuation only): no energy scale to fit
        "one energy only, energy calibration asked",
        _process(
            {
                "exchange__data": np.ones((1, N_A, N_R, N_C), np.uint16),
                "exchange__data_white": np.full((1, 4, N_R, N_C), 10, np.uint16),
                "measurement__instrument__monochromator__energy": np.array([8400.0]),
            },
            extra=("--energy-calibration", "scan"),
        ),
        2,
        "single-energy scan has no energy scale",
    ),
    Case(
        "two energies both above the edge",
        _process(
            {
                "exchange__data": np.ones((2, N_A, N_R, N_C), np.uint16),
                "exchange__data_white": np.full((2, 4, N_R, N_C), 10, np.uint16),
                "measurement__instrument__monochromator__energy": np.array([8380.0, 8400.0]),
            }
        ),
        2,
        "do not bracket",
    ),
    # angles
    Case(
        "angles in radians without units",
        _process({"exchange__theta": np.linspace(0, np.pi, N_A, endpoint=False)}),
        2,
        "not a tomogram",
    ),
    Case(
        "repeated angles",
        _process({"exchange__theta": np.repeat(np.linspace(0, 180, N_A // 2, endpoint=False), 2)}),
        2,
        "repeat",
    ),
    Case("limited angle", _process({"exchange__theta": np.linspace(0, 90, N_A)}), 2, "180"),
    Case(
        "360-degree scan",
        _process({"exchange__theta": np.linspace(0, 360, N_A, endpoint=False)}),
        2,
        "360",
    ),
    Case(
        "empty stack (no angles)",
        _process(
            {"exchange__data": np.ones((3, 0, N_R, N_C), np.uint16), "exchange__theta": np.zeros(0)}
        ),
        2,
        "empty",
    ),
    # pixel size
    Case(
        "unknown length unit",
        _process({"measurement__instrument__detector__pixel_size": ("units", "furlong")}),
        2,
        "unknown length unit",
    ),
    Case(
        "implausible pixel size",
        _process({"measurement__instrument__detector__pixel_size": ("units", "m")}),
        2,
        "not plausible",
    ),
    # options
    Case(
        "memory limit too small",
        _process(extra=["--memory-limit", "20MB"]),
        2,
        "cannot be processed within",
    ),
    Case("memory limit not a size", _process(extra=["--memory-limit", "lots"]), 2, "not a size"),
    Case("rows beyond the detector", _process(extra=["--rows", "0:99"]), 2, "beyond"),
    Case("rows malformed", _process(extra=["--rows", "5"]), 2, "START:STOP"),
    Case(
        "centre offset garbage", _process(extra=["--center-offset", "left"]), 2, "neither a number"
    ),
    Case("unknown reconstruction", _process(extra=["--recon", "magic"]), 2, "magic"),
    Case("gridrec without tomopy", _process(extra=["--recon", "gridrec"]), 2, "tomopy"),
    # reference spectra
    Case("references swapped", _process(refs_kw={"swap": True}), 2, "swapped"),
    Case("references too narrow", _process(refs_kw={"lo": 8330.0}), 2, "outside"),
    Case("empty reference", _bad_ref(""), 2, "lith.csv"),
    Case("reference of words", _bad_ref("energy,mu\nlow,high\nmore,words\n"), 2, "lith.csv"),
    # outputs
    Case("output exists", _exists, 2, "already exists"),
    Case(
        "output under a file",
        lambda d: (d.joinpath("f").write_text("x"), _process()(d)[:-1] + [str(d / "f" / "li.h5")])[
            1
        ],
        2,
        "cannot write",
    ),
    # scenarios
    Case("malformed scenario", _scenario("seed = [1,\n"), 2, "s.toml"),
    Case(
        "unknown scenario key",
        _scenario("seed = 1\n[grid]\nwidth_furlongs = 3\n"),
        2,
        "width_furlongs",
    ),
    Case("scenario value out of range", _scenario("[grid]\nn_rows = -3\n"), 2, "n_rows"),
    # Xradia
    Case("truncated Xradia frame", _xrm(lambda b: b[: len(b) // 3]), 2, ".xrm"),
    Case("Xradia frame of zeros", _xrm(lambda b: bytes(len(b))), 2, ".xrm"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    args = case.make(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == case.rc, err
    assert "Traceback" not in err
    assert case.match.lower() in err.lower(), err
    out = tmp_path / "out"
    if case.rc == 2 and out.exists():
        left = [p for p in out.rglob("*") if p.is_file() and p.read_bytes() != b"precious"]
        assert not left, left


def test_corpus_size():
    assert len(CASES) >= 40


def test_a_disk_too_small_for_the_li_map_is_refused_up_front(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    args = _process()(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "GB free" in err and "Traceback" not in err, err
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("call", ["fdatasync", "pwrite"])
def test_a_disk_that_fills_during_the_run_stops_it_resumably(tmp_path, capsys, monkeypatch, call):
    import errno
    import os

    args = _process()(tmp_path)

    def full(*args):  # a full disk reports itself when the data are written or synced
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, call, full)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "full" in err and "resumes" in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "li.h5").exists()  # only the resumable partial file


def test_sigint_inside_a_weakref_callback_is_kept_not_printed():
    """Python prints and drops an exception raised in a weakref callback ("Exception
    ignored"): the handler then only records the interrupt, and the next safe point raises
    it."""
    import types

    from xtwin import _signals

    def frame(filename: str, name: str = "remove"):
        return types.SimpleNamespace(
            f_code=types.SimpleNamespace(co_filename=filename, co_name=name)
        )

    try:
        _signals.on_sigint(2, frame("/usr/lib/python3.11/weakref.py"))  # no raise
        with pytest.raises(KeyboardInterrupt):
            _signals.check_interrupted()
        _signals._INTERRUPTED.clear()
        with pytest.raises(KeyboardInterrupt):  # anywhere else it raises at once
            _signals.on_sigint(2, frame("/work/xtwin/pipeline/_execute.py", "run_blocks"))
    finally:
        _signals._INTERRUPTED.clear()
    _signals.check_interrupted()  # cleared: nothing pending
