"""The memory limit holds in a fresh process: the smallest limit the plan accepts (the one it
names when it refuses a smaller one) is not exceeded by the whole command, planning included.
The scan is ``benchmarks/bigscan.py``'s (written without xtwin), on which the run-out's quick
look is not conclusive and projection matching runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB on Linux")

BIGSCAN = Path(__file__).resolve().parents[1] / "benchmarks" / "bigscan.py"


#: Runs its arguments as the only child of a fresh process and prints that child's peak.
_PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(r.returncode)"
)


def _process(d: Path, out: Path, limit: str) -> tuple[subprocess.CompletedProcess, int]:
    """``xtwin process`` of the scan in ``d`` under ``limit``, and its peak resident bytes."""
    cmd = [sys.executable, "-m", "xtwin.cli", "process", str(d / "scan.h5")]
    cmd += ["--lithiated", str(d / "reference_lithiated.csv")]
    cmd += ["--delithiated", str(d / "reference_delithiated.csv")]
    cmd += ["-o", str(out), "--memory-limit", limit]
    r = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True)
    return r, int(r.stdout.split()[-1])


def test_the_smallest_accepted_limit_is_kept(tmp_path):
    from xtwin.io.limap import read_limap

    d = tmp_path / "scan"
    args = [sys.executable, str(BIGSCAN), "--cols", "256", "--rows", "48", "--angles", "181"]
    subprocess.run([*args, str(d)], check=True, capture_output=True)
    low, _ = _process(d, tmp_path / "low.h5", "64MB")
    assert low.returncode == 2, low.stderr
    need = float(re.search(r"needs about ([0-9.]+) GiB", low.stderr).group(1))
    limit_gib = need + 0.01
    ok, peak = _process(d, tmp_path / "ok.h5", f"{limit_gib:.2f}GiB")
    assert ok.returncode == 0, ok.stderr
    assert 100 << 20 < peak <= limit_gib * 2**30, (peak / 2**30, limit_gib)
    record = read_limap(tmp_path / "ok.h5").provenance["projection_alignment"]
    assert "projection matching" in record["method"]  # the planning's largest estimator ran
