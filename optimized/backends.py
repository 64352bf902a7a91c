"""The production backends and how ``kernel=`` chooses one.

* ``"numba"``: :mod:`optimized.numba_kernel`, one compiled pass per element, on the threads of
  :mod:`optimized.threads`. float16 has no arithmetic in numba on the CPU, so float16 ranges go to
  the NumPy kernel (bit-identical, tested).
* ``"numpy"``: :mod:`optimized.numpy_kernel`, the fallback and cross-check.
* ``"auto"``: numba where it is installed, else NumPy. numba is imported in the background from
  the first step on, never with the package, and no step waits for it: steps run on the NumPy
  kernel (the same bits) until the compiled loops are loaded.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from optimized.numpy_kernel import NumpyBackend
from optimized.threads import DEFAULT_THREADS, Piece, run_shared
from reference.plan import Backend, Task

__all__ = ["KERNELS", "NumbaBackend", "NumpyBackend", "make_backend"]

KERNELS: Final = ("auto", "numba", "numpy")
_COMPILED: Final = "fd"  # the dtype characters of float32 and float64 (complex arrays come as real views)


class NumbaBackend:
    """The compiled kernel: one call per range and thread; ``threads`` changes no bit.

    With ``background`` (``kernel="auto"``) no step waits for numba: until numba is imported and
    the step's compiled loops are loaded (from numba's cache, or compiled) by a background thread
    started at the first step, steps run on the NumPy kernel, which gives the same bits. A numba
    that fails to import then leaves the NumPy kernel in charge, with a warning. Without it
    (``kernel="numba"``) the first step imports numba and an import error is raised.
    """

    packs = True

    def __init__(
        self, block_size: int | None = None, threads: int = DEFAULT_THREADS, *, background: bool = False
    ) -> None:
        self.threads, self.background = threads, background
        self._numpy = NumpyBackend(block_size, threads)  # float16, and the steps before numba
        self._kernel: Any = None
        self._loader: threading.Thread | None = None
        self._error: Exception | None = None
        self._warned = False

    @property
    def name(self) -> str:
        return "numpy" if self._error is not None else "numba"

    def __getstate__(self) -> dict[str, Any]:
        """Copied without the loader thread; a copy loads the compiled kernels again."""
        return {**self.__dict__, "_kernel": None, "_loader": None}

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Wait for a background load of numba to end; whether the compiled kernel is in use."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self._kernel is not None

    def _load(self, tasks: Sequence[Task]) -> None:
        """Import the compiled kernels and make (or load from the cache) the loops ``tasks`` need."""
        from optimized.numba_kernel import kernel

        for task in tasks:
            if task.theta.dtype.char in _COMPILED:
                loop, coefficients = self._loop(task, kernel)
                empty = task.theta[:0]
                loop(empty, empty, empty, empty, 0, 0, *coefficients)
        self._kernel = kernel

    def _load_in_background(self, tasks: Sequence[Task]) -> None:
        try:
            self._load(tasks)
        except Exception as error:  # reported by the next step, which goes on with NumPy
            self._error = error

    def run(self, tasks: Sequence[Task]) -> None:
        if self._kernel is None and not self.background:
            self._load(tasks)
        if self._kernel is None:
            if self._error is not None and not self._warned:
                self._warned = True
                warnings.warn(f"numba failed to load ({self._error!r}); using the NumPy kernel",
                              RuntimeWarning, stacklevel=4)  # fmt: skip
            self._numpy.run(tasks)
            if self._loader is None:  # after the step: it never waits for the import
                shapes = [Task(t.theta[:0], t.grad[:0], t.ax[:0], None, t.scalars, t.first_momentum_step)
                          for t in tasks]  # fmt: skip
                self._loader = threading.Thread(
                    target=self._load_in_background, args=(shapes,), name="asgd-numba-loader", daemon=True
                )
                self._loader.start()
            return
        compiled = [task for task in tasks if task.theta.dtype.char in _COMPILED]
        if len(compiled) != len(tasks):
            self._numpy.run([task for task in tasks if task.theta.dtype.char not in _COMPILED])
        if not compiled:
            return
        loops: dict[tuple[int, str, bool], tuple[Any, tuple[Any, ...]]] = {}
        calls: dict[int, tuple[Any, tuple[Any, ...], np.ndarray]] = {}
        for task in compiled:
            key = (id(task.scalars), task.theta.dtype.char, task.first_momentum_step)
            loop = loops.get(key)
            if loop is None:
                loop = loops[key] = self._loop(task)
            calls[id(task)] = (*loop, task.ax[:0] if task.buf is None else task.buf)
        run_shared(lambda share: self._run_share(share, calls), compiled, self.threads)

    @staticmethod
    def _run_share(share: list[Piece], calls: dict[int, tuple[Any, tuple[Any, ...], np.ndarray]]) -> None:
        """One thread's pieces, each one call of the compiled loop its task's choices select."""
        for task, start, stop in share:
            loop, coefficients, buf = calls[id(task)]
            loop(task.theta, task.grad, task.ax, buf, start, stop, *coefficients)

    def _loop(self, task: Task, kernel: Any = None) -> tuple[Any, tuple[Any, ...]]:
        """The compiled loop for a task's choices, and its coefficients rounded to its dtype."""
        s, scalar = task.scalars, task.theta.dtype.type
        wd, m = scalar(s.weight_decay), scalar(s.momentum)
        choices = (
            s.maximize,
            s.has_weight_decay,
            bool(m != 0),
            task.first_momentum_step,
            s.averaging,
            s.fused,
        )
        loop = (kernel or self._kernel)(*choices)
        return loop, (wd, m, scalar(s.decay), scalar(s.eta), scalar(s.mu))


def _numba_importable() -> bool:
    return importlib.util.find_spec("numba") is not None


def make_backend(kernel: str, block_size: int | None, threads: int) -> Backend:
    """The backend ``kernel`` names (``"auto"``: numba if it can be found, else NumPy)."""
    if kernel == "numpy" or (kernel == "auto" and not _numba_importable()):
        return NumpyBackend(block_size, threads)
    if kernel == "numba" and not _numba_importable():
        raise ValueError("Invalid kernel: 'numba' (numba is not installed; use kernel='numpy' or 'auto')")
    return NumbaBackend(block_size, threads, background=kernel == "auto")
