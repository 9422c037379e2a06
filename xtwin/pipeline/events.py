"""What the pipeline tells its caller while it runs: typed events, one callback.

A command-line progress bar, a notebook widget or a log are adapters of these
(``on_event=...`` in :func:`xtwin.pipeline.process_file` and friends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Planned:
    """The plan is made; the blocks are about to run.

    Attributes
    ----------
    center_offset_px : float
        Rotation axis minus detector centre (px).
    center_found : bool
        Found from the data (False: given, or no tomography).
    rows_per_block, n_rows : int
        Block size and rows to process.
    resumed_rows : int
        Rows taken from an interrupted run's partial file.
    predicted_peak_bytes : int
        The memory model's peak.
    notices : tuple of str
        What the planning found or refused that a user should read (the energy offset
        fitted, a magnification estimate refused, calibration nodes pooled).
    tomography : bool
        Several angles (False: 2D images, no rotation axis).
    """

    center_offset_px: float
    center_found: bool
    rows_per_block: int
    n_rows: int
    resumed_rows: int
    predicted_peak_bytes: int
    notices: tuple[str, ...] = ()
    tomography: bool = True


@dataclass(frozen=True)
class RowsDone:
    """``n`` more detector rows are finished (written)."""

    n: int


@dataclass(frozen=True)
class TimePoint:
    """An operando series' time point ``index`` of ``count`` starts (``kept`` None) or is
    done (``kept``: an existing Li map was kept)."""

    index: int
    count: int
    scan: Path
    limap: Path
    kept: bool | None = None


Event = Planned | RowsDone | TimePoint
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default listener: nothing."""
