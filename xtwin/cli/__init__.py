"""The ``xtwin`` command line: the click group and exit codes (``_app``), and one module per
family of commands (the twin, processing, files, results, planning, benchmarks)."""

from xtwin.cli import bench, files, planning, process, results, twin
from xtwin.cli._app import cli, main

__all__ = ["bench", "cli", "files", "main", "planning", "process", "results", "twin"]
