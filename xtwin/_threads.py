"""Deterministic parallel map on threads (numpy, scipy.fft and the NUFFT release the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def thread_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` computed on up to ``workers`` threads (default: the CPU
    count). Each item is computed alone, so the results do not depend on the thread count."""
    items = list(items)
    n = min(len(items), workers or os.cpu_count() or 1)
    if n <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, items))


def blas_on_one_thread(fn: Callable[..., R]) -> Callable[..., R]:
    """Run ``fn`` with BLAS on one thread. The pipeline parallelizes over slices and
    energies itself; a multithreaded BLAS inside its threads oversubscribes the cores, and
    OpenBLAS's idle threads busy-wait, taking CPU from the reconstruction (on 2 cores the
    retrieval took twice as long)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper
