"""Reading detector rows: one windowed reader (halo, darks, per-angle run-out) for every
step that reads the scan, and the block reader that registers every energy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from xtwin._threads import thread_map
from xtwin.io.direct import aligned_empty
from xtwin.io.source import ScanSource
from xtwin.memory import read_chunk_angles, read_parallelism
from xtwin.prep.normalize import NormalizationReport, normalize_block
from xtwin.prep.register import apply_shift, apply_transform
from xtwin.prep.rings import remove_stripes
from xtwin.shifts import LANCZOS_A, scaled_source_rows, source_rows

if TYPE_CHECKING:
    from xtwin.pipeline._context import BlockContext


class Scratch:
    """Block-sized arrays kept from one block to the next.

    A fresh array of hundreds of MB costs its page faults (on virtual machines about a second
    per GB of system time, more than the arithmetic done in it). An array handed out under a
    name is overwritten by the next call that asks for that name: its user must be done with
    it by then (the pipeline gives its blocks' results two scratches in turn, and waits for
    the writer of the block before last).
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
            buf = self._bufs[name] = aligned_empty(n, dt)  # the Li map's rows go out unstaged
        return buf[:n].reshape(shape)


def array(scratch: Scratch | None, name: str, shape: tuple[int, ...], dtype=np.float32):
    """``scratch``'s array under ``name``, or a fresh one without a scratch."""
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
) -> tuple[np.ndarray, np.ndarray, NormalizationReport]:
    """``-ln(I/I0)`` and its variance of detector rows ``[lo, hi)`` of one energy (all angles
    or ``angles``); ``dark`` is the mean dark of those rows when the caller has it already,
    ``out`` two float32 arrays to write into (used when the scan has flats)."""
    h = source.header
    return normalize_block(
        source.projections(energy, lo, hi, angles),
        source.flats(energy, lo, hi),
        source.dark_mean(lo, hi) if dark is None else dark,
        counts_per_photon=h.counts_per_photon,
        exposure_ratio=exposure_ratio,
        out=out,
    )


@dataclass
class RowReader:
    """Rows of one energy, normalized, with the dark of the whole detector read once (when
    first needed); rows outside the detector repeat the edge rows (as :class:`ScanSource`
    does)."""

    source: ScanSource
    ratio: np.ndarray

    def __post_init__(self) -> None:
        self.n_rows = self.source.header.shape[2]

    @cached_property
    def dark(self) -> np.ndarray | None:
        """The mean dark of the whole detector (None without darks)."""
        return self.source.dark_mean(0, self.n_rows)

    def rows(
        self, energy: int, r0: int, r1: int, angles: slice | None = None
    ) -> tuple[np.ndarray, np.ndarray, NormalizationReport]:
        """Absorbance and variance of rows ``[r0, r1)`` (any range; the darks clipped), at
        every angle or at ``angles``."""
        d = None if self.dark is None else self.dark[np.clip(np.arange(r0, r1), 0, self.n_rows - 1)]
        return normalized_rows(
            self.source, energy, r0, r1, float(self.ratio[energy]), angles=angles, dark=d
        )

    def aligned_row(self, energy: int, row: int, offsets: np.ndarray | None) -> np.ndarray:
        """The sinogram (n_angle, n_col) of detector ``row`` with each projection's
        ``offsets`` (n_angle, 2: rows, cols) undone; read as it is without offsets."""
        from xtwin.prep.runout import shift_per_angle

        if offsets is None:
            return self.rows(energy, row, row + 1)[0][:, 0]
        halo = int(np.ceil(np.abs(offsets[:, 0]).max())) + LANCZOS_A + 1
        p = self.rows(energy, row - halo, row + halo + 1)[0]
        return shift_per_angle(p, row - halo, row, row + 1, offsets)[:, 0]


def read_block(
    ctx: BlockContext, lo: int, hi: int, *, variance: bool = True, scratch: Scratch | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Absorbance and its variance of detector rows ``[lo, hi)``, every energy, registered
    (but for :meth:`BlockContext.reconstruction_shifts`, which the reconstruction undoes)
    and with the run-out undone: (n_energy, n_angle, rows, n_col) float32 each (in
    ``scratch``'s arrays when given), and the number of clamped values."""
    if ctx.projection_offsets is None:
        return _read_registered(ctx, lo, hi, variance, scratch)
    from xtwin.prep.runout import shift_per_angle

    # run-out: a wider block registered, then each angle shifted
    n_e, n_a, _, n_c = ctx.source.header.shape
    halo = int(np.ceil(np.abs(ctx.projection_offsets[..., 0]).max())) + LANCZOS_A + 1
    inner = dataclasses.replace(ctx, projection_offsets=None)
    p_ext, v_ext, clamped = _read_registered(inner, lo - halo, hi + halo, variance, None)
    p_out = array(scratch, "p", (n_e, n_a, hi - lo, n_c))
    v_out = array(scratch, "v", p_out.shape) if variance else v_ext
    for e in range(n_e):
        off = ctx.projection_offsets[e]
        p_out[e] = shift_per_angle(p_ext[e], lo - halo, lo, hi, off)
        if variance:
            v_out[e] = shift_per_angle(v_ext[e], lo - halo, lo, hi, off, variance=True)
    return p_out, v_out, clamped


def _windows(ctx: BlockContext, lo: int, hi: int) -> list[tuple[int, int]]:
    """Each energy's source rows for output rows ``[lo, hi)`` under its shift and scale."""
    n_r = ctx.source.header.shape[2]
    out = []
    for e in range(ctx.source.header.shape[0]):
        dy, _, sc = ctx.transform(e)
        if sc != 1.0:
            out.append(scaled_source_rows(lo, hi, sc, dy, (n_r - 1) / 2.0))
        else:
            out.append(source_rows(lo, hi, dy) if dy else (lo, hi))
    return out


def _read_registered(
    ctx: BlockContext, lo: int, hi: int, variance: bool, scratch: Scratch | None
) -> tuple[np.ndarray, np.ndarray, int]:
    src = ctx.source
    n_e, n_a, _, n_c = src.header.shape
    p_all = array(scratch, "p", (n_e, n_a, hi - lo, n_c))
    v_all = array(scratch, "v", p_all.shape) if variance else np.empty((n_e, 0, 0, 0), np.float32)
    windows = _windows(ctx, lo, hi)
    darks = {w: src.dark_mean(*w) for w in set(windows)}  # one read per window
    # each angle is normalized and resampled on its own (with flats; stripe removal and the
    # noise estimate of flat-less data need every angle): the work is cut into chunks of
    # angles of every energy, which balance the threads when only some energy is resampled
    per_angle = src.header.n_flat > 0 and not ctx.remove_rings
    step = read_chunk_angles(n_a, per_angle)
    tasks = [(e, slice(a, min(a + step, n_a))) for e in range(n_e) for a in range(0, n_a, step)]

    def one(task: tuple[int, slice]) -> int:
        e, sl = task
        a, b = windows[e]
        direct = _is_direct(ctx, e) and variance  # normalized straight into place
        p, v, report = normalized_rows(
            src,
            e,
            a,
            b,
            float(ctx.exposure_ratio[e]),
            angles=None if step == n_a else sl,
            dark=darks[a, b],
            out=(p_all[e, sl], v_all[e, sl]) if direct else None,
        )
        if ctx.remove_rings:
            p = remove_stripes(p, v)[0]
        _place(ctx, e, (a, lo, hi), p, v, p_all[e, sl], v_all[e, sl] if variance else None)
        return report.clamped

    # side by side on threads (numpy releases the GIL): whole energies or chunks of angles
    # (one per worker); the memory model counts them
    par = read_parallelism(n_e, n_a, max(1, ctx.threads), step)
    return p_all, v_all, sum(thread_map(one, tasks, par))


def _is_direct(ctx: BlockContext, e: int) -> bool:
    dy, dx, sc = ctx.read_transform(e)
    return sc == 1.0 and not (dy or dx)


def _place(
    ctx: BlockContext,
    e: int,
    rows: tuple[int, int, int],
    p: np.ndarray,
    v: np.ndarray,
    p_out: np.ndarray,
    v_out: np.ndarray | None,
) -> None:
    """Energy ``e``'s window (from source row ``start``) registered into output rows
    ``[lo, hi)``: resampled under its magnification and shift, or copied (the column shift
    that the reconstruction undoes is left in)."""
    start, lo, hi = rows
    dy, dx, sc = ctx.read_transform(e)
    if sc != 1.0:  # magnification and shift: both axes resampled
        n_r = ctx.source.header.shape[2]
        p_out[...] = apply_transform(p, start, lo, hi, dy, dx, sc, n_rows=n_r)
        if v_out is not None:
            v_out[...] = apply_transform(v, start, lo, hi, dy, dx, sc, n_rows=n_r, variance=True)
    elif dy or dx:
        apply_shift(p, lo, hi, dy, dx, out=p_out)
        if v_out is not None:
            apply_shift(v, lo, hi, dy, dx, variance=True, out=v_out)
    else:
        if not np.may_share_memory(p, p_out):
            p_out[...] = p
        if v_out is not None and not np.may_share_memory(v, v_out):
            v_out[...] = v


def read_sample(
    reader: RowReader, angles: np.ndarray, threads: int
) -> tuple[np.ndarray, list[NormalizationReport]]:
    """The estimators' sample: every energy's absorbance of the whole detector at
    ``angles``, (n_energy, n_sample, n_row, n_col) float32, and each energy's report."""
    n_e, _, n_r, n_c = reader.source.header.shape
    sample = np.empty((n_e, angles.size, n_r, n_c), dtype=np.float32)

    def one(e: int) -> NormalizationReport:
        var = np.empty(sample.shape[1:], np.float32)
        return normalized_rows(
            reader.source,
            e,
            0,
            n_r,
            float(reader.ratio[e]),
            angles=angles,
            dark=reader.dark,
            out=(sample[e], var),
        )[2]

    return sample, thread_map(one, range(n_e), threads)
