"""Memory model of the streaming pipeline: predict the peak before the run, choose the block.

The pipeline holds, at its peak, the process's baseline (interpreter, libraries), plus either
the registration sample (a few projections of every energy) or one block of detector rows with
everything derived from it. The terms below count the arrays each stage allocates; their
constants were checked against measured peak RSS (``benchmarks/run.py``; the issue's target is
25 %).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xtwin.errors import XtwinInputError

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
    "T": 1 << 40,
    "TB": 1 << 40,
    "TIB": 1 << 40,
}


def parse_bytes(text: str | int | float) -> int:
    """``"2GB"``, ``"512 MiB"``, ``"1.5G"`` or a number of bytes -> bytes (binary units)."""
    if isinstance(text, int | float):
        return int(text)
    s = text.strip().upper().replace(" ", "")
    num = s.rstrip("KMGTIB")
    unit = s[len(num) :]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value <= 0:
        raise XtwinInputError(f"memory limit {text!r} is not a size; write e.g. 2GB or 512MB")
    return int(value * _UNITS[unit])


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _libc() -> Any:
    """The C library (for glibc's allocator controls), or None where there is none."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        _LIBC = False
        name = ctypes.util.find_library("c")
        try:
            if name:
                _LIBC = ctypes.CDLL(name)
        except OSError:
            pass
    return _LIBC or None


_LIBC: Any = None


def share_one_arena() -> None:
    """Make threads started from now on allocate from glibc's main arena (``M_ARENA_MAX`` 1;
    a no-op elsewhere).

    Each thread otherwise gets an arena of its own, which keeps free memory that no other
    thread reuses: after the planning of a 1024-column scan 0.38 GiB stayed resident that
    way (0.49 GiB against 0.11 GiB with one arena), memory the blocks could not use. The
    pipeline allocates a few large arrays per slice, so the shared arena's lock costs
    nothing measurable.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, 1)  # M_ARENA_MAX


def release_freed_memory() -> None:
    """Return the allocator's free memory to the system now (glibc's ``malloc_trim``; a no-op
    elsewhere).

    glibc keeps free memory at the top of its heaps (up to twice its dynamic mmap threshold,
    64 MiB) and in freed chunks; called after the planning, whose arrays the blocks do not
    reuse, this keeps resident memory near the live memory that the model predicts (not
    between blocks: each block reuses what the last one freed, whose pages would otherwise
    be cleared again). Pinning a low mmap threshold instead would hand every array of a few
    MiB fresh pages, whose faults cost more than the arithmetic done in them.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@contextlib.contextmanager
def reusable_heap() -> Iterator[None]:
    """Within: every allocation from the heap, and what is freed kept for the next (glibc's
    ``M_MMAP_MAX`` 0 and a high ``M_TRIM_THRESHOLD``; a no-op elsewhere). After: the free
    memory handed back, and the thresholds glibc's dynamic rule ends at (32 MiB arrays from
    the heap, 64 MiB kept at its top).

    glibc maps every array above 32 MiB afresh and unmaps it when freed, so each costs its
    page faults again (the kernel clears its pages: 3.8 s of system time in the planning of
    1024 x 512 x 721 x 3, whose estimators make many such temporaries; 0.6-1.6 s with this).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        yield
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    try:
        yield
    finally:
        libc.mallopt(-4, 65536)  # glibc's default
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)
        release_freed_memory()


def available_bytes() -> int:
    """Memory available to a new allocation (Linux MemAvailable; 4 GiB where unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 4 << 30


@dataclass(frozen=True)
class MemoryPlan:
    """Block size and the predicted peak of each phase, in bytes."""

    rows_per_block: int
    baseline: int
    registration: int
    block: int
    limit: int | None

    @property
    def peak(self) -> int:
        """Predicted peak resident memory (with the allocator and library overhead)."""
        return predicted_peak(self.baseline, self.registration, self.block)

    def as_dict(self) -> dict[str, int | None]:
        """For provenance and benchmarks."""
        return {
            "rows_per_block": self.rows_per_block,
            "baseline_bytes": self.baseline,
            "registration_bytes": self.registration,
            "block_bytes": self.block,
            "predicted_peak_bytes": self.peak,
            "limit_bytes": self.limit,
        }


#: Allocator, FFT-plan and library overhead on top of the arrays counted (measured: the arrays
#: alone under-predict the peak by about 8 %, benchmarks/memory.py).
OVERHEAD_FACTOR = 1.10
OVERHEAD_BYTES = 48 << 20
#: What the libraries and the planning estimators' heap keep resident once they have run for
#: the first time in a process (FFT plans, compiled kernels, the heap's fragments), above the
#: resident memory before: measured 161-163 MiB on four scans of 512-1024 columns and about
#: 190 MiB on one of 256 columns whose run-out projection matching ran (2 threads, this
#: machine's development environment), about 260 MiB on that scan in a fresh install of the
#: same Python (CI); nothing more the second time in a process. The memory plan counts it
#: from the start of a process's first planning, so a run refused for memory is refused
#: before any pixel is read.
RUNTIME_BYTES = 288 << 20


#: Energies normalized at once while a block is read whole energy by whole energy (stripe
#: removal and flat-less data need every angle of a row at once), and in the planning.
READ_THREADS = 2
#: Chunks of angles per energy that a block's reading is cut into otherwise.
READ_CHUNKS = 8


def read_chunk_angles(n_angle: int, per_angle: bool = True) -> int:
    """Angles normalized (and resampled) at once by one reading thread: a chunk when each
    angle is normalized on its own (``per_angle``), else every angle."""
    return max(1, -(-n_angle // READ_CHUNKS)) if per_angle else n_angle


def read_parallelism(n_energy: int, n_angle: int, workers: int, step: int) -> int:
    """Threads reading a block: up to READ_THREADS whole energies, or one chunk of angles
    (``step`` angles) per worker."""
    if step >= n_angle:
        return max(1, min(n_energy, READ_THREADS, workers))
    return max(1, workers)


def predicted_peak(baseline: int, registration: int, block: int) -> int:
    """Peak resident memory predicted from the baseline and the two phases' arrays."""
    return int(baseline + OVERHEAD_FACTOR * max(registration, block) + OVERHEAD_BYTES)


#: The planning estimators' own temporaries, measured above their input (session 14: scans of
#: 512-1024 columns, 128-512 rows, 361-721 angles, 3 energies, the estimators' reusable heap):
#: the energy registration (reference spectra, the refinement's images, a magnified copy of
#: the sample) about 60 bytes per sample pixel; the axis search (its trial slices of the padded
#: field) 120-190 bytes per column squared on each of its threads.
REGISTRATION_BYTES_PER_PIXEL = 64
AXIS_SEARCH_BYTES_PER_COLUMN2 = 240
#: Projection matching (the run-out's horizontal offsets, when the quick look is not
#: conclusive): float64 sinograms of every energy on its rows (binned to its columns), per
#: value of one energy the aligned, reprojected and compared copies (24 bytes), the slices,
#: and the chunked steps' spectra, 64 bytes per value up to 64 MiB (measured 234 MB at 361
#: and 360 MB at 721 angles of 16 rows x 512 columns).
MATCH_BYTES_PER_VALUE, MATCH_CHUNK_BYTES_PER_VALUE, MATCH_CHUNK_BYTES = 24, 64, 64 << 20


def registration_bytes(
    shape: tuple[int, int, int, int],
    itemsize: int,
    n_sample: int,
    *,
    axis_search: bool = False,
    matching: tuple[int, int] | None = None,
) -> int:
    """The planning's largest arrays: the estimators' sample (float32 absorbance of every
    energy at ``n_sample`` angles) with the largest of the estimators' temporaries (one
    energy's normalization, the energy registration, the axis search when ``axis_search``,
    projection matching on ``matching = (rows, at most columns)`` when given), or the run-out
    quick look's rows."""
    n_e, n_a, n_r, n_c = shape
    # the run-out quick look: READ_THREADS energies, 8 rows' worth of angles at a time (raw,
    # absorbance and variance, and the normalization's temporaries)
    look = min(n_e, READ_THREADS) * 8 * n_a * n_c * (itemsize + 16)
    one = n_sample * n_r * n_c
    sampled = n_e >= 2 or axis_search  # the estimators' sample is read
    temps = [look]
    if sampled:
        temps.append(one * (itemsize + 24) + 8 * n_r * n_c * 8)
    if n_e >= 2:
        temps.append(one * REGISTRATION_BYTES_PER_PIXEL)
    if axis_search:
        threads = min(5, os.cpu_count() or 1)  # its rows on the machine's threads
        temps.append(threads * AXIS_SEARCH_BYTES_PER_COLUMN2 * n_c * n_c)
    if matching is not None:
        rows, cols = matching
        nb = n_c // -(-n_c // cols)
        values = rows * n_a * nb
        chunks = min(values * MATCH_CHUNK_BYTES_PER_VALUE, MATCH_CHUNK_BYTES)
        temps.append(values * (8 * n_e + MATCH_BYTES_PER_VALUE) + rows * nb * nb * 8 + chunks)
    return int((n_e * one * 4 if sampled else 0) + max(temps))


def block_bytes(
    shape: tuple[int, int, int, int],
    itemsize: int,
    rows: int,
    *,
    halo: int,
    workers: int,
    n_flat: int,
    tomography: bool,
    writer_overlap: bool = True,
    n_extra: int = 0,
    resampled: bool = True,
    per_angle: bool = True,
) -> int:
    """Peak memory of one block of ``rows`` detector rows.

    The block's large arrays are kept from block to block (``xtwin.pipeline._read.Scratch``):
    the float32 absorbance and variance of every energy, and two sets of results (mu and
    sigma of every energy and the per-voxel maps): a writer thread stores one block's while
    the next block is made into the other (one set when ``writer_overlap`` is False: a
    single block, which is read before its results exist). On top of them comes the largest
    of the three phases' temporaries:

    * reading: per chunk of angles normalized at once (whole energies unless
      ``per_angle``, see :func:`read_chunk_angles`), its raw window (``rows + halo`` rows),
      the absorbance and variance of the window before they are resampled (``resampled``:
      some energy is shifted or scaled, the projections realigned or their stripes removed,
      or there are no flats), the flats and a few small steps of arithmetic;
    * reconstruction: per worker thread the sinograms, their padded and cut complex64
      spectra, the gridding's weights and its fine grid;
    * retrieval: one slice's solve temporaries per thread.

    ``n_extra`` counts the per-voxel maps beyond the four standard ones (the multi-energy fit
    writes five more and works in float64 per slice).
    """
    n_e, n_a, _, n_c = shape
    step_angles = read_chunk_angles(n_a, per_angle and n_flat > 0)
    window = step_angles * (rows + halo) * n_c
    absorb = n_e * n_a * rows * n_c * 4 * 2
    par = read_parallelism(n_e, n_a, max(1, workers), step_angles)  # chunks at once
    from xtwin.prep.normalize import STEP_VALUES

    # a few float32 and complex temporaries of the normalization's and the shift's steps
    step = 32 * STEP_VALUES
    per_value = itemsize + (8 if resampled else 0)
    reading = par * (window * per_value + (n_flat + 4) * (rows + halo) * n_c * 4 + step)
    # per-voxel solve temporaries of one slice: float32 closed form, or float64 weighted fit
    per_voxel = 80 if n_e <= 3 else 8 * (4 * n_e + 20)
    if not tomography:
        return int(
            absorb
            + reading
            + n_e * rows * n_c * 4 * 4
            + rows * n_c * (8 * 30 + per_voxel + 4 * n_extra)
        )
    pix = n_c * n_c
    vol = n_e * rows * pix * 4 * 2
    results = rows * pix * (4 * (5 + n_extra) + 1)
    # per worker thread (each has its own reconstructor): the row's sinograms and variances
    # (float32), the packed pair's padded spectrum and its cut (complex64, 2 n and about
    # 1.125 n per angle), the spreading grid and its periodic fold (complex64, each
    # (GRID_OVERSAMPLING n)^2), the gridding's weights (40 bytes per polar point, about
    # n / 2 + 1 per angle after the cut) and the images with their variance maps
    from xtwin.recon.fourier import GRID_OVERSAMPLING

    per_worker = n_e * n_a * n_c * 4 * 2 + n_a * n_c * 8 * (2 + 1.125)
    per_worker += 2 * int((GRID_OVERSAMPLING * n_c + 4) ** 2 * 8) + n_a * (0.57 * n_c + 1) * 40
    per_worker += n_e * pix * 8
    solve = workers * pix * per_voxel
    if not writer_overlap:  # one block: it is read before its results exist
        return int(absorb + max(reading, vol + results + max(workers * per_worker, solve)))
    return int(absorb + 2 * (vol + results) + max(reading, workers * per_worker, solve))


def plan_memory(
    shape: tuple[int, int, int, int],
    itemsize: int,
    *,
    n_rows_out: int,
    halo: int,
    workers: int,
    n_flat: int,
    tomography: bool,
    n_sample: int,
    limit: int | None,
    baseline: int | None = None,
    n_extra: int = 0,
    resampled: bool = True,
    per_angle: bool = True,
    axis_search: bool = False,
    matching: tuple[int, int] | None = None,
) -> MemoryPlan:
    """Choose the largest block of rows whose predicted peak fits ``limit``.

    Parameters
    ----------
    shape : tuple
        Scan shape (n_energy, n_angle, n_row, n_col).
    itemsize : int
        Bytes per raw projection value.
    n_rows_out : int
        Rows to reconstruct.
    halo : int
        Extra rows read per block for the registration kernel.
    workers : int
        Threads reconstructing slices at once.
    n_flat : int
        Flat frames per energy.
    tomography : bool
        False for 2D XANES.
    n_sample : int
        Projections per energy read for registration.
    limit : int, optional
        Memory limit in bytes (default: half the available memory).
    baseline : int, optional
        Resident memory before the run (default: measured now).
    n_extra : int
        Per-voxel output maps beyond the standard four (see :func:`block_bytes`).
    resampled : bool
        Some energy is shifted or scaled, or the projections realigned (see
        :func:`block_bytes`; unknown before the registration: True).
    per_angle : bool
        Each angle is normalized on its own (False with stripe removal), see
        :func:`block_bytes`.
    axis_search : bool
        The planning searches the rotation axis.
    matching : tuple of int, optional
        The planning may align the projections by projection matching on (rows, at most
        columns) (see :func:`registration_bytes`).

    Returns
    -------
    MemoryPlan

    Raises
    ------
    XtwinInputError
        When not even one row fits, with the numbers.
    """
    base = current_rss_bytes() if baseline is None else baseline
    cap = limit if limit is not None else max(base + (1 << 28), available_bytes() // 2)
    reg = registration_bytes(shape, itemsize, n_sample, axis_search=axis_search, matching=matching)

    def blk(r: int) -> int:
        # several blocks: one block's results wait for the writer while the next is made
        return block_bytes(
            shape,
            itemsize,
            r,
            halo=halo,
            workers=workers,
            n_flat=n_flat,
            tomography=tomography,
            writer_overlap=r < n_rows_out,
            n_extra=n_extra,
            resampled=resampled,
            per_angle=per_angle,
        )

    def fits(r: int) -> bool:
        return predicted_peak(base, reg, blk(r)) <= cap

    if not fits(1):
        need = predicted_peak(base, reg, blk(1))
        raise XtwinInputError(
            f"this scan cannot be processed within {cap / 2**30:.2f} GiB: the smallest block "
            f"(one detector row) needs about {need / 2**30:.2f} GiB ({base / 2**30:.2f} GiB "
            f"baseline, {reg / 2**30:.2f} GiB for the planning's estimators, "
            f"{blk(1) / 2**30:.2f} GiB per one-row block); raise --memory-limit, use fewer "
            "--workers, or bin the detector"
        )
    n_all = max(1, n_rows_out)
    if fits(n_all):
        lo = n_all
    else:
        lo, hi = 1, n_all - 1
        while lo < hi:  # largest fitting block (monotonic while blocks overlap the writer)
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
    blk_bytes = blk(lo)
    return MemoryPlan(int(lo), int(base), int(reg), int(blk_bytes), limit)


def even_blocks(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """Split rows ``[lo, hi)`` into consecutive blocks of at most ``size`` rows."""
    size = max(1, int(size))
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]


__all__ = [
    "MemoryPlan",
    "available_bytes",
    "block_bytes",
    "current_rss_bytes",
    "even_blocks",
    "parse_bytes",
    "plan_memory",
    "registration_bytes",
    "release_freed_memory",
    "reusable_heap",
    "share_one_arena",
]
