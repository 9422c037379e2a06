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


#: The pipeline package's modules in the order the data pass through them: a module may
#: import only those before it (the records first, the public calls last).
PIPELINE_LAYERS = (
    "xtwin.pipeline.options",
    "xtwin.pipeline.events",
    "xtwin.pipeline._references",
    "xtwin.pipeline._context",
    "xtwin.pipeline._read",
    "xtwin.pipeline._estimate",
    "xtwin.pipeline._plan",
    "xtwin.pipeline._block",
    "xtwin.pipeline._sinks",
    "xtwin.pipeline._execute",
    "xtwin.pipeline._provenance",
    "xtwin.pipeline._process",
    "xtwin.pipeline._series",
    "xtwin.pipeline",
)


def _layer(module: str) -> int | None:
    """The layer of the longest name in PIPELINE_LAYERS that ``module`` is or lies in."""
    found = [
        (len(name), i)
        for i, name in enumerate(PIPELINE_LAYERS)
        if module == name or module.startswith(name + ".")
    ]
    return max(found)[1] if found else None


def _layer_violations(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    bad = []
    for m, targets in g.items():
        lm = _layer(m)
        for t in targets:
            lt = _layer(t)
            if lm is not None and lt is not None and lt > lm:
                bad.append((m, t))
    return bad


def test_pipeline_layers_point_one_way():
    mods = {_layer(m) for m in _modules() if m.startswith("xtwin.pipeline")}
    assert None not in mods, "a pipeline module without a layer: add it to PIPELINE_LAYERS"
    assert not _layer_violations(_graph())


def test_layer_check_can_fail():
    assert _layer_violations({"xtwin.pipeline._read": {"xtwin.pipeline._plan"}})


def _private_imports() -> list[tuple[str, str]]:
    """(importer, name) where a module imports a private name or module of another package
    (``xtwin.io._h5`` from ``xtwin.analysis``, ``_warp`` from ``xtwin.prep.register``)."""
    out = []
    mods = _modules()
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("xtwin."):
                continue
            names = [node.module + "." + a.name for a in node.names]
            for full in names:
                parts = full.split(".")
                for i, part in enumerate(parts[1:], start=1):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])
                        if owner not in packages:  # a module's private name: its package's
                            owner = owner.rsplit(".", 1)[0]
                        if owner != "xtwin" and not (pkg + ".").startswith(owner + "."):
                            out.append((m, full))
                        break
    return out


def test_no_private_name_imported_across_packages():
    assert not _private_imports()


def test_pipeline_functions_and_modules_stay_small():
    """The issue's bar for the pipeline and the CLI: functions of at most 60 lines, modules of
    at most 400."""
    long = []
    for m, path in _modules().items():
        if not m.startswith(("xtwin.pipeline", "xtwin.cli")):
            continue
        tree = ast.parse(path.read_text())
        n_lines = len(path.read_text().splitlines())
        if n_lines > 400:
            long.append((m, n_lines))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append((f"{m}.{node.name}", length))
    assert not long, long
