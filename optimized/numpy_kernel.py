"""The ASGD step in NumPy: lines 2 to 7 on flat arrays, block by block, nothing allocated.

Arrays are 1-D, C-contiguous and of one real dtype (a complex parameter is passed as its real
view). A range is walked in cache-sized blocks: the temporaries of a block live in a small
per-thread :class:`Workspace`, so each element's θ, g, ax and buf cross the memory bus about once
per NumPy pass and nothing proportional to the model is allocated. This kernel is the fallback where
numba cannot be imported, the kernel for float16, and an independent cross-check of the compiled one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from optimized.fma import FmaScratch, fused_multiply_add
from optimized.plan import StepScalars, Task
from optimized.threads import DEFAULT_THREADS, Piece, run_shared

__all__ = ["BLOCK_BYTES", "NumpyBackend", "RoundedScalars", "block_length"]

BLOCK_BYTES: Final = 1 << 20
"""The default block: 1 MiB of each array (262,144 float32 or 131,072 float64 elements). NumPy
calls on blocks this long take tens of microseconds, so their fixed cost and the GIL hand-overs
between two threads stay small, while a block's four arrays still fit in the shared L3 cache.
Measured on the project's machine: 65,536 float32 elements per block were 1.3 to 1.5 times
slower with two threads, because every short call risks a GIL hand-over."""


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
class RoundedScalars:
    """A step's scalars rounded to the arrays' dtype, and the choices they imply."""

    maximize: bool
    weight_decay: np.ndarray
    momentum: np.ndarray
    decay: np.ndarray
    lambd: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    averaging: bool
    fused: bool
    has_weight_decay: bool
    foreach: bool

    @classmethod
    def of(cls, dtype: np.dtype[Any], scalars: StepScalars) -> RoundedScalars:
        weight_decay = _coefficient(scalars.weight_decay, dtype)
        momentum = _coefficient(scalars.momentum, dtype)
        return cls(
            maximize=scalars.maximize,
            weight_decay=weight_decay,
            momentum=momentum,
            decay=_coefficient(scalars.decay, dtype),
            lambd=_coefficient(scalars.lambd, dtype),
            eta=_coefficient(scalars.eta, dtype),
            mu=_coefficient(scalars.mu, dtype),
            averaging=scalars.averaging,
            fused=scalars.fused,
            has_weight_decay=scalars.has_weight_decay,
            foreach=scalars.foreach,
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
    ax: np.ndarray,
    buf: np.ndarray | None,
    k: RoundedScalars,
    ws: Workspace,
    first_momentum_step: bool,
) -> None:
    """Lines 2 to 7 on one block, in place on ``theta``, ``ax`` and ``buf``; ``grad`` is read only.

    One scratch array serves every line, and most operations run in place on it, so a block
    touches as few cache lines as the algorithm allows. Operand order never matters to a bit:
    IEEE addition and multiplication are commutative.
    """
    work = ws.work[: theta.size]
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
    if buf is not None:  # 4 (the optimizer gives a buffer exactly when momentum is used)
        if first_momentum_step:
            np.copyto(buf, g)
        else:
            _multiply(buf, k.momentum, buf)
            _add(buf, g, buf)
        g = buf
    if k.foreach:  # torch's foreach formulation of 5 to 7, each line one fused rounding
        fused_multiply_add(float(k.lambd), theta, g, work, ws.fma)  # 5: g + lambd * theta
        fused_multiply_add(-float(k.eta), work, theta, theta, ws.fma)  # 6: theta - eta * g
        _subtract(theta, ax, work)
        fused_multiply_add(float(k.mu), work, ax, ax, ws.fma)  # 7: ax + mu * (theta - ax)
        return
    _multiply(theta, k.decay, theta)  # 5
    if k.fused:  # 6: theta - eta * g
        fused_multiply_add(-float(k.eta), g, theta, theta, ws.fma)
    else:
        _multiply(g, k.eta, work)
        _subtract(theta, work, theta)
    if k.averaging:  # 7
        _subtract(theta, ax, work)
        _multiply(work, k.mu, work)
        _add(ax, work, ax)
    else:
        np.copyto(ax, theta)


class NumpyBackend:
    """The NumPy kernel, blocked and threaded; ``block_size`` and ``threads`` change no bit."""

    name = "numpy"
    packs = True

    def __init__(self, block_size: int | None = None, threads: int = DEFAULT_THREADS) -> None:
        self.block_size, self.threads = block_size, threads

    def run(self, tasks: Sequence[Task]) -> None:
        coefficients: dict[tuple[int, np.dtype[Any]], RoundedScalars] = {}
        for task in tasks:
            key = (id(task.scalars), task.theta.dtype)
            if key not in coefficients:
                coefficients[key] = RoundedScalars.of(task.theta.dtype, task.scalars)
        run_shared(lambda share: self.run_share(share, coefficients), tasks, self.threads)

    def run_share(
        self, share: list[Piece], coefficients: dict[tuple[int, np.dtype[Any]], RoundedScalars]
    ) -> None:
        """One thread's pieces, block by block, on its own workspaces."""
        workspaces: dict[np.dtype[Any], Workspace] = {}
        with np.errstate(all="ignore"):  # NaN and Inf propagate silently, as in torch
            for task, start, stop in share:
                dtype = task.theta.dtype
                k = coefficients[id(task.scalars), dtype]
                length = block_length(dtype, self.block_size)
                ws = workspaces.get(dtype)
                if ws is None:
                    ws = workspaces[dtype] = _workspace(length, dtype)
                buf = task.buf
                for a in range(start, stop, length):
                    b = min(a + length, stop)
                    update_block(
                        task.theta[a:b], task.grad[a:b], task.ax[a:b], None if buf is None else buf[a:b],
                        k, ws, task.first_momentum_step,
                    )  # fmt: skip
