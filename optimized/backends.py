"""The production backends and how ``kernel=`` chooses one.

* ``"numba"``: :mod:`optimized.numba_kernel`, one compiled pass per element, on the threads of
  :mod:`optimized.threads`. float16 has no arithmetic in numba on the CPU, so float16 ranges go to
  the NumPy kernel (bit-identical, tested).
* ``"numpy"``: :mod:`optimized.numpy_kernel`, the fallback and cross-check.
* ``"auto"``: numba where it can be imported, else NumPy. numba is imported at the first step that
  needs it, not with the package.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from optimized.numpy_kernel import NumpyBackend
from optimized.threads import DEFAULT_THREADS, Piece, run_shared
from reference.plan import Backend, Task

__all__ = ["KERNELS", "NumbaBackend", "NumpyBackend", "make_backend"]

KERNELS: Final = ("auto", "numba", "numpy")
_COMPILED_DTYPES: Final = (np.dtype(np.float32), np.dtype(np.float64))


class NumbaBackend:
    """The compiled kernel: one call per range and thread; ``threads`` changes no bit.

    With ``fallback`` (``kernel="auto"``), a numba that is installed but fails to import turns
    this backend into the NumPy kernel, with a warning, instead of failing the step.
    """

    packs = True

    def __init__(self, block_size: int | None = None, threads: int = DEFAULT_THREADS, *,
                 fallback: bool = False) -> None:  # fmt: skip
        self.threads, self.fallback = threads, fallback
        self._numpy = NumpyBackend(block_size, threads)  # float16, and the fallback
        self._kernel: Any = None
        self._failed = False

    @property
    def name(self) -> str:
        return "numpy" if self._failed else "numba"

    def _load(self) -> bool:
        """Import the compiled kernel's module (and numba) once; whether it is usable."""
        if self._kernel is None and not self._failed:
            try:
                from optimized.numba_kernel import kernel
            except ImportError as error:
                if not self.fallback:
                    raise
                warnings.warn(f"numba failed to import ({error}); using the NumPy kernel", RuntimeWarning,
                              stacklevel=4)  # fmt: skip
                self._failed = True
            else:
                self._kernel = kernel
        return not self._failed

    def run(self, tasks: Sequence[Task]) -> None:
        if not self._load():
            self._numpy.run(tasks)
            return
        compiled = [task for task in tasks if task.theta.dtype in _COMPILED_DTYPES]
        if len(compiled) != len(tasks):
            self._numpy.run([task for task in tasks if task.theta.dtype not in _COMPILED_DTYPES])
        if not compiled:
            return
        loops: dict[tuple[int, np.dtype[Any], bool], tuple[Any, tuple[Any, ...]]] = {}
        calls: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        for task in compiled:
            key = (id(task.scalars), task.theta.dtype, task.first_momentum_step)
            call = loops.get(key)
            if call is None:
                call = loops[key] = self._loop(task)
            calls[id(task)] = call
        run_shared(lambda share: self._run_share(share, calls), compiled, self.threads)

    @staticmethod
    def _run_share(share: list[Piece], calls: dict[int, tuple[Any, tuple[Any, ...]]]) -> None:
        """One thread's pieces, each one call of the compiled loop its task's choices select."""
        for task, start, stop in share:
            loop, coefficients = calls[id(task)]
            buf = task.buf if task.buf is not None else task.ax[:0]
            loop(task.theta, task.grad, task.ax, buf, start, stop, *coefficients)

    def _loop(self, task: Task) -> tuple[Any, tuple[Any, ...]]:
        """The compiled loop for a task's choices, and its coefficients rounded to its dtype."""
        s, scalar = task.scalars, task.theta.dtype.type
        wd, m = scalar(s.weight_decay), scalar(s.momentum)
        loop = self._kernel(s.maximize, bool(wd != 0), bool(m != 0), task.first_momentum_step, s.averaging,
                            s.fused)  # fmt: skip
        return loop, (wd, m, scalar(s.decay), scalar(s.eta), scalar(s.mu))


def _numba_importable() -> bool:
    return importlib.util.find_spec("numba") is not None


def make_backend(kernel: str, block_size: int | None, threads: int) -> Backend:
    """The backend ``kernel`` names (``"auto"``: numba if it can be found, else NumPy)."""
    if kernel == "numpy" or (kernel == "auto" and not _numba_importable()):
        return NumpyBackend(block_size, threads)
    if kernel == "numba" and not _numba_importable():
        raise ValueError("Invalid kernel: 'numba' (numba is not installed; use kernel='numpy' or 'auto')")
    return NumbaBackend(block_size, threads, fallback=kernel == "auto")
