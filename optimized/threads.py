"""Sharing a step's flat ranges out over threads, in equal bytes, and waiting for all of them.

Every element of a step is independent of every other, so where a range is cut changes no bit.
The kernels release the GIL (NumPy in its loops, numba with ``nogil``), so the shares run in
parallel. A share is a list of :data:`Piece`: a task and the element range ``[start, stop)`` of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from optimized.plan import Task

__all__ = ["DEFAULT_THREADS", "MIN_BYTES_PER_THREAD", "Piece", "one_share", "run_shared", "shares"]

DEFAULT_THREADS: Final = min(2, os.cpu_count() or 1)
MIN_BYTES_PER_THREAD: Final = 1 << 20
"""Below this many parameter bytes per thread, handing work to another thread costs more than it
saves (a hand-over takes tens of microseconds on a shared two-core VM)."""
_CUT_ALIGNMENT: Final = 64  # cut ranges at cache-line boundaries, so threads never share a line

Piece = tuple[Task, int, int]

_pools: dict[int, ThreadPoolExecutor] = {}
# A forked child has only the thread that forked: the pools' workers are gone, and a step that
# handed them work would wait forever. The child makes new pools as its steps need them.
os.register_at_fork(after_in_child=_pools.clear)


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="asgd")
    return _pools[threads]


def _parts(total: int, threads: int) -> int:
    """How many threads share a step of ``total`` parameter bytes."""
    return max(1, min(threads, total // MIN_BYTES_PER_THREAD))


def one_share(tasks: Sequence[Task], threads: int) -> bool:
    """Whether the tasks run whole on the calling thread (too small to share out)."""
    return _parts(sum(task.theta.nbytes for task in tasks), threads) == 1


def shares(tasks: Sequence[Task], threads: int) -> list[list[Piece]]:
    """The tasks cut into at most ``threads`` shares of about equal bytes, in order."""
    total = sum(task.theta.nbytes for task in tasks)
    parts = _parts(total, threads)
    if parts == 1:
        return [[(task, 0, task.theta.size) for task in tasks if task.theta.size]]
    cuts = [total * k // parts for k in range(1, parts)]  # byte offsets where a new share starts
    result: list[list[Piece]] = [[]]
    offset = 0
    for task in tasks:
        size, itemsize = task.theta.size, task.theta.itemsize
        start = 0
        while cuts and cuts[0] < offset + size * itemsize:
            cut = (cuts.pop(0) - offset) // _CUT_ALIGNMENT * _CUT_ALIGNMENT // itemsize
            if cut > start:
                result[-1].append((task, start, cut))
                start = cut
            result.append([])
        if size > start:
            result[-1].append((task, start, size))
        offset += size * itemsize
    return result


def run_shared(run_share: Callable[[list[Piece]], None], tasks: Sequence[Task], threads: int) -> None:
    """``run_share`` on each share, the first on the calling thread; returns (or raises) only
    once every share has finished, so no thread touches the arrays after the call."""
    cut = shares(tasks, threads)
    if len(cut) == 1:
        run_share(cut[0])
        return
    futures: list[Future[None]] = [_pool(threads).submit(run_share, share) for share in cut[1:]]
    try:
        run_share(cut[0])
    finally:
        errors = [future.exception() for future in futures]  # waits for each
    for error in errors:
        if error is not None:
            raise error
