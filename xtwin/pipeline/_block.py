"""One block of detector rows: read (normalize, register, undo the run-out) -> reconstruct
-> retrieve, an explicit list of steps over the same step functions the in-memory API calls
(:func:`xtwin.recon.volume.SlicePool.run`, :func:`xtwin.retrieve.voxels.retrieve_row`).

Every voxel depends only on its own rows (the registration kernel is finite and the block is
read with a halo), so the result is the same, bit for bit, whatever the block size, the
number of threads, or whether the blocks ran on a dask cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xtwin.pipeline._context import BlockContext
from xtwin.pipeline._read import Scratch, array, read_block
from xtwin.recon.volume import field_of_view_disc
from xtwin.retrieve.three_energy import Solution
from xtwin.retrieve.voxels import FIELDS, retrieve_row


@dataclass(frozen=True)
class BlockResult:
    """Reconstruction and masked solution for output rows ``[lo, hi)`` (detector rows)."""

    lo: int
    hi: int
    mu: np.ndarray
    mu_sigma: np.ndarray
    solution: Solution | None  # None for a single energy (attenuation only)
    mask: np.ndarray
    clamped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


#: A step's array not made yet (or released).
_NONE = np.empty(0, np.float32)


def _none() -> np.ndarray:
    return _NONE


@dataclass
class _Block:
    """A block's arrays as its steps fill them."""

    lo: int
    hi: int
    p: np.ndarray = field(default_factory=_none)
    v: np.ndarray = field(default_factory=_none)
    clamped: int = 0
    mu: np.ndarray = field(default_factory=_none)
    mu_sigma: np.ndarray = field(default_factory=_none)
    out: dict[str, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray = field(default_factory=_none)


def compute_block(
    ctx: BlockContext,
    lo: int,
    hi: int,
    pool=None,
    before_reconstruct: Callable[[], None] | None = None,
    scratch: Scratch | None = None,
    out_scratch: Scratch | None = None,
) -> BlockResult:
    """Read, reconstruct and retrieve detector rows ``[lo, hi)``.

    ``pool`` (a :class:`xtwin.recon.volume.SlicePool`) is made here when not given;
    ``before_reconstruct`` is called once the block is read (the executor hands the previous
    block to its writer there and waits for the block before last, whose arrays it reuses);
    ``scratch`` and ``out_scratch`` hold arrays reused from block to block for the absorbance
    and for the results (views of it, valid until the next call with the same one).
    """
    own = pool is None
    pool = ctx.slice_pool() if own else pool
    res_scratch = out_scratch if out_scratch is not None else scratch
    retrieves = ctx.rules.calibration.mode != "attenuation"
    steps: list[tuple[str, Callable[[_Block], None]]] = [
        ("read_normalize_register", lambda b: _read(ctx, b, scratch)),
        ("reconstruct", lambda b: _reconstruct(ctx, b, pool, res_scratch)),
    ]
    if retrieves:
        steps.append(("retrieve", lambda b: _retrieve(ctx, b, pool, res_scratch)))
    block = _Block(lo, hi)
    seconds = {}
    try:
        for name, step in steps:
            if name == "reconstruct" and before_reconstruct is not None:
                before_reconstruct()  # timed by the caller
            t = time.perf_counter()
            step(block)
            seconds[name] = time.perf_counter() - t
    finally:
        if own and pool is not None:
            pool.close()
    o = block.out
    return BlockResult(
        lo,
        hi,
        block.mu,
        block.mu_sigma,
        Solution(*(o[f] for f in FIELDS)) if retrieves else None,
        block.mask,
        block.clamped,
        seconds,
        {f: o[f] for f in ctx.extras},
    )


def _read(ctx: BlockContext, b: _Block, scratch: Scratch | None) -> None:
    b.p, b.v, b.clamped = read_block(ctx, b.lo, b.hi, scratch=scratch)


def _reconstruct(ctx: BlockContext, b: _Block, pool, scratch: Scratch | None) -> None:
    """Every energy's slices (tomography), or the optical density as it is (2D)."""
    h = ctx.source.header
    if pool is not None:
        n_c = h.shape[3]
        shape = (h.shape[0], b.hi - b.lo, n_c, n_c)
        b.mu, b.mu_sigma = pool.run(
            b.p,
            b.v,
            ctx.mu_length_m,
            out=(array(scratch, "mu", shape), array(scratch, "mu_sigma", shape)),
            shifts_px=ctx.reconstruction_shifts(),
        )
    else:  # copies: the next block reads into the scratch while this one is written
        b.mu = b.p[:, 0].copy()
        b.mu_sigma = np.sqrt(b.v[:, 0])
    b.p = b.v = _NONE  # released: the scratch keeps its buffer for the next block


def _retrieve(ctx: BlockContext, b: _Block, pool, scratch: Scratch | None) -> None:
    """Every voxel's lithiation, row by row (small temporaries), on the slice threads."""
    h = ctx.source.header
    n_c = h.shape[3]
    img = (b.hi - b.lo,) + b.mu.shape[2:]
    b.out = {f: array(scratch, "out/" + f, img) for f in FIELDS + ctx.extras}
    b.mask = array(scratch, "out/mask", img, bool)
    unseen = ctx.lost_rows[b.lo : b.hi]  # rows not seen at every energy: no lithiation
    cols = ctx.lost_cols if ctx.lost_cols is not None and ctx.lost_cols.any() else None
    outside = None
    if h.is_tomography:  # voxels that leave the detector at some angle: not measured
        outside = ~field_of_view_disc(n_c, ctx.center_offset_px)
        outside = outside if outside.any() else None

    def one(k: int) -> None:
        retrieve_row(
            b.mu[:, k],
            b.mu_sigma[:, k],
            ctx.rules,
            {f: a[k] for f, a in b.out.items()},
            b.mask[k],
            unseen=bool(unseen[k]),
            unseen_cols=cols,
            outside=outside,
        )

    if pool is not None:
        list(pool.map(one, range(img[0])))
    else:
        for k in range(img[0]):
            one(k)
