"""Shared fixtures: one simulated default scenario per session (about 10 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        msg = f"shared reference data not found at {SHARED_DATA}"
        if os.environ.get("XTWIN_REQUIRE_SHARED_DATA"):
            pytest.fail(msg + " (CI requires it: XTWIN_REQUIRE_SHARED_DATA is set)")
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """Simulate the default scenario with the CLI and process it; return the directory."""
    from xtwin.cli import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(out)]) == 0
    return out
