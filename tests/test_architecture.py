"""The house rules, enforced: no import cycles (lazy imports included), the pipeline never
imports the twin or validate, and importing the pipeline loads no heavy dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "xtwin"
PIPELINE = (
    "xtwin.io",
    "xtwin.prep",
    "xtwin.recon",
    "xtwin.retrieve",
    "xtwin.analysis",
    "xtwin.pipeline",
)
FORBIDDEN_FOR_PIPELINE = ("xtwin.forward", "xtwin.validate")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """xtwin modules imported anywhere in the file (top level or inside functions)."""
    name = _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if is_pkg else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rsplit(".", 1)[0]
                base = f"{pkg}.{base}" if base else pkg
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
            ]
        for t in targets:
            while t and t not in mods:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t.startswith("xtwin") and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    # a package's __init__ re-exporting its own modules is not an edge back from them
    g = {m: _imports(p, mods) for m, p in mods.items()}
    for m in g:
        g[m] = {t for t in g[m] if not (m.startswith(t + ".") and t != "xtwin")}
        g[m].discard("xtwin")  # the top-level package only holds the version and errors
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m) :] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_detector_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})


def test_pipeline_never_imports_the_twin_or_validate():
    bad = [
        (m, t)
        for m, targets in _graph().items()
        if m.startswith(PIPELINE)
        for t in targets
        if t.startswith(FORBIDDEN_FOR_PIPELINE)
    ]
    assert not bad, bad


@pytest.mark.parametrize("module", ["xtwin.pipeline", "xtwin", "xtwin.cli"])
def test_import_loads_no_heavy_dependency(module):
    code = (
        f"import sys, {module}; heavy = [m for m in ('pybamm', 'porespy', 'astra', "
        "'matplotlib', 'dask', 'finufft', 'skimage') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
