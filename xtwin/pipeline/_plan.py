"""Estimates and the memory model -> one frozen block plan, made before any block runs
(refusing up front a run that cannot fit the memory limit)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from xtwin._signals import check_interrupted
from xtwin._threads import blas_on_one_thread
from xtwin.errors import XtwinInputError
from xtwin.io.source import ScanSource
from xtwin.memory import (
    READ_THREADS,
    RUNTIME_BYTES,
    MemoryPlan,
    current_rss_bytes,
    plan_memory,
    reusable_heap,
)
from xtwin.pipeline._context import BlockContext
from xtwin.pipeline._estimate.center import CenterRecord, find_center
from xtwin.pipeline._estimate.mask import MaskReference, mask_reference
from xtwin.pipeline._estimate.registration import (
    EnergyRegistration,
    no_registration,
    register_energies,
)
from xtwin.pipeline._estimate.runout import (
    RUNOUT_MATCH_COLS,
    RUNOUT_MATCH_ROWS,
    RUNOUT_MIN_ROWS,
    RunoutEstimate,
    estimate_runout,
)
from xtwin.pipeline._read import RowReader, read_sample
from xtwin.pipeline.options import ProcessOptions, RunOptions
from xtwin.prep.normalize import NormalizationReport, exposure_ratios
from xtwin.prep.register import registration_angles, rows_not_seen_at_all_energies
from xtwin.retrieve.three_energy import Calibration
from xtwin.retrieve.voxels import VoxelRules, extra_fields
from xtwin.shifts import LANCZOS_A, shift_image_stack


@dataclass(frozen=True)
class Unseen:
    """Detector rows and columns without lithiation, and why (counts within the rows run)."""

    rows_not_registered: int = 0
    rows_off_detector: int = 0
    cols_not_registered: int = 0


@dataclass(frozen=True)
class BlockPlan:
    """Everything global, decided before the blocks run.

    Attributes
    ----------
    ctx : BlockContext
        What every block needs.
    row_range : (int, int)
        Detector rows processed.
    memory : MemoryPlan
        Block size and predicted peak.
    registration, runout, center, mask
        The estimators' records.
    sample_reports : tuple of NormalizationReport
        Each energy's normalization report of the estimators' sample (empty: none read).
    unseen : Unseen
    """

    ctx: BlockContext
    row_range: tuple[int, int]
    memory: MemoryPlan
    registration: EnergyRegistration
    runout: RunoutEstimate
    center: CenterRecord
    mask: MaskReference
    sample_reports: tuple[NormalizationReport, ...] = ()
    unseen: Unseen = Unseen()

    @property
    def n_rows(self) -> int:
        """Rows processed."""
        return self.row_range[1] - self.row_range[0]

    def notes(self) -> list[str]:
        """What the planning assumed, found and applied, as the provenance's notes."""
        h = self.ctx.source.header
        out = []
        ratio = self.ctx.exposure_ratio
        if not np.allclose(ratio, 1.0):
            out.append(f"flats scaled to the projection exposure by {np.round(ratio, 4)}")
        if h.n_dark == 0:
            out.append("no dark fields; assumed a zero dark level")
        out += [
            f"{e:.1f} eV: {r.dead_line()}"
            for e, r in zip(h.energy_eV, self.sample_reports)
            if r.dead_pixels
        ]
        out += self.runout.notes(h.energy_eV) + self.registration.notes()
        u = self.unseen
        if u.rows_not_registered:
            out.append(
                f"{u.rows_not_registered} detector rows not seen at every energy after "
                "registration: no lithiation there"
            )
        if u.rows_off_detector:
            out.append(
                f"{u.rows_off_detector} detector rows were off the detector at some angle "
                "(vertical run-out): no lithiation there"
            )
        if u.cols_not_registered:
            out.append(
                f"{u.cols_not_registered} detector columns not seen at every energy after "
                "registration: "
                + ("no lithiation there" if not h.is_tomography else "edge-padded in the sinograms")
            )
        return out


@dataclass(frozen=True)
class _Memory:
    """The memory model's inputs that the planning does not change."""

    source: ScanSource
    rows: tuple[int, int]
    workers: int
    n_sample: int
    limit: int | None
    n_extra: int
    per_angle: bool
    axis_search: bool = False
    matching: tuple[int, int] | None = None

    def plan(self, halo: int, baseline: int, resampled: bool = True) -> MemoryPlan:
        h = self.source.header
        return plan_memory(
            h.shape,
            np.dtype(h.dtype).itemsize,
            n_rows_out=self.rows[1] - self.rows[0],
            halo=halo,
            workers=self.workers,
            n_flat=h.n_flat,
            tomography=h.is_tomography,
            n_sample=self.n_sample,
            limit=self.limit,
            baseline=baseline,
            n_extra=self.n_extra,
            resampled=resampled,
            per_angle=self.per_angle,
            axis_search=self.axis_search,
            matching=self.matching,
        )


def _row_range(source: ScanSource, options: ProcessOptions) -> tuple[int, int]:
    h = source.header
    n_r = h.shape[2]
    lo, hi = options.rows or (0, n_r)
    if h.is_tomography:
        from xtwin.recon.fbp import check_tomography

        check_tomography(h.theta_deg)
    if hi > n_r:
        raise XtwinInputError(f"rows {lo}:{hi} reach beyond the detector's {n_r} rows")
    return lo, hi


@blas_on_one_thread  # the estimators run on threads of their own (its threads spun beside them)
def plan_processing(
    source: ScanSource,
    cal: Calibration,
    options: ProcessOptions,
    run: RunOptions,
    alternatives: tuple[Calibration, ...] = (),
) -> BlockPlan:
    """Decide everything global before the blocks run: registration, run-out, rotation axis,
    the Ni mask's reference and the block size (a run that cannot fit is refused first)."""
    from xtwin.memory import share_one_arena

    share_one_arena()
    h = source.header
    lo, hi = _row_range(source, options)
    idx = registration_angles(h.shape[1])
    mem = _memory_inputs(source, options, run, idx.size, (lo, hi), cal)
    import finufft  # noqa: F401  (loaded now, so the baseline counts the libraries)
    import skimage.registration  # noqa: F401

    # what the libraries and the estimators' heap keep once they have run comes on top of
    # the memory resident now, the first time in a process
    start = current_rss_bytes()
    baseline = start + (0 if _RUNTIME["warm"] else RUNTIME_BYTES)
    mem.plan(2 * LANCZOS_A, baseline)  # refuses, before any pixel is read, what cannot fit
    reader = RowReader(source, exposure_ratios(h.exposure_s, h.flat_exposure_s, h.shape[0]))
    contrast = np.abs(cal.s_lithiated - cal.s_delithiated)  # at the scan's (sorted) energies
    # the estimators' temporaries reuse each other's pages; handed back after them: the
    # blocks are sized on the memory resident then (what the planning's libraries keep, FFT
    # plans and thread arenas, is not handed back, though it is free)
    with reusable_heap():
        est = _estimate(reader, idx, options, contrast)
        check_interrupted()  # a SIGINT swallowed during the estimates stops here
        halo = _halo(est[0], est[1], h.shape[2])
        mem.plan(halo, baseline)  # refuses, before the axis search, a run that cannot fit
        ctx, unseen = _context(reader, est, cal, options, mem.workers, (lo, hi))
        attenuation = cal.mode == "attenuation"
        mask = MaskReference(0.0, []) if attenuation else mask_reference(ctx, lo, hi)
    rules = VoxelRules(
        cal,
        mask.jump_reference_per_m,
        options.min_jump_snr,
        options.min_jump_fraction,
        alternatives,
    )
    ctx = dataclasses.replace(ctx, rules=rules)
    # the blocks are sized on what the planning left resident, measured now
    memory = mem.plan(halo, max(start, current_rss_bytes()), _resampled(ctx))
    if run.block_rows is not None and run.block_rows < memory.rows_per_block:
        memory = dataclasses.replace(memory, rows_per_block=run.block_rows)
    registration, runout, center, reports = est
    _RUNTIME["warm"] = True
    return BlockPlan(ctx, (lo, hi), memory, registration, runout, center, mask, reports, unseen)


#: Whether a planning has run in this process (see :data:`xtwin.memory.RUNTIME_BYTES`).
_RUNTIME = {"warm": False}


def _memory_inputs(
    source: ScanSource,
    options: ProcessOptions,
    run: RunOptions,
    n_sample: int,
    rows: tuple[int, int],
    cal: Calibration,
) -> _Memory:
    """The memory model's inputs: the scan, the options, which estimators may run."""
    h = source.header
    return _Memory(
        source,
        rows,
        run.workers or os.cpu_count() or 1,
        n_sample,
        run.memory_limit_bytes,
        len(extra_fields(cal.mode, True)),
        not (options.ring_removal and h.is_tomography),
        axis_search=options.searches_axis(h),
        matching=(RUNOUT_MATCH_ROWS, RUNOUT_MATCH_COLS)
        if options.aligns_projections(h) and h.shape[2] >= RUNOUT_MIN_ROWS
        else None,
    )


_Estimates = tuple[
    EnergyRegistration, RunoutEstimate, CenterRecord, tuple[NormalizationReport, ...]
]


def _estimate(
    reader: RowReader, idx: np.ndarray, options: ProcessOptions, contrast: np.ndarray
) -> _Estimates:
    """Run-out, registration and rotation axis, from the estimators' sample (read once)."""
    h = reader.source.header
    n_e, n_a = h.shape[:2]
    auto_center = options.searches_axis(h)
    sample = None
    reports: tuple[NormalizationReport, ...] = ()
    if (options.register and n_e > 1) or auto_center:
        sample, rep = read_sample(reader, idx, READ_THREADS)
        reports = tuple(rep)
    runout = RunoutEstimate()
    if options.xradia_shifts == "use":
        runout = _recorded_runout(h)
    elif options.aligns_projections(h):
        recorded = h.projection_shifts_px if options.xradia_shifts == "auto" else None
        runout = estimate_runout(reader, options.align_projections, recorded)
    if runout.offsets is not None and sample is not None:  # the sample without it
        for e in range(n_e):
            for j, a in enumerate(idx):
                dz, dx = (float(v) for v in runout.offsets[e, a])
                sample[e, j] = shift_image_stack(sample[e, j], -dz, -dx)
    registration = no_registration(h.energy_eV)
    if options.register and n_e > 1 and sample is not None:
        registration = register_energies(sample, h.energy_eV, options.magnification, contrast)
    if isinstance(options.center_offset_px, str):
        center = CenterRecord(0.0)
        if auto_center and sample is not None:
            center = find_center(reader, sample, runout.offsets)
    else:
        center = CenterRecord(float(options.center_offset_px))
    return registration, runout, center, reports


def _recorded_runout(h) -> RunoutEstimate:
    """The acquisition software's shifts as the per-projection alignment (the run-out is the
    opposite of the shift that aligns a projection).

    Raises
    ------
    XtwinInputError
        The scan records no shifts.
    """
    sh = h.projection_shifts_px
    if sh is None:
        raise XtwinInputError(
            "--xradia-shifts use: the scan file records no alignment shifts (convert the "
            "Xradia files with xtwin convert to keep them); drop the option"
        )
    per = {
        f"{e:.2f}": {
            "rms_rows_px": float(np.sqrt(np.mean(sh[k, :, 0] ** 2))),
            "rms_cols_px": float(np.sqrt(np.mean(sh[k, :, 1] ** 2))),
        }
        for k, e in enumerate(h.energy_eV)
    }
    return RunoutEstimate(
        -np.asarray(sh, dtype=float),
        {
            "applied": True,
            "method": "the shifts the acquisition software recorded (--xradia-shifts use)",
            "already_applied_by_microscope": bool(h.metadata.get("xradia_shifts_applied")),
            "per_energy": per,
        },
    )


def _halo(registration: EnergyRegistration, runout: RunoutEstimate, n_rows: int) -> int:
    """Rows read beyond a block's on each side for its registration and run-out."""
    reach = np.abs(registration.scales - 1).max() * n_rows / 2
    if runout.offsets is not None:
        reach += np.abs(runout.offsets[..., 0]).max() + LANCZOS_A + 1
    return 2 * LANCZOS_A + 2 + int(np.ceil(np.abs(registration.shifts[:, 0]).max() + reach))


def _context(
    reader: RowReader,
    est: _Estimates,
    cal: Calibration,
    options: ProcessOptions,
    workers: int,
    rows: tuple[int, int],
) -> tuple[BlockContext, Unseen]:
    """The blocks' context (its rules without the mask reference yet) and the rows and
    columns without lithiation."""
    registration, runout, center, _ = est
    h = reader.source.header
    n_r, n_c = h.shape[2:]
    lo, hi = rows
    shifts, scales = registration.shifts, registration.scales
    lost = rows_not_seen_at_all_energies(shifts, n_r, scales)
    n_lost = int(lost[lo:hi].sum())
    n_off = 0
    if runout.offsets is not None:  # rows the run-out moved off the detector at some angle
        rows_idx = np.arange(n_r)
        up = float(np.max(-runout.offsets[..., 0], initial=0.0))
        down = float(np.max(runout.offsets[..., 0], initial=0.0))
        off_detector = (rows_idx < up - 0.5) | (rows_idx > n_r - 1 - down + 0.5)
        n_off = int(off_detector[lo:hi].sum())
        lost = lost | off_detector
    lost_cols = rows_not_seen_at_all_energies(shifts, n_c, scales, axis=1)
    ctx = BlockContext(
        reader.source,
        VoxelRules(cal, 0.0, options.min_jump_snr, options.min_jump_fraction),
        shifts,
        center.offset_px,
        options.method,
        reader.ratio,
        lost,
        threads=workers,
        scales=scales,
        lost_cols=lost_cols if not h.is_tomography else np.zeros(n_c, dtype=bool),
        projection_offsets=runout.offsets,
        remove_rings=options.ring_removal and h.is_tomography,
    )
    return ctx, Unseen(n_lost, n_off, int(lost_cols.sum()))


def _resampled(ctx: BlockContext) -> bool:
    """Whether the window is normalized into temporaries (not straight into the block): it
    is resampled, has its stripes removed, or has no flats."""
    return bool(
        np.any(ctx.shifts)
        or np.any(ctx.scales != 1.0)
        or ctx.projection_offsets is not None
        or ctx.remove_rings
        or ctx.source.header.n_flat == 0
    )
