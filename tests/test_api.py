"""Every CLI command has its public, documented library function (docs/api.md)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
CALLS = sorted(set(re.findall(r"`(xtwin(?:\.\w+)+)\(", DOC.read_text())))


def test_every_command_is_listed():
    from xtwin.cli import cli

    commands = set(cli.commands)
    text = DOC.read_text()
    missing = [c for c in commands if f"`xtwin {c}" not in text]
    assert not missing, missing


@pytest.mark.parametrize("dotted", CALLS)
def test_listed_function_exists_and_is_documented(dotted):
    module, name = dotted.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    assert callable(fn)
    assert fn.__doc__ and len(fn.__doc__.strip()) > 20, f"{dotted} has no docstring"
