"""The memory-traffic bound: a compiled loop that moves the step's minimal bytes and nothing else.

It reads θ, g and (averaging) ax, writes θ and ax, with one addition per array, on the same
threads and shares as the optimizer (:func:`optimized.threads.run_shared`). No ASGD step can move
fewer bytes, so ``optimized / bound`` says how far the step is from the machine's limit.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from optimized.plan import StepScalars, Task
from optimized.threads import DEFAULT_THREADS, Piece, run_shared

_NO_SCALARS = StepScalars(False, 0.0, 0.0, 1.0, 0.0, 1.0, False)


@numba.njit(nogil=True, cache=True)  # type: ignore[misc]
def _stream_averaging(theta, grad, ax, start, stop):  # type: ignore[no-untyped-def]
    theta, grad, ax = theta[start:stop], grad[start:stop], ax[start:stop]  # vectorizable, as the kernel
    for i in range(theta.size):
        t = theta[i] + grad[i]
        theta[i] = t
        ax[i] = ax[i] + t


@numba.njit(nogil=True, cache=True)  # type: ignore[misc]
def _stream(theta, grad, ax, start, stop):  # type: ignore[no-untyped-def]
    theta, grad, ax = theta[start:stop], grad[start:stop], ax[start:stop]
    for i in range(theta.size):
        t = theta[i] + grad[i]
        theta[i] = t
        ax[i] = t  # torch and the optimizer keep ax = θ while averaging is off


def bound_step(
    sizes: list[int], dtype: str, averaging: bool, threads: int = DEFAULT_THREADS
) -> Callable[[], None]:
    """One step of the bound over arrays of ``sizes`` elements."""
    rng = np.random.default_rng(0)
    tasks = []
    for n in sizes:
        theta, grad = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
        tasks.append(Task(theta, grad, np.zeros(n, dtype), None, _NO_SCALARS))
    loop = _stream_averaging if averaging else _stream

    def run_share(share: list[Piece]) -> None:
        for task, start, stop in share:
            loop(task.theta, task.grad, task.ax, start, stop)

    def step() -> None:
        run_shared(run_share, tasks, threads)

    return step


def bytes_moved(sizes: list[int], dtype: str, averaging: bool) -> int:
    """Bytes a step must move at least: read θ, g (and ax), write θ and ax."""
    return sum(sizes) * np.dtype(dtype).itemsize * (5 if averaging else 4)
