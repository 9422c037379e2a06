"""The processing-only install: convert, info, process, analyze, report and export run with
the twin's packages (pybamm, porespy, openpnm, pyamg, edt, astra) absent, and a twin command
names the extra to install. Absence is simulated in a subprocess by an import hook that
refuses those modules; CI also installs the package without the extra (``.ci/run``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
TWIN_MODULES = ("pybamm", "porespy", "openpnm", "pyamg", "edt", "astra", "napari")

_BLOCK = f"""
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TWIN_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Absent())
from xtwin.cli import main
"""


def _run(code: str, tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK + textwrap.dedent(code)],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_processing_commands_without_the_twin(tmp_path):
    scan = DATA / "small_scan.h5"
    refs = [
        "--lithiated",
        str(DATA / "reference_lithiated.csv"),
        "--delithiated",
        str(DATA / "reference_delithiated.csv"),
    ]
    code = f"""
    import sys
    def ok(args):
        rc = main(args)
        assert rc == 0, (args, rc)
    ok(["info", {str(scan)!r}])
    ok(["process", {str(scan)!r}, *{refs!r}, "-o", "li.h5"])
    ok(["info", "li.h5"])
    ok(["analyze", "li.h5", "-o", "an"])
    ok(["report", "li.h5", "-o", "rep"])
    ok(["export", "li.h5", "--tiff", "tif"])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {TWIN_MODULES!r})
    assert not heavy, heavy
    print("PROCESSING-ONLY OK")
    """
    res = _run(code, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "PROCESSING-ONLY OK" in res.stdout
    assert (tmp_path / "rep" / "report.html").is_file()
    assert (tmp_path / "an" / "particles.csv").is_file()


@pytest.mark.parametrize(
    "args, extra",
    [
        (["simulate", "SCENARIO", "-o", "twin"], "twin"),
        (["process", "SCAN", "REFS", "-o", "a.h5", "--recon", "astra"], "astra"),
        (["view", "SMALL"], "viewer"),
    ],
)
def test_twin_commands_name_the_extra(tmp_path, args, extra):
    root = Path(__file__).resolve().parents[1]
    args = [str(root / "synthetic" / "default.toml") if a == "SCENARIO" else a for a in args]
    args = [str(DATA / "small_scan.h5") if a == "SMALL" else a for a in args]
    if "SCAN" in args:
        i = args.index("SCAN")
        args[i : i + 2] = [
            str(DATA / "small_scan.h5"),
            "--lithiated",
            str(DATA / "reference_lithiated.csv"),
            "--delithiated",
            str(DATA / "reference_delithiated.csv"),
        ]
    res = _run(f"raise SystemExit(main({args!r}))", tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"xtwin[{extra}]" in res.stderr and "Traceback" not in res.stderr
