"""The ASGD step on flat arrays of real scalars: the hot loop, apart from the API.

Arrays are 1-D, C-contiguous and of one real dtype (a complex parameter is passed as its real
view). The step walks them in cache-sized blocks: the temporaries of a block live in a small
per-thread :class:`Workspace`, so each element's θ, g, ax and buf cross the memory bus about once
per step and nothing proportional to the model is allocated. Blocks are independent, so splitting
them over threads (NumPy releases the GIL in its loops) changes no bit.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from optimized.fma import FmaScratch, fused_multiply_add

__all__ = ["BLOCK_BYTES", "DEFAULT_THREADS", "StepScalars", "Task", "block_length", "run_tasks"]

BLOCK_BYTES: Final = 1 << 20
"""The default block: 1 MiB of each array (262,144 float32 or 131,072 float64 elements). NumPy
calls on blocks this long take tens of microseconds, so their fixed cost and the GIL hand-overs
between two threads stay small, while a block's four arrays still fit in the shared L3 cache.
Measured on the project's machine: 65,536 float32 elements per block were 1.3 to 1.5 times
slower with two threads, because every short call risks a GIL hand-over."""
DEFAULT_THREADS: Final = min(2, os.cpu_count() or 1)
_MIN_BYTES_PER_THREAD: Final = BLOCK_BYTES  # below this, a second thread costs more than it saves


def block_length(dtype: np.dtype[Any], block_size: int | None = None) -> int:
    """Elements per block for arrays of ``dtype``: ``block_size``, or :data:`BLOCK_BYTES` worth."""
    return block_size if block_size is not None else max(1, BLOCK_BYTES // dtype.itemsize)


def _coefficient(value: float, dtype: np.dtype[Any]) -> np.ndarray:
    """``value`` rounded to ``dtype`` as a read-only 0-d array: NumPy takes a 0-d array operand
    faster than a scalar, and computes with it in the arrays' dtype just the same."""
    coefficient = np.array(value, dtype)
    coefficient.flags.writeable = False
    return coefficient


@dataclass(frozen=True)
class StepScalars:
    """The coefficients of one step in the arrays' dtype, and the profile's choices."""

    maximize: bool
    weight_decay: np.ndarray
    momentum: np.ndarray
    decay: np.ndarray
    """``1 - lambd * eta``, computed in binary64 and rounded to the dtype."""
    eta: np.ndarray
    mu: np.ndarray
    averaging: bool
    fused: bool
    """Lines 3 and 6 as fused multiply-adds (the torch profile)."""
    has_weight_decay: bool
    has_momentum: bool

    @classmethod
    def for_dtype(
        cls, dtype: np.dtype[Any], hyper: dict[str, Any], eta: float, mu: float, fused: bool
    ) -> StepScalars:
        weight_decay = _coefficient(hyper["weight_decay"], dtype)
        momentum = _coefficient(hyper["momentum"], dtype)
        return cls(
            maximize=hyper["maximize"],
            weight_decay=weight_decay,
            momentum=momentum,
            decay=_coefficient(1 - hyper["lambd"] * eta, dtype),
            eta=_coefficient(eta, dtype),
            mu=_coefficient(mu, dtype),
            averaging=mu != 1,
            fused=fused,
            has_weight_decay=bool(weight_decay != 0),
            has_momentum=bool(momentum != 0),
        )


class Workspace:
    """One thread's scratch for blocks of up to ``size`` elements of ``dtype``."""

    def __init__(self, size: int, dtype: np.dtype[Any]) -> None:
        self.work = np.empty(size, dtype)
        self.fma = FmaScratch(size, dtype) if dtype in (np.float32, np.float64) else None


_local = threading.local()


def _workspace(size: int, dtype: np.dtype[Any]) -> Workspace:
    """The calling thread's workspace for this block size and dtype, made on first use."""
    cache: dict[tuple[int, str], Workspace] = _local.__dict__.setdefault("workspaces", {})
    key = (size, dtype.str)
    if key not in cache:
        cache[key] = Workspace(size, dtype)
    return cache[key]


_multiply, _add, _subtract = np.multiply, np.add, np.subtract


def update_block(
    theta: np.ndarray,
    grad: np.ndarray,
    ax: np.ndarray | None,
    buf: np.ndarray | None,
    k: StepScalars,
    ws: Workspace,
    first_momentum_step: bool,
    materialize_ax: bool,
) -> None:
    """Lines 2 to 7 on one block, in place on ``theta``, ``ax`` and ``buf``; ``grad`` is read only.

    ``ax`` is ``None`` while averaging has not started: then it equals ``theta`` and is not kept.
    ``materialize_ax`` makes it a real copy first (the step on which averaging starts).

    One scratch array serves every line, and most operations run in place on it, so a block
    touches as few cache lines as the algorithm allows. Operand order never matters to a bit:
    IEEE addition and multiplication are commutative.
    """
    work = ws.work[: theta.size]
    if materialize_ax:
        assert ax is not None
        np.copyto(ax, theta)  # ax was theta until now
    g = grad
    if k.has_weight_decay:  # 2 and 3: g + wd * theta, g negated first to maximize
        if k.fused:
            if k.maximize:
                g = np.negative(g, out=work)
            fused_multiply_add(float(k.weight_decay), theta, g, work, ws.fma)
        else:
            _multiply(theta, k.weight_decay, work)
            (_subtract if k.maximize else _add)(work, g, work)  # wd * theta + (-g) is wd * theta - g
        g = work
    elif k.maximize:  # 2
        g = np.negative(g, out=work)
    if k.has_momentum:  # 4
        assert buf is not None
        if first_momentum_step:
            np.copyto(buf, g)
        else:
            _multiply(buf, k.momentum, buf)
            _add(buf, g, buf)
        g = buf
    _multiply(theta, k.decay, theta)  # 5
    if k.fused:  # 6: theta - eta * g
        fused_multiply_add(-float(k.eta), g, theta, theta, ws.fma)
    else:
        _multiply(g, k.eta, work)
        _subtract(theta, work, theta)
    if k.averaging:  # 7 (otherwise ax stays theta, lazily)
        assert ax is not None
        _subtract(theta, ax, work)
        _multiply(work, k.mu, work)
        _add(ax, work, ax)


class Task:
    """Lines 2 to 7 for one flat range (a segment): its arrays, coefficients and first-step flags."""

    __slots__ = ("ax", "buf", "first_momentum_step", "grad", "k", "materialize_ax", "theta")

    def __init__(
        self,
        theta: np.ndarray,
        grad: np.ndarray,
        ax: np.ndarray | None,
        buf: np.ndarray | None,
        k: StepScalars,
        first_momentum_step: bool = False,
        materialize_ax: bool = False,
    ) -> None:
        self.theta, self.grad, self.ax, self.buf, self.k = theta, grad, ax, buf, k
        self.first_momentum_step, self.materialize_ax = first_momentum_step, materialize_ax

    def run(self, start: int, stop: int, ws: Workspace) -> None:
        """Elements ``[start, stop)`` (one block) on the calling thread's workspace ``ws``."""
        theta, grad, ax, buf = self.theta, self.grad, self.ax, self.buf
        if start != 0 or stop != theta.size:
            theta, grad = theta[start:stop], grad[start:stop]
            ax = None if ax is None else ax[start:stop]
            buf = None if buf is None else buf[start:stop]
        update_block(theta, grad, ax, buf, self.k, ws, self.first_momentum_step, self.materialize_ax)


Block = tuple[Task, int, int]

_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="asgd")
    return _pools[threads]


def _run_blocks(blocks: list[Block], block_size: int | None) -> None:
    """One thread's share: its blocks in order, on its own workspaces."""
    workspaces: dict[np.dtype[Any], Workspace] = {}
    with np.errstate(all="ignore"):  # NaN and Inf propagate silently, as in torch
        for task, start, stop in blocks:
            dtype = task.theta.dtype
            ws = workspaces.get(dtype)
            if ws is None:
                ws = workspaces[dtype] = _workspace(block_length(dtype, block_size), dtype)
            task.run(start, stop, ws)


def run_tasks(tasks: list[Task], *, block_size: int | None = None, threads: int = DEFAULT_THREADS) -> None:
    """Run every task, block by block, the blocks of all of them shared out over up to ``threads``
    threads.

    Each thread takes a contiguous run of blocks holding about the same number of bytes. The
    result does not depend on ``block_size`` or ``threads``: every element goes through the same
    operations whichever block or thread it falls in.
    """
    blocks: list[Block] = []
    total = 0
    for task in tasks:
        size = task.theta.size
        length = block_length(task.theta.dtype, block_size)
        blocks += [(task, start, min(start + length, size)) for start in range(0, size, length)]
        total += task.theta.nbytes
    parts = max(1, min(threads, total // _MIN_BYTES_PER_THREAD))
    if parts == 1:
        _run_blocks(blocks, block_size)
        return
    schedule: list[list[Block]] = [[] for _ in range(parts)]
    done = 0
    for block in blocks:
        task, start, stop = block
        middle = done + (stop - start) * task.theta.itemsize // 2
        schedule[min(parts - 1, middle * parts // total)].append(block)
        done += (stop - start) * task.theta.itemsize
    futures = [_pool(threads).submit(_run_blocks, share, block_size) for share in schedule[1:]]
    _run_blocks(schedule[0], block_size)
    for future in futures:
        future.result()
