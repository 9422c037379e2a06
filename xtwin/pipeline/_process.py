"""One acquisition through the pipeline: into arrays (:func:`process_scan`) or into a
resumable Li-map file (:func:`process_file`), by the same sequence of steps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from xtwin import __version__
from xtwin._files import sha256_of
from xtwin.io.limap import LiMap
from xtwin.io.source import ScanSource, open_scan, source_from_scan
from xtwin.pipeline._execute import run_blocks
from xtwin.pipeline._plan import plan_processing
from xtwin.pipeline._provenance import Outcome, Prepared, provenance
from xtwin.pipeline._references import References, read_references
from xtwin.pipeline._sinks import ArraySink, H5Sink, map_shapes
from xtwin.pipeline.events import OnEvent, Planned, ignore
from xtwin.pipeline.options import ProcessOptions, RunOptions, split_options

PathLike = str | os.PathLike


def _prepare(
    source: ScanSource, refs: References, options: ProcessOptions, run: RunOptions
) -> Prepared:
    """Calibrate (with the energy offset, given or fitted), then plan (estimates and
    memory) before any block runs."""
    from xtwin.pipeline._estimate.energy import energy_offset

    allow = options.allow_swapped_references
    e = source.header.energy_eV
    if e.size == 1:
        return _prepare_attenuation(source, refs, options, run)
    cal = refs.calibrate(e, allow)  # refuses references that cannot serve, before any fit
    offset = energy_offset(options, source, refs, cal.edge_eV)
    delta = offset.value_eV if offset is not None else 0.0
    wide = offset.broadening_eV if offset is not None else 0.0
    if delta or wide:
        cal = refs.calibrate(e, allow, delta, wide)
    alts, conventions = refs.alternatives(cal.energy_eV, allow, delta, wide)
    if offset is not None and offset.sigma_eV > 0 and cal.mode != "edge-jump":
        sigma = offset.sigma_eV
        alts += tuple(
            (
                f"energy offset {sign * sigma:+.3f} eV",
                refs.calibrate(e, allow, delta + sign * sigma, wide),
            )
            for sign in (-1, 1)
        )
        conventions = {
            **conventions,
            "used": conventions.get("used", [options.reference_convention])
            + [f"energy offset {delta:+.3f} -+ {sigma:.3f} eV"],
            "rule": "/li/systematic = half the range of w over the conventions used and the "
            "energy offset +- its standard uncertainty",
        }
    plan = plan_processing(source, cal, options, run, tuple(c for _, c in alts))
    return Prepared(refs, cal, conventions, plan, offset)


def _prepare_attenuation(
    source: ScanSource, refs: References, options: ProcessOptions, run: RunOptions
) -> Prepared:
    """One energy: the attenuation only (no lithiation, nothing that needs energies).

    Raises
    ------
    XtwinInputError
        An energy calibration was asked for: it needs several energies.
    """
    import dataclasses

    from xtwin.errors import XtwinInputError
    from xtwin.retrieve.three_energy import attenuation_calibration

    if options.energy_offset_eV is not None or options.energy_calibration is not None:
        raise XtwinInputError(
            "a single-energy scan has no energy scale to calibrate; drop --energy-offset / "
            "--energy-calibration, or give a scan with three or more energies"
        )
    cal = attenuation_calibration(source.header.energy_eV)
    notes = ["single-energy scan: the attenuation mu is reconstructed, no lithiation"]
    if refs.standards:
        notes.append("the reference spectra are not used (one energy retrieves no lithiation)")
    refs = dataclasses.replace(refs, extra_notes=refs.extra_notes + tuple(notes))
    plan = plan_processing(source, cal, options, run, ())
    return Prepared(refs, cal, {}, plan, None)


def _references(
    lithiated: PathLike | None, delithiated: PathLike | None, options: ProcessOptions
) -> References:
    return read_references(
        lithiated, delithiated, options.reference_convention, options.calibration_series
    )


def _planned(prep: Prepared, resumed: int) -> Planned:
    plan = prep.plan
    return Planned(
        plan.ctx.center_offset_px,
        plan.center.found,
        plan.memory.rows_per_block,
        plan.n_rows,
        resumed,
        plan.memory.peak,
        _notices(prep),
        plan.ctx.source.header.is_tomography,
    )


def _notices(prep: Prepared) -> tuple[str, ...]:
    """The planning's findings a user should read on the terminal."""
    out = list(prep.refs.extra_notes)
    if prep.energy_offset is not None:
        out.append(prep.energy_offset.line())
    path = prep.calibration.path
    if path is not None:
        out.append(
            f"lithiation on the measured chemistry path through {path.lithiation.size} spectra "
            f"(w {path.lithiation[0]:g} to {path.lithiation[-1]:g})"
        )
        out += [
            f"calibration spectra at {p} cannot be told apart at these energies: pooled"
            for p in path.pooled
        ]
    out += prep.plan.registration.notices()
    return tuple(out)


def process_scan(
    scan,
    lithiated: PathLike | None,
    delithiated: PathLike | None,
    *,
    options: ProcessOptions | None = None,
    run: RunOptions | None = None,
    on_event: OnEvent = ignore,
    **kwargs: Any,
) -> LiMap:
    """Run the whole pipeline on an in-memory scan (or an open source) and return the Li map.

    Parameters
    ----------
    scan : ScanData or ScanSource
        The acquisition (tomography or 2D XANES).
    lithiated, delithiated : path-like or None
        Reference spectra of the two end members (two-column text); None for a two-energy
        scan (edge-jump mode).
    options : ProcessOptions, optional
        What to compute.
    run : RunOptions, optional
        How to run it (memory, workers, scheduler, block rows).
    on_event : callable, optional
        Called with each :mod:`~xtwin.pipeline.events` event.
    **kwargs
        Fields of either record (``center_offset_px=...``, ``workers=...``), overriding it.

    Returns
    -------
    LiMap
        The same values, bit for bit, as :func:`process_file` writes.
    """
    import dataclasses

    sci, how = split_options(**kwargs)
    opts = dataclasses.replace(options or ProcessOptions(), **sci)
    run = dataclasses.replace(run or RunOptions(), **how)
    source = scan if isinstance(scan, ScanSource) else source_from_scan(scan)
    prep = _prepare(source, _references(lithiated, delithiated, opts), opts, run)
    sink = ArraySink(_shapes(source, prep))
    on_event(_planned(prep, 0))
    timing: dict[str, float] = {}
    clamped = run_blocks(prep.plan, sink, run, on_event, timing)
    prov = provenance(prep, opts, run, Outcome(clamped, 0, {}, timing))
    return _limap(sink, prep, prov)


def _limap(sink: ArraySink, prep: Prepared, prov: dict[str, Any]) -> LiMap:
    a = sink.arrays
    if "lithiation" not in a:  # one energy: no lithiation (NaN, as the file has none)
        nan = np.full(a["mu"].shape[1:], np.nan, dtype=np.float32)
        a = {**a, **{k: nan for k in ("lithiation", "sigma", "edge_jump_per_m")}}
        a["edge_jump_sigma_per_m"] = nan
    return LiMap(
        lithiation=a["lithiation"],
        sigma=a["sigma"],
        mask=sink.mask,
        edge_jump_per_m=a["edge_jump_per_m"],
        mu_per_m=a["mu"],
        mu_sigma_per_m=a["mu_sigma"],
        energy_eV=prep.calibration.energy_eV,
        pixel_size_m=prep.plan.ctx.source.header.pixel_size_m,
        provenance=prov,
        edge_jump_sigma_per_m=a["edge_jump_sigma_per_m"],
        edge={k[5:]: v for k, v in a.items() if k.startswith("edge/")},
        systematic=a.get("li/systematic"),
        mode=prep.calibration.mode,
        mu_units=_mu_units(prep),
    )


def _mu_units(prep: Prepared) -> str:
    """1/m, or 1/pixel for a single-energy scan without a pixel size; the optical density
    -ln(I/I0) of a single-energy 2D image."""
    if prep.calibration.mode == "attenuation" and not prep.plan.ctx.source.header.is_tomography:
        return "optical density"
    return "1/pixel" if prep.plan.ctx.mu_per_pixel else "1/m"


def _shapes(source: ScanSource, prep: Prepared) -> dict[str, tuple[int, ...]]:
    return map_shapes(source, prep.plan.n_rows, prep.plan.ctx.extras, prep.calibration.mode)


def _hashes(paths: list[PathLike], options: ProcessOptions) -> dict[str, str]:
    """SHA-256 of the scan files and of the quick XANES (both decide the map)."""
    from xtwin.pipeline._estimate.energy import quick_paths

    what = options.energy_calibration
    quick = quick_paths(what) if what not in (None, "scan") else []
    return {str(p): sha256_of(p) for p in [*paths, *quick] if Path(p).is_file()}


def partial_path(out: PathLike) -> Path:
    """Where an unfinished Li-map file is built (and resumed from)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def resume_key(inputs: dict[str, str], refs: References, options: ProcessOptions) -> str:
    """What a partial file must have been made from to be resumed: the inputs' and the
    references' SHA-256, every result-affecting option, the version."""
    ref_prov = refs.provenance
    return json.dumps(
        {
            "inputs": inputs,
            "refs": [ref_prov[k]["sha256"] for k in sorted(ref_prov)],
            "options": options.key(),
            "version": __version__,
        },
        sort_keys=True,
    )


def process_file(
    scans: list[PathLike] | PathLike,
    lithiated: PathLike | None,
    delithiated: PathLike | None,
    out: PathLike,
    *,
    options: ProcessOptions | None = None,
    run: RunOptions | None = None,
    on_event: OnEvent = ignore,
) -> Path:
    """Process scan file(s) into a Li-map file, streaming, with bounded memory and resume.

    Parameters
    ----------
    scans : path-like or list of path-like
        One Data Exchange file, or one file per energy of one acquisition.
    lithiated, delithiated : path-like or None
        Reference spectra (None for a two-energy scan).
    out : path-like
        Li-map file to write (built in ``OUT.partial`` and renamed when complete).
    options : ProcessOptions, optional
    run : RunOptions, optional
    on_event : callable, optional
        Called with each :mod:`~xtwin.pipeline.events` event.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.perf_counter()
    opts, run, out = options or ProcessOptions(), run or RunOptions(), Path(out)
    paths = [scans] if isinstance(scans, str | os.PathLike) else list(scans)
    refs = _references(lithiated, delithiated, opts)
    with open_scan(paths) as source:
        with ThreadPoolExecutor(1) as hasher:  # hashing overlaps the planning (GIL released)
            hashing = hasher.submit(_hashes, paths, opts)
            prep = _prepare(source, refs, opts, run)
            hashes = hashing.result()
        shapes = _shapes(source, prep)
        sink = H5Sink(partial_path(out), shapes, resume_key(hashes, refs, opts))
        try:
            on_event(_planned(prep, sink.resumed))
            timing = {"plan": time.perf_counter() - t_start}
            clamped = run_blocks(prep.plan, sink, run, on_event, timing)
            timing["total"] = time.perf_counter() - t_start
            prov = provenance(prep, opts, run, Outcome(clamped, sink.resumed, hashes, timing))
            sink.finish(
                out,
                prep.calibration.energy_eV,
                source.header.pixel_size_m,
                prov,
                prep.calibration.mode,
                _mu_units(prep),
            )
        finally:
            sink.close()
    return out
