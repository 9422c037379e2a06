"""The shared pipeline: scan -> normalize -> register -> reconstruct -> retrieve -> Li map.

It streams. The scan is read in blocks of detector rows straight from its file(s)
(:class:`xtwin.io.source.ScanSource`); each block is normalized, registered, reconstructed and
solved, and written to the Li-map file before the next is read, so memory stays bounded
(:mod:`xtwin.memory` chooses the block from ``memory_limit_bytes`` and refuses, up front, a run
that cannot fit). Every voxel depends only on its own rows (the registration kernel is finite
and the block is read with a halo), so the result is the same, bit for bit, whatever the block
size, the number of threads, or whether the blocks ran on a dask cluster.

The Li-map file is built in ``OUT.h5.partial`` (contiguous datasets allocated up front, the
finished rows recorded in the file): run the same command again after an interruption, even a
SIGKILL, and it resumes where it stopped; the partial file becomes ``OUT.h5`` only when
complete.

The pipeline never imports the twin (:mod:`xtwin.forward`): real and synthetic data meet only
at the scan file, and the retrieval is calibrated only from reference spectra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xtwin import __version__
from xtwin._files import apply_umask, sha256_of
from xtwin._provenance import package_versions
from xtwin._signals import check_interrupted
from xtwin._threads import blas_on_one_thread, thread_map
from xtwin.errors import XtwinInputError
from xtwin.io.limap import LiMap, regular_sample
from xtwin.io.source import ScanSource, open_scan, source_from_scan
from xtwin.memory import (
    READ_THREADS,
    MemoryPlan,
    even_blocks,
    plan_memory,
    read_chunk_angles,
    read_parallelism,
    release_freed_memory,
    share_one_arena,
)
from xtwin.physics.spectra import NormalizedSpectrum, normalize, read_spectrum
from xtwin.prep.normalize import exposure_ratios, normalize_block
from xtwin.prep.register import (
    apply_shift,
    apply_transform,
    registration_angles,
    rows_not_seen_at_all_energies,
    shifts_from_projections,
)
from xtwin.prep.rings import remove_stripes
from xtwin.retrieve.three_energy import (
    JUMP_REFERENCE_PERCENTILE,
    Calibration,
    Solution,
    apply_mask,
    calibrate,
    convention_half_range,
    jump_reference,
    solve,
)
from xtwin.shifts import LANCZOS_A, scaled_source_rows, source_rows

#: Registration shifts smaller than this (pixels) are below the estimate's precision: not applied.
MIN_SHIFT_PX = 0.02

#: A magnification change is applied when it moves the detector edge by at least this (px).
MIN_SCALE_EDGE_PX = 0.25


@dataclass(frozen=True)
class ProcessOptions:
    """How to process a scan.

    Attributes
    ----------
    center_offset_px : float or "auto"
        Rotation axis minus detector centre, pixels; ``"auto"`` (default) finds it from the
        data and records it.
    method : str
        Reconstruction backend: ``fourier`` (default), ``astra``, ``gridrec``.
    min_jump_snr, min_jump_fraction : float
        Ni masking thresholds (:func:`xtwin.retrieve.three_energy.apply_mask`).
    register : bool
        Register the energies to each other first.
    rows : (int, int), optional
        Process only detector rows ``[start, stop)`` (a row subset).
    memory_limit_bytes : int, optional
        Cap on the predicted peak memory (default: half the available memory).
    workers : int, optional
        Threads (or dask workers) reconstructing at once (default: the CPU count).
    scheduler : str, optional
        ``"local"`` for a dask.distributed LocalCluster, or a scheduler address
        (``tcp://host:8786``); default: threads in this process.
    block_rows : int, optional
        At most this many detector rows per block (smaller than the memory plan allows).
    allow_swapped_references : bool
        Accept a "lithiated" reference whose edge lies above the "delithiated" one.
    ring_removal : bool
        Remove sinogram stripes (ring artefacts) before reconstruction
        (:mod:`xtwin.prep.rings`); dead pixels are always filled.
    align_projections : str
        Per-projection alignment for the stage's run-out and jitter (tomography):
        ``auto`` (default) estimates the offsets and applies them when their rms reaches
        0.2 px, ``on`` always applies them, ``off`` skips the estimate (one extra read of the
        scan).
    register_scale : bool
        Also estimate and correct a magnification change between energies (zone-plate
        optics; applied when it moves the detector edge by at least 0.25 px).
    reference_convention : str
        How the reference spectra are normalized (:data:`xtwin.retrieve.conventions.CONVENTIONS`;
        default ``xtwin``); the others give ``/li/systematic``.
    """

    center_offset_px: float | str = "auto"
    method: str = "fourier"
    min_jump_snr: float = 3.0
    min_jump_fraction: float = 0.2
    register: bool = True
    rows: tuple[int, int] | None = None
    memory_limit_bytes: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    block_rows: int | None = None
    allow_swapped_references: bool = False
    reference_convention: str = "xtwin"
    register_scale: bool = True
    align_projections: str = "auto"
    ring_removal: bool = False

    def __post_init__(self) -> None:
        from xtwin.retrieve.conventions import CONVENTIONS

        if self.reference_convention not in CONVENTIONS:
            raise XtwinInputError(
                f"unknown reference convention {self.reference_convention!r}; choose one of "
                f"{', '.join(CONVENTIONS)}"
            )
        c = self.center_offset_px
        if isinstance(c, str) and c != "auto":
            raise XtwinInputError(f"center offset {c!r} is neither a number of pixels nor 'auto'")
        if not isinstance(c, str) and not np.isfinite(c):
            raise XtwinInputError(f"center offset {c} is not a finite number of pixels")
        from xtwin.recon.fbp import METHODS

        if {"fast": "fourier"}.get(self.method, self.method) not in METHODS:
            raise XtwinInputError(
                f"unknown reconstruction method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.min_jump_snr < 0 or not 0 <= self.min_jump_fraction < 1:
            raise XtwinInputError("min_jump_snr must be >= 0 and min_jump_fraction in [0, 1)")
        if self.rows is not None and (
            len(self.rows) != 2 or self.rows[0] < 0 or self.rows[1] <= self.rows[0]
        ):
            raise XtwinInputError(
                f"rows {self.rows} is not a range START:STOP with 0 <= START < STOP"
            )
        if self.align_projections not in ("auto", "on", "off"):
            raise XtwinInputError(
                f"align_projections {self.align_projections!r} must be auto, on or off"
            )
        if self.block_rows is not None and self.block_rows < 1:
            raise XtwinInputError("block_rows must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise XtwinInputError("workers must be at least 1")

    def key(self) -> dict[str, Any]:
        """The options that change the result (not memory, workers or scheduler)."""
        return {
            "center_offset_px": self.center_offset_px,
            "method": self.method,
            "min_jump_snr": self.min_jump_snr,
            "min_jump_fraction": self.min_jump_fraction,
            "register": self.register,
            "rows": list(self.rows) if self.rows else None,
            "reference_convention": self.reference_convention,
            "register_scale": self.register_scale,
            "align_projections": self.align_projections,
            "ring_removal": self.ring_removal,
        }


@dataclass(frozen=True)
class BlockContext:
    """Everything one block needs (picklable: blocks may run on dask workers)."""

    source: ScanSource
    calibration: Calibration
    shifts: np.ndarray
    center_offset_px: float
    method: str
    exposure_ratio: np.ndarray
    lost_rows: np.ndarray
    threads: int = 1
    jump_reference_per_m: float = 0.0
    min_jump_snr: float = 3.0
    min_jump_fraction: float = 0.2
    alt_calibrations: tuple[tuple[str, Calibration], ...] = ()
    scales: np.ndarray | None = None
    lost_cols: np.ndarray | None = None
    projection_offsets: np.ndarray | None = None  # (n_energy, n_angle, 2) run-out (rows, cols)
    remove_rings: bool = False

    @property
    def extras(self) -> tuple[str, ...]:
        """The per-voxel outputs beyond the standard ones (see :func:`extra_fields`)."""
        return extra_fields(self.calibration.mode, bool(self.alt_calibrations))


#: Per-voxel outputs beyond the lithiation, by retrieval mode, written under ``/edge/``.
EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "edge-jump": ("od_ratio",),
    "three-energy": (),
    "multi-energy": (
        "fit_chi2",
        "edge_position_eV",
        "edge_position_sigma_eV",
        "white_line_eV",
        "white_line_sigma_eV",
    ),
}


def extra_fields(mode: str, systematic: bool) -> tuple[str, ...]:
    """Extra per-voxel outputs: the mode's ``/edge/`` maps, and ``systematic`` (the spread of
    w over the reference-normalization conventions) when the references allow it."""
    return EXTRA_FIELDS[mode] + (("systematic",) if systematic else ())


def extra_path(name: str) -> str:
    """Where an extra output lives in the Li-map file (without the leading slash)."""
    return "li/systematic" if name == "systematic" else "edge/" + name


#: Units of the ``/edge/`` datasets.
EXTRA_UNITS = {
    "systematic": "lithiation fraction (half-range over normalization conventions)",
    "od_ratio": "ratio of the post-edge to the pre-edge attenuation (optical density for 2D)",
    "fit_chi2": "reduced chi-square of the end-member fit",
    "edge_position_eV": "eV",
    "edge_position_sigma_eV": "eV",
    "white_line_eV": "eV",
    "white_line_sigma_eV": "eV",
}


@dataclass(frozen=True)
class BlockResult:
    """Reconstruction and unmasked solution for output rows ``[lo, hi)`` (detector rows)."""

    lo: int
    hi: int
    mu: np.ndarray
    mu_sigma: np.ndarray
    solution: Solution
    clamped: int = 0
    mask: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class Scratch:
    """Block-sized arrays kept from one block to the next.

    A fresh array of hundreds of MB costs its page faults (on virtual machines about a second
    per GB of system time, more than the arithmetic done in it), so the pipeline's large
    per-block arrays are taken from here. An array handed out under a name is overwritten by
    the next call that asks for that name: its user must be done with it by then (the
    pipeline gives its blocks' results two scratches in turn, and waits for the writer of
    the block before last).
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """A C-contiguous array of ``shape`` (uninitialized) under ``name``."""
        n = int(np.prod(shape))
        dt = np.dtype(dtype)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dt or buf.size < n:
            del buf
            self._bufs.pop(name, None)  # the old buffer is freed before the new one is made
            buf = self._bufs[name] = np.empty(n, dt)
        return buf[:n].reshape(shape)


def _array(scratch: Scratch | None, name: str, shape: tuple[int, ...], dtype=np.float32):
    return np.empty(shape, dtype) if scratch is None else scratch.get(name, shape, dtype)


def normalized_rows(
    source: ScanSource,
    energy: int,
    lo: int,
    hi: int,
    exposure_ratio: float,
    *,
    angles: np.ndarray | slice | None = None,
    dark: np.ndarray | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``-ln(I/I0)`` and its variance of detector rows ``[lo, hi)`` of one energy (all angles
    or ``angles``), read from ``source`` (:func:`xtwin.prep.normalize.normalize_block`).
    ``dark`` is the mean dark of those rows when the caller has it already; ``out`` two
    float32 arrays to write into (used when the scan has flats)."""
    h = source.header
    return normalize_block(
        source.projections(energy, lo, hi, angles),
        source.flats(energy, lo, hi),
        source.dark_mean(lo, hi) if dark is None else dark,
        counts_per_photon=h.counts_per_photon,
        exposure_ratio=exposure_ratio,
        out=out,
    )


def read_block(
    ctx: BlockContext,
    lo: int,
    hi: int,
    *,
    variance: bool = True,
    scratch: Scratch | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Absorbance and its variance of detector rows ``[lo, hi)``, every energy, registered:
    (n_energy, n_angle, rows, n_col) float32 each, and the number of clamped values (in
    ``scratch``'s arrays when given)."""
    src = ctx.source
    n_e, n_a, _, n_c = src.header.shape
    rows = hi - lo
    if ctx.projection_offsets is not None:  # run-out: register a wider block, then each angle
        import dataclasses

        from xtwin.prep.runout import shift_per_angle

        halo = int(np.ceil(np.abs(ctx.projection_offsets[..., 0]).max())) + LANCZOS_A + 1
        inner = dataclasses.replace(ctx, projection_offsets=None)
        p_ext, v_ext, clamped = read_block(inner, lo - halo, hi + halo, variance=variance)
        p_out = _array(scratch, "p", (n_e, n_a, rows, n_c))
        v_out = _array(scratch, "v", p_out.shape) if variance else v_ext
        for e in range(n_e):
            off = ctx.projection_offsets[e]
            p_out[e] = shift_per_angle(p_ext[e], lo - halo, lo, hi, off)
            if variance:
                v_out[e] = shift_per_angle(v_ext[e], lo - halo, lo, hi, off, variance=True)
        return p_out, v_out, clamped
    p_all = _array(scratch, "p", (n_e, n_a, rows, n_c))
    v_all = _array(scratch, "v", p_all.shape) if variance else np.empty((n_e, 0, 0, 0), np.float32)
    windows = []
    for e in range(n_e):
        dy = float(ctx.shifts[e][0])
        sc = 1.0 if ctx.scales is None else float(ctx.scales[e])
        if sc != 1.0:
            windows.append(scaled_source_rows(lo, hi, sc, dy, (src.header.shape[2] - 1) / 2.0))
        else:
            windows.append(source_rows(lo, hi, dy) if dy else (lo, hi))
    darks = {w: src.dark_mean(*w) for w in set(windows)}  # one read per window
    # each angle is normalized and resampled on its own (with flats; stripe removal and the
    # noise estimate of flat-less data need every angle): then the work is cut into chunks
    # of angles of every energy, which balance the threads when only some energy is
    # resampled, and keep the temporaries small
    per_angle = src.header.n_flat > 0 and not ctx.remove_rings
    step = read_chunk_angles(n_a, per_angle)
    tasks = [(e, slice(a, min(a + step, n_a))) for e in range(n_e) for a in range(0, n_a, step)]

    def one(task: tuple[int, slice]) -> int:
        e, sl = task
        dy, dx = (float(x) for x in ctx.shifts[e])
        sc = 1.0 if ctx.scales is None else float(ctx.scales[e])
        a, b = windows[e]
        direct = sc == 1.0 and not (dy or dx) and variance  # normalized straight into place
        p, v, notes = normalized_rows(
            src,
            e,
            a,
            b,
            float(ctx.exposure_ratio[e]),
            angles=None if step == n_a else sl,
            dark=darks[a, b],
            out=(p_all[e, sl], v_all[e, sl]) if direct else None,
        )
        n_clamped = sum(int(n.split()[0]) for n in notes if "were clamped" in n)
        if ctx.remove_rings:
            p = remove_stripes(p, v)[0]
        if sc != 1.0:  # magnification and shift: both axes resampled
            n_r = src.header.shape[2]
            p_all[e, sl] = apply_transform(p, a, lo, hi, dy, dx, sc, n_rows=n_r)
            if variance:
                v_all[e, sl] = apply_transform(v, a, lo, hi, dy, dx, sc, n_rows=n_r, variance=True)
        elif dy or dx:
            apply_shift(p, lo, hi, dy, dx, out=p_all[e, sl])
            if variance:
                apply_shift(v, lo, hi, dy, dx, variance=True, out=v_all[e, sl])
        else:
            if not np.may_share_memory(p, p_all[e]):
                p_all[e, sl] = p
            if variance and not np.may_share_memory(v, v_all[e]):
                v_all[e, sl] = v
        return n_clamped

    # side by side on threads (numpy releases the GIL): whole energies (READ_THREADS at
    # once) or chunks of angles (one per worker); the memory model counts them
    par = read_parallelism(n_e, n_a, max(1, ctx.threads), step)
    clamped = sum(thread_map(one, tasks, par))
    return p_all, v_all, clamped


def field_of_view_disc(n_col: int, center_offset_px: float) -> np.ndarray:
    """(n_col, n_col) voxels of the reconstruction grid (centred on the rotation axis) that
    stay on the detector at every angle: within ``(n_col - 1) / 2 - |offset|`` (+ half a
    pixel) of the axis. Outside it a sample wider than the field of view (interior
    tomography), or the corners of a box, are seen at some angles only."""
    c = (n_col - 1) / 2.0
    yy, xx = np.mgrid[:n_col, :n_col]
    r = c - abs(float(center_offset_px)) + 0.5
    return (yy - c) ** 2 + (xx - c) ** 2 <= r * r


def compute_block(
    ctx: BlockContext,
    lo: int,
    hi: int,
    pool=None,
    before_reconstruct: Callable[[], None] | None = None,
    scratch: Scratch | None = None,
    out_scratch: Scratch | None = None,
) -> BlockResult:
    """Normalize, register, reconstruct and solve detector rows ``[lo, hi)``.

    Parameters
    ----------
    ctx : BlockContext
        The scan and what was decided about it.
    lo, hi : int
        Detector rows.
    pool : xtwin.recon.SlicePool, optional
        Threads for the slices (made here, with ``ctx.threads``, when not given).
    before_reconstruct : callable, optional
        Called once the block is read, before the reconstruction fills its volumes (the
        pipeline hands the previous block to its writer there, and waits for the write of
        the block before last, whose arrays it reuses, which bounds memory).
    scratch : Scratch, optional
        Arrays reused from block to block for the absorbance.
    out_scratch : Scratch, optional
        The same for the result's arrays (mu, sigma, the maps), which are views of it: valid
        until a call with the same ``out_scratch`` reconstructs (default: ``scratch``).

    Returns
    -------
    BlockResult
    """
    import time

    h = ctx.source.header
    n_c = h.shape[3]
    rows = hi - lo
    t0 = time.perf_counter()
    p_all, v_all, clamped = read_block(ctx, lo, hi, scratch=scratch)
    t_read = time.perf_counter() - t0
    if before_reconstruct is not None:
        before_reconstruct()  # timed by the caller
    t1 = time.perf_counter()
    res_scratch = out_scratch if out_scratch is not None else scratch
    if h.is_tomography:
        from xtwin.recon.volume import SlicePool

        own = pool is None
        pool = pool or SlicePool(ctx.method, n_c, h.theta_deg, ctx.center_offset_px, ctx.threads)
        vol_shape = (h.shape[0], rows, n_c, n_c)
        try:
            mu, mu_sig = pool.run(
                p_all,
                v_all,
                h.pixel_size_m,
                out=(
                    _array(res_scratch, "mu", vol_shape),
                    _array(res_scratch, "mu_sigma", vol_shape),
                ),
            )
        finally:
            if own:
                pool.close()
                pool = None
    else:  # copies: the next block reads into the scratch while this one is written
        mu = p_all[:, 0].copy()
        mu_sig = np.sqrt(v_all[:, 0])
    del p_all, v_all
    t2 = time.perf_counter()
    fields = ("lithiation", "sigma", "edge_jump", "edge_jump_sigma", "background")
    mode = ctx.calibration.mode
    extras = ctx.extras
    img = (rows,) + mu.shape[2:]
    out = {f: _array(res_scratch, "out/" + f, img) for f in fields + extras}
    mask = _array(res_scratch, "out/mask", img, bool)
    alts = tuple(cal for _, cal in ctx.alt_calibrations)
    lost = ctx.lost_rows[lo:hi]  # rows not seen at every energy: no lithiation (nor mask)
    lost_cols = ctx.lost_cols if ctx.lost_cols is not None and ctx.lost_cols.any() else None
    outside = None
    if h.is_tomography:  # voxels that leave the detector at some angle: not measured
        outside = ~field_of_view_disc(n_c, ctx.center_offset_px)
        outside = outside if outside.any() else None
    nan = np.float32(np.nan)

    def one(k: int) -> None:
        # row by row (small temporaries); the same values as whole-block operations
        s = solve(mu[:, k], mu_sig[:, k], ctx.calibration)
        for f in fields:
            out[f][k] = getattr(s, f)
        if mode == "multi-energy":
            from xtwin.retrieve.features import edge_features

            out["fit_chi2"][k] = s.chi2
            for name, val in edge_features(
                mu[:, k], mu_sig[:, k], ctx.calibration, s, ctx.calibration.edge_eV
            ).items():
                out[name][k] = val
        elif mode == "edge-jump":
            with np.errstate(divide="ignore", invalid="ignore"):
                out["od_ratio"][k] = np.where(mu[0, k] > 0, mu[-1, k] / mu[0, k], np.nan)
        if lost[k]:
            for f in ("lithiation", "sigma") + extras:
                out[f][k] = nan
            if mode == "edge-jump":
                out["edge_jump"][k] = nan
        # np.copyto(..., where=): boolean-index assignment is ten times slower
        if lost_cols is not None:  # 2D: columns not seen at every energy likewise
            np.copyto(out["lithiation"][k], nan, where=lost_cols)
            np.copyto(out["sigma"][k], nan, where=lost_cols)
        if outside is not None:
            for f in ("lithiation", "sigma", "edge_jump") + extras:
                np.copyto(out[f][k], nan, where=outside)
        ret = apply_mask(
            Solution(*(out[f][k] for f in fields)),
            ctx.jump_reference_per_m,
            min_jump_snr=ctx.min_jump_snr,
            min_jump_fraction=ctx.min_jump_fraction,
            require_lithiation=mode != "edge-jump",
        )
        out["lithiation"][k] = ret.lithiation
        out["sigma"][k] = ret.sigma
        mask[k] = ret.mask
        no_ni = ~ret.mask
        for f in extras:
            if f != "od_ratio":  # spectral features and systematics only where there is Ni
                np.copyto(out[f][k], nan, where=no_ni)
        if ctx.alt_calibrations and ret.mask.any():  # w under the other conventions
            idx = np.flatnonzero(ret.mask)  # gathers by index: boolean indexing is slower
            n_e = mu.shape[0]
            out["systematic"][k].reshape(-1)[idx] = convention_half_range(
                mu[:, k].reshape(n_e, -1)[:, idx],
                mu_sig[:, k].reshape(n_e, -1)[:, idx],
                Solution(*(getattr(s, f).reshape(-1)[idx] for f in fields)),
                ctx.calibration,
                alts,
            )

    if pool is not None and h.is_tomography:
        list(pool.map(one, range(rows)))
    else:
        for k in range(rows):
            one(k)
    sol = Solution(*(out[f] for f in fields))
    t3 = time.perf_counter()
    return BlockResult(
        lo,
        hi,
        mu,
        mu_sig,
        sol,
        clamped,
        mask,
        {"read_normalize_register": t_read, "reconstruct": t2 - t1, "retrieve": t3 - t2},
        {f: out[f] for f in extras},
    )


# -- sinks: where blocks go ---------------------------------------------------------------

_LI = ("lithiation", "sigma", "edge_jump_per_m", "edge_jump_sigma_per_m")


class _ArraySink:
    """Blocks into arrays (in-memory processing)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.arrays = {k: np.full(s, np.nan, dtype=np.float32) for k, s in shapes.items()}
        self.mask = np.zeros(shapes["lithiation"], dtype=bool)
        self.n = shapes["lithiation"][0]
        self.done = np.zeros(self.n, dtype=bool)

    def write(self, r0: int, res: BlockResult) -> None:
        r1 = r0 + res.hi - res.lo
        a = self.arrays
        a["mu"][:, r0:r1], a["mu_sigma"][:, r0:r1] = res.mu, res.mu_sigma
        s = res.solution
        for name, val in zip(_LI, (s.lithiation, s.sigma, s.edge_jump, s.edge_jump_sigma)):
            a[name][r0:r1] = val
        for name, val in res.extra.items():
            a[extra_path(name)][r0:r1] = val
        self.mask[r0:r1] = res.mask
        self.done[r0:r1] = True


class _H5Sink:
    """Blocks into ``OUT.h5.partial``: contiguous datasets allocated up front, finished rows
    recorded after their data, so a killed run leaves a consistent, resumable file."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], key: str) -> None:
        import h5py

        self.path = path
        f = self._reopen(path, shapes, key) if path.exists() else None
        if f is None and path.exists():
            path.unlink()  # made for other inputs or options, or damaged: start again
        self._check_space(path, shapes, f)
        if f is None:
            f = h5py.File(path, "w", track_order=False)
            for name, shape in self._paths(shapes):
                self._create(f, name, shape, np.float32)
            self._create(f, "/li/mask", shapes["lithiation"], np.uint8)
            self._create(f, "/pipeline/rows_done", (shapes["lithiation"][0],), np.uint8)
            f.attrs["resume_key"] = key
            f.flush()
        self.f = f
        self.done = np.asarray(f["/pipeline/rows_done"][()], dtype=bool)
        self.resumed = int(self.done.sum())

    @staticmethod
    def _check_space(path: Path, shapes: dict[str, tuple[int, ...]], f) -> None:
        """Refuse up front a Li map that the disk cannot hold (the datasets are allocated
        sparse, so a full disk would otherwise stop the run hours in).

        Raises
        ------
        XtwinInputError
            With the sizes.
        """
        import shutil

        total = sum(4 * int(np.prod(s)) for s in shapes.values())
        total += int(np.prod(shapes["lithiation"]))  # the mask
        on_disk = 0
        if f is not None:  # resuming: what the partial file holds already
            st = os.stat(path)
            on_disk = getattr(st, "st_blocks", 0) * 512
        free = shutil.disk_usage(path.parent).free
        if total - on_disk > free:
            raise XtwinInputError(
                f"the Li map needs {total / 1e9:.1f} GB ({(total - on_disk) / 1e9:.1f} GB more "
                f"than {path.name} holds) but {path.parent} has {free / 1e9:.1f} GB free; free "
                "space, write the output elsewhere (-o), or process fewer rows (--rows)"
            )

    @classmethod
    def _reopen(cls, path: Path, shapes: dict[str, tuple[int, ...]], key: str):
        """The partial file opened for resuming, or None when it does not match or is damaged.

        Raises
        ------
        XtwinInputError
            The file is locked by another running process.
        """
        import h5py

        try:
            f = h5py.File(path, "r+")
        except OSError as exc:
            if "lock" in str(exc).lower():
                raise XtwinInputError(
                    f"{path} is being written by another running process (the file is "
                    "locked); wait for it to finish, or stop it and run again to resume"
                ) from None
            return None
        try:
            if f.attrs.get("resume_key") == key and all(
                name in f and f[name].shape == s for name, s in cls._paths(shapes)
            ):
                return f
        except (OSError, RuntimeError):
            pass
        f.close()
        return None

    @staticmethod
    def _paths(shapes: dict[str, tuple[int, ...]]) -> Iterator[tuple[str, tuple[int, ...]]]:
        for k, s in shapes.items():
            if "/" in k:
                yield "/" + k, s
            else:
                yield ("/recon/" + k if k.startswith("mu") else "/li/" + k), s

    @staticmethod
    def _create(f, name: str, shape: tuple[int, ...], dtype) -> None:
        import h5py

        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple(shape)
        grp = f.require_group(name.rsplit("/", 1)[0])
        h5py.h5d.create(
            grp.id,
            name.rsplit("/", 1)[1].encode(),
            h5py.h5t.py_create(np.dtype(dtype)),
            space,
            dcpl=dcpl,
        )

    def write(self, r0: int, res: BlockResult) -> None:
        import errno

        try:
            self._write(r0, res)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left" in str(exc).lower():
                raise XtwinInputError(
                    f"the disk holding {self.path} is full ({exc}); free space and run the "
                    "same command again: it resumes from the rows already written"
                ) from None
            raise

    def _write(self, r0: int, res: BlockResult) -> None:
        f = self.f
        n = res.hi - res.lo
        r1 = r0 + n
        s = res.solution
        maps = {
            "/li/" + k: v
            for k, v in zip(_LI, (s.lithiation, s.sigma, s.edge_jump, s.edge_jump_sigma))
        }
        maps.update({"/" + extra_path(k): v for k, v in res.extra.items()})
        # slice by slice: h5py holds one lock for every file, so one long write would stall
        # the reading of the next block from the scan file for its whole duration
        mask = np.asarray(res.mask, dtype=bool)
        per_energy = [(f["/recon/mu"], res.mu), (f["/recon/mu_sigma"], res.mu_sigma)]
        per_map = [(f[name], val) for name, val in maps.items()]
        ds_mask = f["/li/mask"]
        for k in range(n):
            for ds, val in per_energy:
                for e in range(val.shape[0]):
                    ds[e, r0 + k] = val[e, k]
            for ds, val in per_map:
                ds[r0 + k] = val[k]
            ds_mask[r0 + k] = mask[k].astype(np.uint8)
        f.flush()
        self._to_disk()
        f["/pipeline/rows_done"][r0:r1] = 1  # written last: rows count once their data are in
        f.flush()
        self.done[r0:r1] = True

    def _to_disk(self) -> None:
        """The block's data onto the disk (so rows marked done survive a crash of the
        machine, too), and out of the page cache: a Li map is several times the memory of a
        machine, and evicting it again costs the kernel more CPU than writing it (2.7 s of
        system time per GB at 1024 x 512 x 721 x 3 on a 2-core VM)."""
        try:
            fd = self.f.id.get_vfd_handle()
        except (AttributeError, RuntimeError, ValueError):  # not a plain (sec2) file
            return
        if not isinstance(fd, int):
            return
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def finish(
        self,
        out: Path,
        energy_eV: np.ndarray,
        pixel_size_m: float,
        provenance: dict[str, Any],
        mode: str = "three-energy",
    ) -> None:
        from xtwin.io._h5 import _attr_value

        f = self.f
        f["/recon/energy_eV"] = np.asarray(energy_eV, dtype=np.float64)
        f["/recon/pixel_size_m"] = np.float64(pixel_size_m)
        f["/li/lithiation"].attrs["units"] = "lithiation fraction"
        f["/recon/mu"].attrs["units"] = "1/m"
        f["/li/edge_jump_per_m"].attrs["units"] = "1/m (optical density for 2D XANES)"
        import h5py

        edge = f.require_group("/edge")
        edge.attrs["mode"] = mode
        edge["jump_per_m"] = h5py.SoftLink("/li/edge_jump_per_m")
        edge["jump_sigma_per_m"] = h5py.SoftLink("/li/edge_jump_sigma_per_m")
        for name in extra_fields(mode, "/li/systematic" in f):
            f["/" + extra_path(name)].attrs["units"] = EXTRA_UNITS[name]
        if "/li/systematic" in f:
            ds = f["/li/systematic"]
            conv = provenance.get("normalization_conventions", {})
            ds.attrs["conventions"] = json.dumps(conv.get("used", []))
            sub = regular_sample(ds)  # a few slices read back, not the whole map
            ds.attrs["map_median"] = (
                float(np.nanmedian(sub)) if np.isfinite(sub).any() else float("nan")
            )
        g = f.require_group("/provenance")
        for k, v in provenance.items():
            g.attrs[k] = _attr_value(v)
        del f["/pipeline"]
        del f.attrs["resume_key"]
        f.close()
        apply_umask(self.path)
        os.replace(self.path, out)

    def close(self) -> None:
        try:
            self.f.close()
        except Exception:  # noqa: BLE001 (closing after an error must not mask it)
            pass


# -- the pipeline ---------------------------------------------------------------------------


@dataclass
class _Plan:
    ctx: BlockContext
    row_range: tuple[int, int]
    memory: MemoryPlan
    center_note: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    mask_note: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    scale_note: dict[str, Any] = field(default_factory=dict)
    runout_note: dict[str, Any] = field(default_factory=dict)


def _references(
    lithiated, delithiated, convention: str = "xtwin"
) -> tuple[NormalizedSpectrum, NormalizedSpectrum] | tuple[None, None]:
    if lithiated is None and delithiated is None:
        return None, None
    if lithiated is None or delithiated is None:
        raise XtwinInputError("give both reference spectra (--lithiated and --delithiated) or none")
    if convention == "xtwin":
        return normalize(read_spectrum(lithiated)), normalize(read_spectrum(delithiated))
    from xtwin.retrieve.conventions import normalize_with

    return (
        normalize_with(read_spectrum(lithiated), convention),
        normalize_with(read_spectrum(delithiated), convention),
    )


def _alt_calibrations(
    lithiated, delithiated, energy_eV: np.ndarray, allow_swapped: bool, main: str = "xtwin"
) -> tuple[tuple[tuple[str, Calibration], ...], dict[str, Any]]:
    """Calibrations under the other reference-normalization conventions
    (:mod:`xtwin.retrieve.conventions`) that the reference spectra support."""
    if lithiated is None or np.size(energy_eV) < 3:
        return (), {}
    from xtwin.retrieve.conventions import CONVENTIONS, convention_references

    pairs = convention_references(read_spectrum(lithiated), read_spectrum(delithiated))
    out = []
    for name, (ln, dn) in pairs.items():
        if name == main:
            continue
        try:
            out.append((name, calibrate(energy_eV, ln, dn, allow_swapped=allow_swapped)))
        except XtwinInputError:
            continue
    used = [n for n, _ in out]
    return tuple(out), {
        "used": [main] + used,
        "skipped": [c for c in CONVENTIONS if c not in used and c != main],
        "rule": "/li/systematic = half the range of w over the conventions used",
    }


def _add_conventions(plan, lithiated, delithiated, cal: Calibration, opts) -> None:
    import dataclasses

    alts, note = _alt_calibrations(
        lithiated,
        delithiated,
        cal.energy_eV,
        opts.allow_swapped_references,
        opts.reference_convention,
    )
    plan.ctx = dataclasses.replace(plan.ctx, alt_calibrations=alts)
    plan.conventions = note
    for ref in _references(lithiated, delithiated, opts.reference_convention):
        if ref is not None and ref.notes:
            plan.notes.extend(f"{ref.source}: {n}" for n in ref.notes)


def _mode_notes(cal: Calibration, ref_l, ref_d) -> list[str]:
    """What the number of energies allows, said in the provenance."""
    e = cal.energy_eV
    if cal.mode == "edge-jump":
        if ref_l is None:
            from xtwin.physics.xanes import builtin_references

            ref_l, ref_d = builtin_references()
        from xtwin.retrieve.three_energy import best_edge_energy

        best, diff = best_edge_energy(ref_l, ref_d, float(e[0]), float(e[-1]))
        return [
            f"edge-jump mode: {e.size} energies ({e[0]:.1f}, {e[1]:.1f} eV) give the Ni edge "
            "jump J (and the post/pre attenuation ratio), not the lithiation: both end members "
            "have the same jump. A third energy at about "
            f"{best:.1f} eV, where the {ref_l.source or 'lithiated'} and "
            f"{ref_d.source or 'delithiated'} edges differ most (normalized difference "
            f"{diff:+.2f}), would give the lithiation"
        ]
    if cal.mode == "multi-energy":
        edge = (e >= cal.edge_eV - 10) & (e <= cal.edge_eV + 10)
        step = float(np.median(np.diff(e[edge]))) if edge.sum() > 1 else float("nan")
        return [
            f"multi-energy mode: {e.size} energies, weighted least-squares fit of the two end "
            "members with free background and edge jump per voxel (reduced chi-square in "
            f"/edge/fit_chi2); edge and white-line positions from {int(edge.sum())} energies "
            f"within 10 eV of the edge (median step {step:.2f} eV)"
        ]
    return []


def _read_sample(
    source: ScanSource, sample: np.ndarray, idx: np.ndarray, ratio: np.ndarray
) -> list[list[str]]:
    """The registration sample: every energy's absorbance at the angles ``idx``, into
    ``sample`` (energies side by side); each energy's normalization notes."""
    n_r = source.header.shape[2]
    dark = source.dark_mean(0, n_r)

    def one(e: int) -> list[str]:
        var = np.empty(sample.shape[1:], np.float32)
        return normalized_rows(
            source, e, 0, n_r, float(ratio[e]), angles=idx, dark=dark, out=(sample[e], var)
        )[2]

    return thread_map(one, range(sample.shape[0]), READ_THREADS)


@blas_on_one_thread
def plan_processing(source: ScanSource, cal: Calibration, options: ProcessOptions) -> _Plan:
    """Decide everything global before the blocks run: registration shifts, rotation axis,
    rows, block size (refusing up front a run that cannot fit the memory limit)."""
    share_one_arena()
    h = source.header
    n_e, n_a, n_r, n_c = h.shape
    notes: list[str] = []
    lo, hi = options.rows or (0, n_r)
    if h.is_tomography:
        from xtwin.recon.fbp import check_tomography

        check_tomography(h.theta_deg)
    if hi > n_r:
        raise XtwinInputError(f"rows {lo}:{hi} reach beyond the detector's {n_r} rows")
    workers = options.workers or os.cpu_count() or 1
    idx = registration_angles(n_a)

    def memory(halo: int, resampled: bool = True) -> MemoryPlan:
        return plan_memory(
            h.shape,
            np.dtype(h.dtype).itemsize,
            n_rows_out=hi - lo,
            halo=halo,
            workers=workers,
            n_flat=h.n_flat,
            tomography=h.is_tomography,
            n_sample=idx.size,
            limit=options.memory_limit_bytes,
            baseline=baseline,
            n_extra=len(extra_fields(cal.mode, True)),
            resampled=resampled,
            per_angle=not (options.ring_removal and h.is_tomography),
        )

    import finufft  # noqa: F401  (loaded now, so the baseline counts the libraries)
    import skimage.registration  # noqa: F401

    from xtwin.memory import current_rss_bytes

    baseline = current_rss_bytes()
    memory(2 * LANCZOS_A)  # refuses, before any pixel is read, a run that cannot fit
    ratio = exposure_ratios(h.exposure_s, h.flat_exposure_s, n_e)
    if not np.allclose(ratio, 1.0):
        notes.append(f"flats scaled to the projection exposure by {np.round(ratio, 4)}")
    if h.n_dark == 0:
        notes.append("no dark fields; assumed a zero dark level")
    sample = None
    if (options.register and n_e > 1) or (options.center_offset_px == "auto" and h.is_tomography):
        sample = np.empty((n_e, idx.size, n_r, n_c), dtype=np.float32)
        for e, sample_notes in enumerate(_read_sample(source, sample, idx, ratio)):
            notes.extend(
                f"{h.energy_eV[e]:.1f} eV: {n}" for n in sample_notes if "dead detector" in n
            )
    offsets: np.ndarray | None = None
    runout_note: dict[str, Any] = {}
    if h.is_tomography and options.align_projections != "off" and n_a >= 16:
        offsets, runout_note = _runout_offsets(source, ratio, options.align_projections, notes)
        if offsets is not None and sample is not None:  # the sample without the run-out
            from xtwin.shifts import shift_image_stack

            for e in range(n_e):
                for j, a in enumerate(idx):
                    dz, dx = (float(v) for v in offsets[e, a])
                    sample[e, j] = shift_image_stack(sample[e, j], -dz, -dx)
    shifts = np.zeros((n_e, 2))
    scales = np.ones(n_e)
    scale_note: dict[str, Any] = {}
    if options.register and n_e > 1 and sample is not None:
        shifts = shifts_from_projections(sample)
        if options.register_scale:
            scales, shifts, scale_note = _scales(sample, h.energy_eV, shifts, notes)
        # below the estimator's resolution (1/100 px, median of 16 angles): not applied
        shifts = np.where(np.abs(shifts) < MIN_SHIFT_PX, 0.0, shifts)
        notes.append(
            "energies registered; detector shifts (rows, cols) in px: "
            + "; ".join(
                f"{e:.1f} eV: {dy:+.2f}, {dx:+.2f}" for e, (dy, dx) in zip(h.energy_eV, shifts)
            )
        )
    reach = np.abs(scales - 1).max() * n_r / 2
    if offsets is not None:
        reach += np.abs(offsets[..., 0]).max() + LANCZOS_A + 1
    halo = 2 * LANCZOS_A + 2 + int(np.ceil(np.abs(shifts[:, 0]).max() + reach))
    memory(halo)  # refuses, before the axis search, a run that cannot fit
    lost = rows_not_seen_at_all_energies(shifts, n_r, scales)
    if lost[lo:hi].any():
        notes.append(
            f"{int(lost[lo:hi].sum())} detector rows not seen at every energy after "
            "registration: no lithiation there"
        )
    if offsets is not None:  # rows the run-out moved off the detector at some angle
        rows_idx = np.arange(n_r)
        up = float(np.max(-offsets[..., 0], initial=0.0))
        down = float(np.max(offsets[..., 0], initial=0.0))
        off_detector = (rows_idx < up - 0.5) | (rows_idx > n_r - 1 - down + 0.5)
        if off_detector[lo:hi].any():
            notes.append(
                f"{int(off_detector[lo:hi].sum())} detector rows were off the detector at some "
                "angle (vertical run-out): no lithiation there"
            )
        lost = lost | off_detector
    lost_cols = rows_not_seen_at_all_energies(shifts, n_c, scales, axis=1)
    if lost_cols.any():
        notes.append(
            f"{int(lost_cols.sum())} detector columns not seen at every energy after "
            "registration: "
            + ("no lithiation there" if not h.is_tomography else "edge-padded in the sinograms")
        )
    center = options.center_offset_px
    center_note: dict[str, Any] = {}
    if center == "auto":
        center = 0.0
        if h.is_tomography and sample is not None:
            center, center_note = _find_center(source, sample, ratio, offsets)
    del sample
    ctx = BlockContext(
        source,
        cal,
        shifts,
        float(center),
        options.method,
        ratio,
        lost,
        threads=workers,
        min_jump_snr=options.min_jump_snr,
        min_jump_fraction=options.min_jump_fraction,
        scales=scales,
        lost_cols=lost_cols if not h.is_tomography else np.zeros(n_c, dtype=bool),
        projection_offsets=offsets,
        remove_rings=options.ring_removal and h.is_tomography,
    )
    import dataclasses

    j_ref, sample_rows = _jump_reference(ctx, lo, hi)
    ctx = dataclasses.replace(ctx, jump_reference_per_m=j_ref)
    # the blocks are sized on the memory resident now: what the planning's libraries (FFT
    # plans, thread arenas) keep is not handed back, though it is free
    release_freed_memory()
    baseline = max(baseline, current_rss_bytes())
    # the window is normalized into temporaries (not straight into the block) when it is
    # resampled, has its stripes removed, or has no flats
    resampled = bool(
        np.any(shifts)
        or np.any(scales != 1.0)
        or offsets is not None
        or (options.ring_removal and h.is_tomography)
        or h.n_flat == 0
    )
    plan = memory(halo, resampled)
    if options.block_rows is not None and options.block_rows < plan.rows_per_block:
        plan = dataclasses.replace(plan, rows_per_block=options.block_rows)
    mask_note = {
        "jump_reference_per_m": j_ref,
        "percentile": JUMP_REFERENCE_PERCENTILE,
        "sample_rows": sample_rows,
        "min_jump_snr": options.min_jump_snr,
        "min_jump_fraction": options.min_jump_fraction,
        "rule": "Ni where J / sigma_J >= min_jump_snr and J >= min_jump_fraction x "
        "jump_reference_per_m (the 99.5th percentile of J over the sample rows)",
    }
    out = _Plan(ctx, (lo, hi), plan, center_note, notes, mask_note)
    out.scale_note = scale_note
    out.runout_note = runout_note
    return out


#: Detector rows (a central band) whose vertical profiles and centre of mass give the quick
#: look at the run-out and the vertical offsets.
RUNOUT_BAND_ROWS = 96
#: Detector rows read at a time by the quick look (per energy; READ_THREADS energies at once).
RUNOUT_READ_ROWS = 8
#: Detector rows and columns (at most) of the sinograms that projection matching aligns.
RUNOUT_MATCH_ROWS = 16
RUNOUT_MATCH_COLS = 512


def _runout_offsets(
    source: ScanSource, ratio: np.ndarray, mode: str, notes: list[str]
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Per-projection offsets of every energy (:mod:`xtwin.prep.runout`), and whether they
    are applied.

    The vertical offsets and a quick look at the horizontal ones come from the vertical
    profiles and the centre of mass of a central band of rows; where that look is conclusive
    and finds nothing (``auto``), that is all. Otherwise the horizontal offsets come from
    projection matching on a few rows binned to at most RUNOUT_MATCH_COLS columns (the
    offsets are wanted to a tenth of a pixel, not the slices)."""
    from xtwin.prep.runout import (
        MIN_RESIDUAL_DROP,
        MIN_RUNOUT_RMS_PX,
        cc_shifts,
        estimate_offsets,
        horizontal_offsets_reprojection,
        quick_look_conclusive,
        reprojection_residual_drop,
        rotation_terms,
        shift_per_angle,
        undo_column_shifts,
    )
    from xtwin.recon.center import center_from_sinograms

    h = source.header
    n_e, _, n_r, n_c = h.shape
    dark = source.dark_mean(0, n_r)
    band = min(n_r, RUNOUT_BAND_ROWS)
    band_rows = ((n_r - band) // 2, (n_r - band) // 2 + band)

    def reader(e: int) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
            # rows outside the detector repeat the edge rows (ScanSource); the darks are read once
            d = None if dark is None else dark[np.clip(np.arange(r0, r1), 0, n_r - 1)]
            p, v, _ = normalized_rows(source, e, r0, r1, float(ratio[e]), dark=d)
            return p, v

        return read

    readers = [reader(e) for e in range(n_e)]
    # energies side by side, a few rows at a time (RUNOUT_READ_ROWS: the memory model's band)
    looks = thread_map(
        lambda e: estimate_offsets(readers[e], band_rows, n_c, h.theta_deg, block=RUNOUT_READ_ROWS),
        range(n_e),
        READ_THREADS,
    )
    offs = [o for o, _ in looks]
    info = [i for _, i in looks]
    quick = {f"{e:.2f}": dict(i) for e, i in zip(h.energy_eV, info)}
    nothing = all(
        quick_look_conclusive(i)
        and i["rms_rows_px"] < MIN_RUNOUT_RMS_PX
        and i["excess_cols_px"] < MIN_RUNOUT_RMS_PX
        for i in info
    )
    if mode == "auto" and nothing:
        return None, {
            "applied": False,
            "method": "vertical profiles and horizontal centre of mass of rows "
            f"{band_rows[0]}:{band_rows[1]}: below {MIN_RUNOUT_RMS_PX} px rms beyond their noise",
            "per_energy": quick,
        }
    # a few rows, vertical offsets undone, binned to at most RUNOUT_MATCH_COLS columns
    b = max(1, -(-n_c // RUNOUT_MATCH_COLS))
    nb = n_c // b
    rows = np.unique(np.linspace(2, max(n_r - 3, 2), min(RUNOUT_MATCH_ROWS, n_r)).astype(int))
    sinos = []
    for e in range(n_e):
        dz = offs[e][:, 0]
        if np.any(dz):
            halo = int(np.ceil(np.abs(dz).max())) + LANCZOS_A + 1
            s = np.stack(
                [
                    shift_per_angle(
                        readers[e](r - halo, r + halo + 1)[0],
                        r - halo,
                        r,
                        r + 1,
                        np.c_[dz, 0 * dz],
                    )[:, 0]
                    for r in rows
                ]
            )
        else:  # no vertical offsets: the rows as they are
            s = np.stack([readers[e](r, r + 1)[0][:, 0] for r in rows])
        sinos.append(s[..., : nb * b].reshape(s.shape[0], s.shape[1], nb, b).mean(axis=-1))
    # horizontal, reference energy: projection matching, alternating with the axis search (the
    # axis found on sinograms that still carry the run-out is off)
    ref = int(np.argmax([float(x.mean()) for x in sinos]))
    rows_small = all(i["rms_rows_px"] < MIN_RUNOUT_RMS_PX for i in info)
    centre = float(np.median(center_from_sinograms(sinos[ref][:4], h.theta_deg)))
    # two rounds of matching tell run-out from noise (run-out drops the residual by 77-92 % in
    # the first rounds already); the full iteration only where there is something to align
    dx_ref = horizontal_offsets_reprojection(sinos[ref], h.theta_deg, centre, n_iter=2)
    drop_ref = reprojection_residual_drop(sinos[ref], h.theta_deg, centre, dx_ref)
    if mode == "auto" and rows_small and drop_ref < MIN_RESIDUAL_DROP:
        # the stage's run-out is common to the energies: none at the reference, none at all
        return None, {
            "applied": False,
            "method": f"projection matching of {len(rows)} rows binned by {b} at "
            f"{h.energy_eV[ref]:.1f} eV: the reprojection residual drops by {drop_ref:.4f} "
            f"(< {MIN_RESIDUAL_DROP}) with the offsets undone; vertical profiles below "
            f"{MIN_RUNOUT_RMS_PX} px rms",
            "quick_look": quick,
            "per_energy": quick,
        }
    # the axis found on sinograms that still carry the run-out is off: once more, aligned
    # projection matching converges slowly from zero (the slices it reprojects carry the
    # run-out); where the sample stays in the field the centre of mass already has the
    # offsets but for their noise, and matching starts from it (an analytic phantom, 512
    # columns x 721 angles: 9 rounds instead of 50, 60 s instead of about 170 s)
    com = [o[:, 1] / b if i["mass_rel_std"] < 0.01 else None for o, i in zip(offs, info)]
    com_ref = com[ref]
    if com_ref is not None:
        dx_ref = com_ref
    # the run-out's mean over the angles is an offset of the axis, which projection matching
    # leaves to the axis search: twice, each time on sinograms aligned with the offsets found
    # on the previous axis (an analytic phantom with a 1 px mean: 0.040 -> 0.022 px rms)
    for _ in range(2):
        aligned = undo_column_shifts(sinos[ref], dx_ref)
        centre = float(np.median(center_from_sinograms(aligned, h.theta_deg)))
        dx_ref = horizontal_offsets_reprojection(sinos[ref], h.theta_deg, centre, dx0=dx_ref)
    aligned = undo_column_shifts(sinos[ref], dx_ref)
    # other energies: each projection matched to the reference energy's at the same angle
    # (the sample is the same; an in-plane offset between energies would not be physical)
    for e in range(n_e):
        if e == ref:
            cands = {"reprojection": dx_ref}
        else:
            # each energy is a rotation of its own (its own jitter): matched to the reference
            # energy's aligned projections (precise where the chemical contrast is alike) and
            # to its own reprojection (immune to contrast differences between particles); the
            # candidate that makes its own sinograms the more self-consistent is kept. Its
            # constant (the drift between energies) comes along; the registration finds ~0.
            cands = {
                "reference energy": cc_shifts(sinos[e], aligned),
                "reprojection": horizontal_offsets_reprojection(
                    sinos[e], h.theta_deg, centre, dx0=com[e]
                ),
            }
        drops = {
            k: reprojection_residual_drop(sinos[e], h.theta_deg, centre, v)
            for k, v in cands.items()
        }
        best = max(drops, key=lambda k: drops[k])
        drop = drops[best]
        dx_e = cands[best]
        if e != ref:
            # projection matching leaves out what a displaced sample does (the rotation's
            # first harmonic); between energies such a displacement is real (the stage's
            # jitter, drift of the sample in the slice plane) and would misregister the
            # energies' slices: it is fitted against the reference energy's aligned sinograms
            # (the constant stays with the registration)
            dx_e = (
                dx_e
                + rotation_terms(
                    cc_shifts(undo_column_shifts(sinos[e], dx_e), aligned), h.theta_deg
                )[1]
            )
        offs[e][:, 1] = dx_e * b
        info[e]["residual_drop"] = round(drop, 4)
        info[e]["matched_to"] = best
        if drop < MIN_RESIDUAL_DROP:  # not significant: matching noise, not run-out
            offs[e][:, 1] = 0.0
        dcol = offs[e][:, 1] - np.median(offs[e][:, 1])  # the run-out, without the drift
        info[e]["rms_cols_px"] = float(np.sqrt(np.mean(dcol**2)))
        info[e]["max_px"] = float(np.abs(offs[e]).max())
    offsets = np.stack(offs)
    worst = max(max(i["rms_rows_px"], i["rms_cols_px"]) for i in info)
    applied = mode == "on" or worst >= MIN_RUNOUT_RMS_PX
    note = {
        "applied": bool(applied),
        "method": f"vertical profiles of rows {band_rows[0]}:{band_rows[1]}; projection "
        f"matching of {len(rows)} rows binned by {b} (xtwin.prep.runout)",
        "quick_look": quick,
        "per_energy": {f"{e:.2f}": i for e, i in zip(h.energy_eV, info)},
    }
    if applied:
        note["offsets_px"] = np.round(offsets, 3).tolist()
        notes.append(
            "per-projection alignment (run-out): rms offsets "
            + "; ".join(
                f"{e:.1f} eV: {i['rms_rows_px']:.2f} rows, {i['rms_cols_px']:.2f} cols"
                for e, i in zip(h.energy_eV, info)
            )
        )
        return offsets, note
    return None, note


def _scales(
    sample: np.ndarray, energy_eV: np.ndarray, shifts: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Magnification per energy (fitted law) and the shifts re-estimated under it; scales of
    which the largest moves the detector edge by less than MIN_SCALE_EDGE_PX are not applied."""
    from xtwin.prep.register import _warp, scales_from_projections

    n_e, _, n_r, n_c = sample.shape
    scales, info = scales_from_projections(sample, energy_eV)
    edge_px = float(np.abs(scales - 1).max() * max(n_r, n_c) / 2)
    info["edge_displacement_px"] = round(edge_px, 3)
    # the law must explain the independent estimates: one k, the same sign at every energy
    de = np.asarray(energy_eV, dtype=float) - info["reference_eV"]
    est = np.asarray(info["per_energy"])
    ks = (est - 1)[de != 0] / de[de != 0]
    consistent = bool(ks.size) and (
        np.all(np.sign(ks) == np.sign(ks[0])) and np.std(ks) <= 0.5 * abs(np.mean(ks))
    )
    info["law_consistent"] = consistent
    if edge_px < MIN_SCALE_EDGE_PX or not consistent:
        info["applied"] = False
        return np.ones(n_e), shifts, info
    info["applied"] = True
    warped = np.stack(
        [np.stack([_warp(x, float(s), 0.0, 0.0) for x in sample[e]]) for e, s in enumerate(scales)]
    )
    shifts = shifts_from_projections(warped) * scales[:, None]
    notes.append(
        "magnification changes with energy: law s(E) = 1 + k (E - "
        f"{info['reference_eV']:.1f} eV), k = {info['k_per_eV']:.3e} per eV; scales "
        + ", ".join(f"{e:.1f} eV: {s:.5f}" for e, s in zip(energy_eV, scales))
        + f" (independent estimates {info['per_energy']})"
    )
    return scales, shifts, info


#: Detector rows reconstructed before the blocks to set the Ni mask's reference edge jump.
JUMP_SAMPLE_ROWS = 16


def _jump_reference(ctx: BlockContext, lo: int, hi: int) -> tuple[float, list[int]]:
    """The Ni mask's reference: the 99.5th percentile of the edge jump J over up to 16 rows
    spread over ``[lo, hi)``, found before the blocks so that every block is masked as it is
    made (no second pass over the map) and the same whatever the block size or workers.

    J is linear in the attenuation, so it is reconstructed directly: one FBP per row of the
    energy combination ``sum_e pinv[J, e] p_e``.
    """
    from xtwin.recon.volume import SlicePool

    h = ctx.source.header
    rows = np.unique(np.linspace(lo, hi - 1, min(JUMP_SAMPLE_ROWS, hi - lo)).astype(int))
    weights = np.linalg.pinv(ctx.calibration.matrix).astype(np.float32)[1]
    pool = (
        SlicePool(ctx.method, h.shape[3], h.theta_deg, ctx.center_offset_px, ctx.threads)
        if h.is_tomography
        else None
    )

    def one(r: int) -> np.ndarray:
        p, _, _ = read_block(ctx, r, r + 1, variance=False)
        q = np.tensordot(weights, p[:, :, 0, :], axes=(0, 0))  # (n_angle, n_col)
        if pool is None:
            return q[0].ravel()
        return (pool.reconstructor().fbp(q[None])[0] / h.pixel_size_m).ravel()

    try:
        values = thread_map(one, [int(r) for r in rows], ctx.threads)
    finally:
        if pool is not None:
            pool.close()
    return jump_reference(np.concatenate(values) if values else np.zeros(0)), rows.tolist()


def _find_center(
    source: ScanSource,
    sample: np.ndarray,
    ratio: np.ndarray,
    offsets: np.ndarray | None = None,
) -> tuple[float, dict[str, Any]]:
    """The rotation axis from the most structured rows of the most absorbing energy (the
    registration reference, so its rows need no shift), with each projection's run-out
    ``offsets`` undone first when given."""
    from xtwin.recon.center import CenterEstimate, center_from_sinograms, choose_rows

    h = source.header
    ie = int(np.argmax(sample.reshape(h.shape[0], -1).mean(axis=1)))
    rows = choose_rows(sample[ie].std(axis=(0, 2)))
    if offsets is None:
        sinos = np.stack(
            [normalized_rows(source, ie, r, r + 1, float(ratio[ie]))[0][:, 0] for r in rows]
        )
    else:
        from xtwin.prep.runout import shift_per_angle

        halo = int(np.ceil(np.abs(offsets[ie, :, 0]).max())) + LANCZOS_A + 1
        dark = source.dark_mean(0, h.shape[2])
        sinos = np.stack(
            [
                shift_per_angle(
                    normalized_rows(
                        source,
                        ie,
                        r - halo,
                        r + halo + 1,
                        float(ratio[ie]),
                        dark=None
                        if dark is None
                        else dark[np.clip(np.arange(r - halo, r + halo + 1), 0, h.shape[2] - 1)],
                    )[0],
                    r - halo,
                    r,
                    r + 1,
                    offsets[ie],
                )[:, 0]
                for r in rows
            ]
        )
    per_row = center_from_sinograms(sinos, h.theta_deg)
    est = CenterEstimate(float(np.median(per_row)), per_row, rows, float(h.energy_eV[ie]))
    return est.offset_px, {
        "center_offset_px": round(est.offset_px, 4),
        "spread_px": round(est.spread_px, 4),
        "rows": rows.tolist(),
        "per_row_px": np.round(per_row, 3).tolist(),
        "energy_eV": est.energy_eV,
    }


def _shapes(source: ScanSource, n_rows: int, extras: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    n_e, _, _, n_c = source.header.shape
    img = (n_rows, n_c, n_c) if source.header.is_tomography else (n_rows, n_c)
    return {
        "mu": (n_e,) + img,
        "mu_sigma": (n_e,) + img,
        "lithiation": img,
        "sigma": img,
        "edge_jump_per_m": img,
        "edge_jump_sigma_per_m": img,
        **{extra_path(k): img for k in extras},
    }


@blas_on_one_thread
def _run_blocks(
    plan: _Plan,
    sink,
    options: ProcessOptions,
    progress: Callable[[int], None] | None,
    timing: dict[str, float],
) -> int:
    """Compute every unfinished block into ``sink``; return the clamped-value count and add
    the seconds of each stage to ``timing``."""
    import time

    def write(res: BlockResult) -> None:
        t = time.perf_counter()
        sink.write(res.lo - lo, res)
        for k, v in res.seconds.items():
            timing[k] = timing.get(k, 0.0) + v
        timing["write"] = timing.get("write", 0.0) + time.perf_counter() - t
        if progress is not None:
            progress(res.hi - res.lo)

    lo, hi = plan.row_range
    blocks = [
        (a, b)
        for a, b in even_blocks(lo, hi, plan.memory.rows_per_block)
        if not sink.done[a - lo : b - lo].all()
    ]
    if progress is not None and sink.done.any():
        progress(int(sink.done.sum()))
    clamped = 0
    if options.scheduler:
        for res in _dask_blocks(plan.ctx, blocks, options):
            check_interrupted()
            write(res)
            clamped += res.clamped
        return clamped
    ctx = plan.ctx
    pool = None
    if ctx.source.header.is_tomography:
        from xtwin.recon.volume import SlicePool

        pool = SlicePool(
            ctx.method,
            ctx.source.header.shape[3],
            ctx.source.header.theta_deg,
            ctx.center_offset_px,
            ctx.threads,
        )
    from concurrent.futures import ThreadPoolExecutor

    scratch = Scratch()
    slots = (Scratch(), Scratch())  # results: one being written while the next is made
    try:
        # a finished block is written by a second thread while the next one is
        # reconstructed: it is handed over once the next block is read (h5py holds one lock
        # for every file, so a write during the read stalls the read: 46 s instead of 17-19
        # at 1024 x 512 x 721 x 3). A block waits before it reconstructs for the write of
        # the block before last, whose arrays it reuses (the memory model counts both).
        with ThreadPoolExecutor(1) as writer:
            from collections import deque

            pending: deque = deque()
            made: list[BlockResult] = []  # computed, not yet handed to the writer

            def hand_over_and_wait(keep: int = 1) -> None:
                while made:
                    pending.append(writer.submit(write, made.pop()))
                t = time.perf_counter()
                while len(pending) > keep:
                    pending.popleft().result()
                timing["wait_for_writer"] = (
                    timing.get("wait_for_writer", 0.0) + time.perf_counter() - t
                )

            for i, (a, b) in enumerate(blocks):
                check_interrupted()  # a SIGINT whose exception was swallowed stops here
                res = compute_block(
                    ctx,
                    a,
                    b,
                    pool,
                    before_reconstruct=hand_over_and_wait,
                    scratch=scratch,
                    out_scratch=slots[i % 2],
                )
                clamped += res.clamped
                made.append(res)
                del res
                release_freed_memory()
            hand_over_and_wait(0)
    finally:
        if pool is not None:
            pool.close()
    return clamped


@blas_on_one_thread
def _block_task(ctx: BlockContext, lo: int, hi: int) -> BlockResult:
    """One block on a dask worker (one thread per worker: BLAS on one thread too)."""
    return compute_block(ctx, lo, hi)


def _dask_blocks(
    ctx: BlockContext, blocks: list[tuple[int, int]], options: ProcessOptions
) -> Iterator[BlockResult]:
    """Blocks as tasks on dask.distributed, at most two per worker in flight."""
    import dataclasses

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if options.scheduler == "local":
        cluster = LocalCluster(
            n_workers=options.workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        try:
            client = Client(options.scheduler, timeout="20s")
        except OSError as exc:
            raise XtwinInputError(
                f"cannot reach the dask scheduler {options.scheduler!r} "
                f"({exc}); check the address, or leave --scheduler out"
            ) from None
    task_ctx = dataclasses.replace(ctx, threads=1)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        todo = list(blocks)
        window = as_completed()
        for _ in range(min(2 * n_workers, len(todo))):
            a, b = todo.pop(0)
            window.add(client.submit(_block_task, task_ctx, a, b, pure=False))
        for fut in window:
            res = fut.result()
            fut.release()
            if todo:
                a, b = todo.pop(0)
                window.add(client.submit(_block_task, task_ctx, a, b, pure=False))
            yield res
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _provenance(
    plan: _Plan,
    options: ProcessOptions,
    source: ScanSource,
    refs: dict[str, Any],
    hashes: dict[str, str],
    clamped: int,
    resumed: int,
) -> dict[str, Any]:
    h = source.header
    ctx = plan.ctx
    notes = list(h.notes) + plan.notes
    if clamped:
        notes.append(f"{clamped} values at or below zero after dark subtraction were clamped")
    if resumed:
        notes.append(
            f"resumed: {resumed} of {plan.row_range[1] - plan.row_range[0]} rows were "
            "taken from the interrupted run"
        )
    if not h.is_tomography:
        notes.append("2D XANES: retrieval on optical density, no reconstruction")
    return {
        "xtwin_version": __version__,
        "inputs": hashes,
        **refs,
        "options": {**options.key(), "center_offset_px": ctx.center_offset_px},
        "rotation_center_search": plan.center_note,
        "rotation_center_px": ctx.center_offset_px,
        "rows": list(plan.row_range),
        "reconstruction": {"method": options.method},
        "energy_magnification": plan.scale_note,
        "projection_alignment": plan.runout_note,
        "energy_registration_px": {
            f"{e:.2f}": [round(float(x), 3) for x in sh] for e, sh in zip(h.energy_eV, ctx.shifts)
        },
        "calibration": ctx.calibration.as_dict(),
        "normalization_conventions": plan.conventions,
        "mask": plan.mask_note,
        "memory": plan.memory.as_dict(),
        "notes": notes,
        "versions": package_versions("numpy", "h5py", "xraylib", "astra-toolbox", "finufft"),
        "input_metadata": {str(k): v for k, v in h.metadata.items()},
    }


def _ref_provenance(lithiated, delithiated, ref_l, ref_d) -> dict[str, Any]:
    if ref_l is None:
        return {}
    return {
        "lithiated_reference": {
            "path": str(lithiated),
            "sha256": sha256_of(lithiated),
            **ref_l.summary(),
        },
        "delithiated_reference": {
            "path": str(delithiated),
            "sha256": sha256_of(delithiated),
            **ref_d.summary(),
        },
    }


def process_scan(
    scan,
    lithiated: str | os.PathLike | None,
    delithiated: str | os.PathLike | None,
    *,
    options: ProcessOptions | None = None,
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> LiMap:
    """Run the whole pipeline on an in-memory scan (or an open source) and return the Li map.

    Parameters
    ----------
    scan : ScanData or ScanSource
        The acquisition (tomography or 2D XANES).
    lithiated, delithiated : path-like or None
        Reference spectra of the two end members (two-column text); may be None for a
        two-energy scan (edge-jump mode).
    options : ProcessOptions, optional
        Processing options; keyword arguments (``center_offset_px=...``, ``register=...``)
        override its fields.
    progress : callable, optional
        Called with the number of rows finished since the last call.

    Returns
    -------
    LiMap
        The same values, bit for bit, as :func:`process_file` writes.
    """
    import dataclasses

    opts = dataclasses.replace(options or ProcessOptions(), **kwargs)
    source = scan if isinstance(scan, ScanSource) else source_from_scan(scan)
    ref_l, ref_d = _references(lithiated, delithiated, opts.reference_convention)
    cal = calibrate(
        source.header.energy_eV, ref_l, ref_d, allow_swapped=opts.allow_swapped_references
    )
    plan = plan_processing(source, cal, opts)
    plan.notes.extend(_mode_notes(cal, ref_l, ref_d))
    _add_conventions(plan, lithiated, delithiated, cal, opts)
    n_rows = plan.row_range[1] - plan.row_range[0]
    sink = _ArraySink(_shapes(source, n_rows, plan.ctx.extras))
    timing: dict[str, float] = {}
    clamped = _run_blocks(plan, sink, opts, progress, timing)
    prov = _provenance(
        plan, opts, source, _ref_provenance(lithiated, delithiated, ref_l, ref_d), {}, clamped, 0
    )
    prov["timing_s"] = {k: round(v, 3) for k, v in timing.items()}
    a = sink.arrays
    return LiMap(
        lithiation=a["lithiation"],
        sigma=a["sigma"],
        mask=sink.mask,
        edge_jump_per_m=a["edge_jump_per_m"],
        mu_per_m=a["mu"],
        mu_sigma_per_m=a["mu_sigma"],
        energy_eV=cal.energy_eV,
        pixel_size_m=source.header.pixel_size_m,
        provenance=prov,
        edge_jump_sigma_per_m=a["edge_jump_sigma_per_m"],
        edge={k[5:]: v for k, v in a.items() if k.startswith("edge/")},
        systematic=a.get("li/systematic"),
        mode=cal.mode,
    )


def partial_path(out: str | os.PathLike) -> Path:
    """Where an unfinished Li-map file is built (and resumed from)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def process_file(
    scans: list[str | os.PathLike] | str | os.PathLike,
    lithiated: str | os.PathLike | None,
    delithiated: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    options: ProcessOptions | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
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
    progress : callable, optional
        Called with the number of rows finished since the last call.
    on_plan : callable, optional
        Called once with the plan (rotation axis, memory, block size) before the blocks run.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import time

    t_start = time.perf_counter()
    opts = options or ProcessOptions()
    out = Path(out)
    paths = [scans] if isinstance(scans, str | os.PathLike) else list(scans)
    ref_l, ref_d = _references(lithiated, delithiated, opts.reference_convention)
    with open_scan(paths) as source:
        cal = calibrate(
            source.header.energy_eV, ref_l, ref_d, allow_swapped=opts.allow_swapped_references
        )
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as hasher:  # hashing overlaps the planning (GIL released)
            hashing = hasher.submit(lambda: {str(p): sha256_of(p) for p in paths})
            plan = plan_processing(source, cal, opts)
            plan.notes.extend(_mode_notes(cal, ref_l, ref_d))
            _add_conventions(plan, lithiated, delithiated, cal, opts)
            hashes = hashing.result()
        refs = _ref_provenance(lithiated, delithiated, ref_l, ref_d)
        key = json.dumps(
            {
                "inputs": hashes,
                "refs": [refs[k]["sha256"] for k in sorted(refs)],
                "options": opts.key(),
                "version": __version__,
            },
            sort_keys=True,
        )
        if on_plan is not None:
            on_plan(
                {
                    "center_offset_px": plan.ctx.center_offset_px,
                    "center_search": plan.center_note,
                    **plan.memory.as_dict(),
                }
            )
        n_rows = plan.row_range[1] - plan.row_range[0]
        sink = _H5Sink(partial_path(out), _shapes(source, n_rows, plan.ctx.extras), key)
        try:
            timing = {"plan": time.perf_counter() - t_start}
            clamped = _run_blocks(plan, sink, opts, progress, timing)
            timing["total"] = time.perf_counter() - t_start
            prov = _provenance(plan, opts, source, refs, hashes, clamped, sink.resumed)
            prov["timing_s"] = {k: round(v, 3) for k, v in timing.items()}
            sink.finish(out, cal.energy_eV, source.header.pixel_size_m, prov, cal.mode)
        finally:
            sink.close()
    return out


def series_outputs(out: str | os.PathLike, n: int) -> list[Path]:
    """Names of the Li maps of an operando series: ``OUT_t000.h5``, ``OUT_t001.h5``, ..."""
    out = Path(out)
    return [out.with_name(f"{out.stem}_t{k:03d}{out.suffix or '.h5'}") for k in range(n)]


def check_series(paths: list[str | os.PathLike]) -> None:
    """Refuse an "operando series" whose files do not share sample, energies, pixel size and
    detector shape."""
    from xtwin.io.scan import read_header

    heads = [read_header(p)[0] for p in paths]
    ref = heads[0]
    for p, h in zip(paths, heads):
        problems = []
        if h.shape[0] != ref.shape[0] or not np.allclose(h.energy_eV, ref.energy_eV, atol=0.5):
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


def _made_from(limap_path: Path, scan: str | os.PathLike) -> bool:
    """Whether a finished Li-map file was made from ``scan`` (same SHA-256 in provenance)."""
    import h5py

    try:
        with h5py.File(limap_path, "r") as f:
            inputs = json.loads(f["/provenance"].attrs.get("inputs", "{}"))
    except (OSError, KeyError, ValueError, TypeError):
        return False
    return sha256_of(scan) in set(inputs.values())


def process_series(
    scans: list[str | os.PathLike],
    lithiated: str | os.PathLike | None,
    delithiated: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    options: ProcessOptions | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, Path, Path], None] | None = None,
    on_file: Callable[[int, Path, Path, bool], None] | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
) -> list[Path]:
    """Process an operando series (one multi-energy scan file per time point) in time order.

    A rerun after an interruption keeps the time points already finished (their Li map exists
    and was made from the same scan file) and resumes the unfinished one from its partial
    file. A Li map made from another scan is refused unless ``force``, which reprocesses every
    time point.

    Parameters
    ----------
    scans : list of path-like
        One multi-energy scan file per time point, in any order (sorted by ``time_s``).
    lithiated, delithiated : path-like or None
        Reference spectra (None for a two-energy scan).
    out : path-like
        Base name: the maps are ``OUT_t000.h5``, ``OUT_t001.h5``, ...
    options : ProcessOptions, optional
    force : bool
        Reprocess and replace existing maps.
    progress, on_plan : callable, optional
        Passed to :func:`process_file` for each time point.
    on_start, on_file : callable, optional
        Called with (index, scan, map) before each time point, and with (index, scan, map,
        kept) after it (``kept``: an existing map was kept).

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
    check_series([scans[i] for i in order])
    outs = series_outputs(out, len(order))
    if not force:
        for k, i in enumerate(order):
            if outs[k].exists() and not _made_from(outs[k], scans[i]):
                raise XtwinInputError(
                    f"{outs[k]} exists and was not made from {scans[i]}; choose another output "
                    "name or pass --force to replace it"
                )
    for k, i in enumerate(order):
        kept = outs[k].exists() and not force
        if not kept:
            if on_start is not None:
                on_start(k, Path(scans[i]), outs[k])
            process_file(
                [scans[i]],
                lithiated,
                delithiated,
                outs[k],
                options=options,
                progress=progress,
                on_plan=on_plan,
            )
        if on_file is not None:
            on_file(k, Path(scans[i]), outs[k], kept)
    return outs
