"""Operando series: one multi-energy scan file per time point, one Li map each, in time
order; finished time points are kept on a rerun, the unfinished one resumed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from xtwin._files import sha256_of
from xtwin.errors import XtwinInputError
from xtwin.pipeline._process import process_file
from xtwin.pipeline.events import OnEvent, TimePoint, ignore
from xtwin.pipeline.options import ProcessOptions, RunOptions

PathLike = str | os.PathLike


def series_outputs(out: PathLike, n: int) -> list[Path]:
    """Names of the Li maps of an operando series: ``OUT_t000.h5``, ``OUT_t001.h5``, ..."""
    out = Path(out)
    return [out.with_name(f"{out.stem}_t{k:03d}{out.suffix or '.h5'}") for k in range(n)]


def check_series(paths: list[PathLike]) -> None:
    """Refuse an "operando series" whose files do not share sample, energies, pixel size and
    detector shape.

    Raises
    ------
    XtwinInputError
        Naming the file and what differs.
    """
    from xtwin.io.scan import read_header

    heads = [read_header(p)[0] for p in paths]
    ref = heads[0]
    for p, h in zip(paths, heads):
        problems = []
        if h.shape[0] != ref.shape[0] or not np.allclose(
            h.energy_eV, ref.energy_eV, atol=0.5, equal_nan=True
        ):
            problems.append(f"energies {h.energy_eV.tolist()} vs {ref.energy_eV.tolist()} eV")
        if h.shape[2:] != ref.shape[2:]:
            problems.append(f"detector {h.shape[2:]} vs {ref.shape[2:]}")
        if not np.isclose(h.pixel_size_m, ref.pixel_size_m, rtol=1e-3):
            problems.append(f"pixel size {h.pixel_size_m:g} vs {ref.pixel_size_m:g} m")
        s, s0 = h.metadata.get("sample"), ref.metadata.get("sample")
        if s is not None and s0 is not None and s != s0:
            problems.append(f"sample {s!r} vs {s0!r}")
        if problems:
            raise XtwinInputError(
                f"{p} does not belong to the same operando series as "
                f"{paths[0]}: {'; '.join(problems)}; process them separately"
            )


def _made_from(limap_path: Path, scan: PathLike) -> bool:
    """Whether a finished Li-map file was made from ``scan`` (same SHA-256 in provenance)."""
    import h5py

    try:
        with h5py.File(limap_path, "r") as f:
            inputs = json.loads(f["/provenance"].attrs.get("inputs", "{}"))
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return sha256_of(scan) in set(inputs.values())


def _refuse_foreign_maps(scans: list[PathLike], outs: list[Path]) -> None:
    """Refuse to replace a Li map that was made from another scan."""
    for scan, limap in zip(scans, outs):
        if limap.exists() and not _made_from(limap, scan):
            raise XtwinInputError(
                f"{limap} exists and was not made from {scan}; choose another output "
                "name or pass --force to replace it"
            )


def process_series(
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
    """Process an operando series (one multi-energy scan file per time point) in time order.

    A rerun keeps the time points finished from the same scan files and resumes the
    unfinished one; a Li map made from another scan is refused unless ``force``.

    Parameters
    ----------
    scans : list of path-like
        One multi-energy scan file per time point, in any order (sorted by ``time_s``).
    lithiated, delithiated, options, run
        As for :func:`xtwin.pipeline.process_file`.
    out : path-like
        Base name: the maps are ``OUT_t000.h5``, ``OUT_t001.h5``, ...
    force : bool
        Reprocess and replace existing maps.
    on_event : callable, optional
        Called with a :class:`~xtwin.pipeline.events.TimePoint` before and after each time
        point, and with each time point's own events.

    Returns
    -------
    list of pathlib.Path
        ``OUT_t000.h5``, ``OUT_t001.h5``, ... in time order.
    """
    from xtwin.io.source import series_order

    order = series_order(list(scans))
    if order is None:
        raise XtwinInputError(
            "these files are not an operando series (several files with several energies each)"
        )
    from xtwin._files import ensure_writable_dir

    check_series([scans[i] for i in order])
    outs = series_outputs(out, len(order))
    ensure_writable_dir(outs[0].parent)
    if not force:
        _refuse_foreign_maps([scans[i] for i in order], outs)
    refs = (lithiated, delithiated)
    for k, i in enumerate(order):
        kept = outs[k].exists() and not force
        if not kept:
            on_event(TimePoint(k, len(order), Path(scans[i]), outs[k]))
            process_file([scans[i]], *refs, outs[k], options=options, run=run, on_event=on_event)
        on_event(TimePoint(k, len(order), Path(scans[i]), outs[k], kept))
    return outs
