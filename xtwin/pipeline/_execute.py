"""Running the blocks: threads in this process with a double-buffered writer, or tasks on
dask.distributed. The executor sees only the sink protocol."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Iterator

from xtwin._signals import check_interrupted
from xtwin._threads import blas_on_one_thread
from xtwin.errors import XtwinInputError
from xtwin.memory import even_blocks
from xtwin.pipeline._block import BlockResult, compute_block
from xtwin.pipeline._context import BlockContext
from xtwin.pipeline._plan import BlockPlan
from xtwin.pipeline._read import Scratch
from xtwin.pipeline._sinks import Sink
from xtwin.pipeline.events import OnEvent, RowsDone
from xtwin.pipeline.options import RunOptions


class _Recorder:
    """Writes a block into the sink, adds its seconds to ``timing`` and says so."""

    def __init__(self, sink: Sink, lo: int, on_event: OnEvent, timing: dict[str, float]):
        self.sink, self.lo, self.on_event, self.timing = sink, lo, on_event, timing
        self.clamped = 0

    def add(self, name: str, seconds: float) -> None:
        self.timing[name] = self.timing.get(name, 0.0) + seconds

    def __call__(self, res: BlockResult) -> None:
        t = time.perf_counter()
        self.sink.write(res.lo - self.lo, res)
        for k, v in res.seconds.items():
            self.add(k, v)
        self.add("write", time.perf_counter() - t)
        self.on_event(RowsDone(res.hi - res.lo))


@blas_on_one_thread
def run_blocks(
    plan: BlockPlan, sink: Sink, run: RunOptions, on_event: OnEvent, timing: dict[str, float]
) -> int:
    """Compute every unfinished block into ``sink``; return the clamped-value count and add
    the seconds of each stage to ``timing``."""
    lo, hi = plan.row_range
    blocks = [
        (a, b)
        for a, b in even_blocks(lo, hi, plan.memory.rows_per_block)
        if not sink.done[a - lo : b - lo].all()
    ]
    if sink.done.any():
        on_event(RowsDone(int(sink.done.sum())))
    record = _Recorder(sink, lo, on_event, timing)
    if run.scheduler:
        for res in _dask_blocks(plan.ctx, blocks, run):
            check_interrupted()
            record(res)
            record.clamped += res.clamped
        return record.clamped
    return _thread_blocks(plan.ctx, blocks, record)


def _thread_blocks(ctx: BlockContext, blocks: list[tuple[int, int]], record: _Recorder) -> int:
    """Blocks one after the other, their slices on threads; a finished block is written by a
    second thread while the next one is reconstructed. It is handed over once the next block
    is read (h5py holds one lock for every file, so a write during the read stalls the read:
    46 s instead of 17-19 at 1024 x 512 x 721 x 3). A block waits before it reconstructs for
    the write of the block before last, whose arrays it reuses (the memory model counts both).
    The allocator keeps what a block frees for the next, which needs the same: handed back to
    the system between blocks, its pages were cleared again by the kernel on every block (2.5
    s of CPU over the 43 blocks of 1024 x 512 x 721 x 3, the same peak).
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ctx.slice_pool()
    scratch = Scratch()
    slots = (Scratch(), Scratch())  # results: one being written while the next is made
    try:
        with ThreadPoolExecutor(1) as writer:
            pending: deque = deque()
            made: list[BlockResult] = []  # computed, not yet handed to the writer

            def hand_over_and_wait(keep: int = 1) -> None:
                while made:
                    pending.append(writer.submit(record, made.pop()))
                t = time.perf_counter()
                while len(pending) > keep:
                    pending.popleft().result()
                record.add("wait_for_writer", time.perf_counter() - t)

            for i, (a, b) in enumerate(blocks):
                check_interrupted()  # a SIGINT whose exception was swallowed stops here
                res = compute_block(
                    ctx, a, b, pool, hand_over_and_wait, scratch=scratch, out_scratch=slots[i % 2]
                )
                record.clamped += res.clamped
                made.append(res)
                del res
            hand_over_and_wait(0)
    finally:
        if pool is not None:
            pool.close()
    return record.clamped


@blas_on_one_thread
def _block_task(ctx: BlockContext, lo: int, hi: int) -> BlockResult:
    """One block on a dask worker (one thread per worker: BLAS on one thread too)."""
    return compute_block(ctx, lo, hi)


def _client(run: RunOptions):
    """A dask client: of a LocalCluster (``local``), or connected to the scheduler."""
    from dask.distributed import Client, LocalCluster

    if run.scheduler == "local":
        cluster = LocalCluster(
            n_workers=run.workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster
    try:
        return Client(run.scheduler, timeout="20s"), None
    except OSError as exc:
        raise XtwinInputError(
            f"cannot reach the dask scheduler {run.scheduler!r} "
            f"({exc}); check the address, or leave --scheduler out"
        ) from None


def _dask_blocks(
    ctx: BlockContext, blocks: list[tuple[int, int]], run: RunOptions
) -> Iterator[BlockResult]:
    """Blocks as tasks on dask.distributed, at most two per worker in flight."""
    from dask.distributed import as_completed

    client, cluster = _client(run)
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
