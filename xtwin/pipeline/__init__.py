"""The shared pipeline: scan -> normalize -> register -> reconstruct -> retrieve -> Li map.

It streams. The scan is read in blocks of detector rows straight from its file(s)
(:class:`xtwin.io.source.ScanSource`); each block is normalized, registered, reconstructed and
solved, and written before the next is read, so memory stays bounded (:mod:`xtwin.memory`
chooses the block from ``RunOptions.memory_limit_bytes`` and refuses, up front, a run that
cannot fit). The same map comes out, bit for bit, whatever the block size, the threads, or
whether the blocks ran on a dask cluster.

The Li-map file is built in ``OUT.h5.partial``: run the same command again after an
interruption, even a SIGKILL, and it resumes where it stopped; the partial file becomes
``OUT.h5`` only when complete.

The steps, one module each (``docs/architecture.md`` draws them): options
(:mod:`~xtwin.pipeline.options`), references (``_references``), reading (``_read``), the
estimators (``_estimate``), the block plan (``_plan``), one block (``_block``), sinks
(``_sinks``), execution (``_execute``), provenance (``_provenance``), series (``_series``).
The pipeline never imports the twin (:mod:`xtwin.forward`).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xtwin.pipeline.events import Event, OnEvent, Planned, RowsDone, TimePoint, ignore
from xtwin.pipeline.options import ProcessOptions, RunOptions

if TYPE_CHECKING:
    from xtwin.pipeline._process import partial_path, process_file, process_scan, resume_key
    from xtwin.pipeline._series import check_series, process_series, series_outputs
    from xtwin.recon.volume import field_of_view_disc

#: Loaded when first used, so that importing the options (the command line's ``--help``)
#: does not load h5py, SciPy and the stages: 0.06 s instead of 0.2 s for ``xtwin --help``.
_LAZY = {
    "partial_path": "xtwin.pipeline._process",
    "process_file": "xtwin.pipeline._process",
    "process_scan": "xtwin.pipeline._process",
    "resume_key": "xtwin.pipeline._process",
    "check_series": "xtwin.pipeline._series",
    "process_series": "xtwin.pipeline._series",
    "series_outputs": "xtwin.pipeline._series",
    "field_of_view_disc": "xtwin.recon.volume",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'xtwin.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Event",
    "Planned",
    "ProcessOptions",
    "RowsDone",
    "RunOptions",
    "TimePoint",
    "check_series",
    "field_of_view_disc",
    "partial_path",
    "process",
    "process_file",
    "process_scan",
    "process_series",
    "resume_key",
    "series_outputs",
]

PathLike = str | os.PathLike


def process(
    scans: list[PathLike],
    lithiated: PathLike | None,
    delithiated: PathLike | None,
    out: PathLike,
    *,
    options: ProcessOptions | None = None,
    run: RunOptions | None = None,
    force: bool = False,
    on_event: OnEvent = ignore,
) -> list[Path]:
    """Process one acquisition (one file, or one file per energy) into ``out`` (an existing
    ``out`` only with ``force``), or an operando series (several files with several energies
    each) into ``OUT_t000.h5``, ...

    Returns
    -------
    list of pathlib.Path
        The Li map(s) written, in time order.
    """
    from xtwin.io.source import series_order
    from xtwin.pipeline._process import process_file
    from xtwin.pipeline._series import process_series

    if series_order(list(scans)) is not None:
        return process_series(
            list(scans),
            lithiated,
            delithiated,
            out,
            options=options,
            run=run,
            force=force,
            on_event=on_event,
        )
    from xtwin._files import check_can_write

    check_can_write(out, force=force)
    return [
        process_file(
            list(scans), lithiated, delithiated, out, options=options, run=run, on_event=on_event
        )
    ]
