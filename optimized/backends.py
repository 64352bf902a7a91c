"""The production backends and how ``kernel=`` chooses one.

* ``"numba"``: :mod:`optimized.numba_kernel`, one compiled pass per element, on the threads of
  :mod:`optimized.threads`. float16 has no arithmetic in numba on the CPU, so float16 ranges go to
  the NumPy kernel (bit-identical, tested).
* ``"numpy"``: :mod:`optimized.numpy_kernel`, the fallback and cross-check.
* ``"auto"``: numba where it is installed, else NumPy. numba is imported in the background from
  the first step on, never with the package, and no step waits for it: a step whose compiled loops
  are not made yet runs on the NumPy kernel (the same bits) while they are made.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from optimized.numpy_kernel import NumpyBackend
from optimized.plan import Backend, Task
from optimized.threads import DEFAULT_THREADS, Piece, one_share, run_shared

__all__ = ["KERNELS", "NumbaBackend", "NumpyBackend", "make_backend", "numba_installed"]

KERNELS: Final = ("auto", "numba", "numpy")
_COMPILED: Final = "fd"  # the dtype characters of float32 and float64 (complex arrays come as real views)
_NO_BUFFER: Final = {char: np.empty(0, char) for char in _COMPILED}
"""The momentum buffer a loop without momentum is given (it never reads it)."""
_UNSEEN: Final[Any] = object()


Variant = tuple[str, bool, bool, bool, bool, bool, bool, bool]
Loop = tuple[Any, tuple[float, ...]]
"""A compiled loop and the coefficients it is called with."""
"""A compiled loop: the dtype character, then maximize, weight decay, momentum, first momentum
step, averaging, fused, foreach (the arguments of :func:`optimized.numba_kernel.kernel`)."""


def _variant(task: Task) -> Variant:
    s = task.scalars
    return (task.theta.dtype.char, s.maximize, s.has_weight_decay, task.buf is not None,
            task.first_momentum_step, s.averaging, s.fused, s.foreach)  # fmt: skip


def _followers(variant: Variant) -> list[Variant]:
    """The variant and those a run reaches from it by itself (momentum after its first step,
    averaging once t0 is passed), made ahead so that those steps need not wait either."""
    char, maximize, decay, momentum, first, averaging, fused, foreach = variant
    firsts = {first, False} if momentum else {False}
    return [
        (char, maximize, decay, momentum, f, a, fused, foreach)
        for f in sorted(firsts)
        for a in sorted({averaging, True})
    ]


_loading: set[threading.Thread] = set()
"""The background loaders at work (``kernel="auto"``)."""
_LOADER_JOIN_SECONDS: Final = 600.0


def _finish_loading_before_fork() -> None:
    """Let the background loaders finish before a fork. A child has only the forking thread: a
    loader cut off in the middle of ``import numba`` would leave numba's import lock held for good
    (``import numba`` and every numba step in the child would wait forever), and its optimizers on
    the NumPy kernel. Waiting for it costs a fork made in the first second or so of a process's
    first step that long; a loader that has not finished in ten minutes (hung) is waited for no
    longer."""
    for loader in list(_loading):
        if loader.is_alive() and loader is not threading.current_thread():  # started, not us
            loader.join(_LOADER_JOIN_SECONDS)


os.register_at_fork(before=_finish_loading_before_fork)


class NumbaBackend:
    """The compiled kernel: one call per range and thread; ``threads`` changes no bit.

    With ``background`` (``kernel="auto"``) no step waits for numba: a step whose compiled loops are
    not ready yet runs on the NumPy kernel, which gives the same bits, while a background thread
    imports numba and makes the loops (from numba's cache, or compiled). A numba that fails to load
    then leaves the NumPy kernel in charge, with a warning. Without it (``kernel="numba"``) a step
    makes the loops it needs, and an import error is raised.
    """

    packs = True

    def __init__(
        self, block_size: int | None = None, threads: int = DEFAULT_THREADS, *, background: bool = False
    ) -> None:
        self.threads, self.background = threads, background
        self._numpy = NumpyBackend(block_size, threads)  # float16, and steps whose loops are not ready
        self._kernel: Any = None
        self._fill_row: Any = None
        self._ready: set[Variant] = set()
        self._loader: threading.Thread | None = None
        self._error: Exception | None = None
        self._warned = False

    @property
    def name(self) -> str:
        return "numpy" if self._error is not None else "numba"

    @property
    def block_size(self) -> int | None:
        return self._numpy.block_size

    def __getstate__(self) -> dict[str, Any]:
        """Copied without the loader thread; a copy makes its loops again."""
        return {**self.__dict__, "_kernel": None, "_fill_row": None, "_ready": set(), "_loader": None}

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Wait for the background loader to finish (a hook for tests and benchmarks); whether
        the compiled kernel is in use."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self._kernel is not None

    def _make(self, variants: Sequence[Variant]) -> None:
        """Import the compiled kernels and make (or load from the cache) the loops ``variants`` name."""
        from optimized.numba_kernel import fill_row, kernel

        # Before any loop is marked ready: a step may use them at once.
        self._kernel, self._fill_row = kernel, fill_row
        table = np.zeros((1, 6), np.int64)
        for char in {variant[0] for variant in variants}:  # fill_row, for each dtype
            empty = np.empty(0, np.dtype(char))
            fill_row(table, 0, empty, empty, empty, empty, 0, 0)
        for variant in variants:
            if variant in self._ready:
                continue
            kernel(*variant)(table[:0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
            self._ready.add(variant)

    def _make_in_background(self, variants: Sequence[Variant]) -> None:
        try:
            self._make(variants)
        except Exception as error:  # reported by the next step, which goes on with NumPy
            self._error = error
        finally:
            _loading.discard(threading.current_thread())

    def run(self, tasks: Sequence[Task]) -> None:
        compiled = [task for task in tasks if task.theta.dtype.char in _COMPILED]
        if len(compiled) != len(tasks):
            self._numpy.run([task for task in tasks if task.theta.dtype.char not in _COMPILED])
        if not compiled:
            return
        loops: dict[tuple[int, str, bool, bool], Loop | None] = {}
        calls: dict[int, tuple[Loop, np.ndarray]] = {}
        missing: set[Variant] = set()
        for task in compiled:
            char, buf = task.theta.dtype.char, task.buf
            key = (id(task.scalars), char, task.first_momentum_step, buf is None)
            loop = loops.get(key, _UNSEEN)
            if loop is _UNSEEN:
                variant = _variant(task)
                if variant not in self._ready:
                    if self.background:
                        missing.add(variant)
                        loops[key] = None
                        continue
                    self._make([variant])
                loop = loops[key] = self._loop(task, variant)
            if loop is not None:
                calls[id(task)] = (loop, task.theta if buf is None else buf)
        if missing:
            # The same bits from NumPy; the loops are made after it, so that the import of numba
            # does not compete with this step for the interpreter.
            self._numpy.run(compiled)
            self._start_making(missing)
            return
        run_shared(lambda share: self._run_share(share, calls), compiled, self.threads)

    def run_whole(self, tasks: Sequence[Task], table: np.ndarray) -> bool:
        """Run ``tasks`` whole, in one compiled call on ``table``, their rows (the caller's, kept
        from step to step: reading addresses costs more than a small tensor's step), where that
        can be: the tasks share their scalars, dtype and loop, the loop is made and they are too
        small to share out over threads. Whether it ran them (else nothing happened)."""
        first = tasks[0]
        char = first.theta.dtype.char
        variant = _variant(first)
        if char not in _COMPILED or variant not in self._ready or not one_share(tasks, self.threads):
            return False
        scalars, first_momentum_step = first.scalars, first.first_momentum_step
        momentum = first.buf is not None
        for task in tasks:
            if (
                task.scalars is not scalars
                or task.theta.dtype.char != char
                or (task.buf is not None) is not momentum
                or task.first_momentum_step is not first_momentum_step
            ):
                return False
        function, coefficients = self._loop(first, variant)
        function(table, *coefficients)
        return True

    def _start_making(self, needed: set[Variant]) -> None:
        """Have the loops ``needed`` (and those a run reaches next) made in the background, unless
        numba failed to load: then say so, once."""
        if self._error is not None:
            if not self._warned:
                self._warned = True
                warnings.warn(f"numba failed to load ({self._error!r}); using the NumPy kernel",
                              RuntimeWarning, stacklevel=5)  # fmt: skip
            return
        if self._loader is None or not self._loader.is_alive():
            variants = sorted({follower for variant in needed for follower in _followers(variant)})
            self._loader = threading.Thread(
                target=self._make_in_background, args=(variants,), name="asgd-numba-loader", daemon=True
            )
            _loading.add(self._loader)
            self._loader.start()

    def _run_share(self, share: list[Piece], calls: dict[int, tuple[Loop, np.ndarray]]) -> None:
        """One thread's pieces: one compiled call on a table of rows per loop its tasks select."""
        by_loop: dict[int, tuple[Loop, list[tuple[Piece, np.ndarray]]]] = {}
        for piece in share:
            loop, buf = calls[id(piece[0])]
            by_loop.setdefault(id(loop), (loop, []))[1].append((piece, buf))
        fill_row = self._fill_row
        for (function, coefficients), rows in by_loop.values():
            table = np.empty((len(rows), 6), np.int64)
            for row, ((task, start, stop), buf) in enumerate(rows):
                fill_row(table, row, task.theta, task.grad, task.ax, buf, start, stop)
            function(table, *coefficients)

    def _loop(self, task: Task, variant: Variant) -> Loop:
        """The compiled loop of a task's variant, and its coefficients rounded to its dtype (as
        Python floats, which numba takes faster than NumPy scalars)."""
        s = task.scalars
        coefficients = (s.weight_decay, s.momentum, s.decay, s.lambd, s.eta, s.mu)
        rounded: list[float] = np.array(coefficients, task.theta.dtype).tolist()  # one rounding each
        return self._kernel(*variant), tuple(rounded)


def numba_installed() -> bool:
    """Whether numba can be found (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def make_backend(kernel: str, block_size: int | None, threads: int) -> Backend:
    """The backend ``kernel`` names (``"auto"``: numba if it can be found, else NumPy)."""
    if kernel == "numpy" or (kernel == "auto" and not numba_installed()):
        return NumpyBackend(block_size, threads)
    if kernel == "numba" and not numba_installed():
        raise ValueError("Invalid kernel: 'numba' (numba is not installed; use kernel='numpy' or 'auto')")
    return NumbaBackend(block_size, threads, background=kernel == "auto")
