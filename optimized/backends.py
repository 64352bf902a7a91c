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
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from optimized.numpy_kernel import NumpyBackend
from optimized.threads import DEFAULT_THREADS, Piece, run_shared, share_count
from reference.plan import Task

__all__ = ["KERNELS", "NumbaBackend", "NumpyBackend", "make_backend", "numba_installed"]

KERNELS: Final = ("auto", "numba", "numpy")
_COMPILED: Final = "fd"  # the dtype characters of float32 and float64 (complex arrays come as real views)
_NO_ROWS: Final = np.zeros((0, 5), np.int64)
_NO_BUFFER: Final = {char: np.empty(0, char) for char in _COMPILED}
"""The momentum buffer a loop without momentum is given (it never reads it)."""


Variant = tuple[str, bool, bool, bool, bool, bool, bool, bool]
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
        self._ready: set[Variant] = set()
        self._loader: threading.Thread | None = None
        self._error: Exception | None = None
        self._over_rows: dict[Variant, Any] = {}
        """The loops over rows made so far (see :meth:`run_rows`), by variant."""
        self._rows_maker: threading.Thread | None = None
        self._rows_failed: set[Variant] = set()
        """Variants whose loop over rows could not be made: their steps stay on :meth:`run`."""
        self._warned = False

    @property
    def name(self) -> str:
        return "numpy" if self._error is not None else "numba"

    @property
    def block_size(self) -> int | None:
        return self._numpy.block_size

    def __getstate__(self) -> dict[str, Any]:
        """Copied without the loader thread; a copy makes its loops again."""
        return {**self.__dict__, "_kernel": None, "_ready": set(), "_loader": None, "_over_rows": {},
                "_rows_maker": None}  # fmt: skip

    def wait_until_loaded(self, timeout: float | None = None) -> bool:
        """Wait for the background loader to finish (a hook for tests and benchmarks); whether
        the compiled kernel is in use."""
        for thread in (self._loader, self._rows_maker):
            if thread is not None:
                thread.join(timeout)
        return self._kernel is not None

    def _make(self, variants: Sequence[Variant]) -> None:
        """Import the compiled kernels and make (or load from the cache) the loops ``variants`` name."""
        from optimized.numba_kernel import kernel

        self._kernel = kernel  # before any loop is marked ready: a step may use it at once
        for variant in variants:
            if variant in self._ready:
                continue
            empty = np.empty(0, np.dtype(variant[0]))
            kernel(*variant)(empty, empty, empty, empty, 0, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
            self._ready.add(variant)

    def _make_in_background(self, variants: Sequence[Variant]) -> None:
        try:
            self._make(variants)
        except Exception as error:  # reported by the next step, which goes on with NumPy
            self._error = error

    def run(self, tasks: Sequence[Task]) -> None:
        compiled = [task for task in tasks if task.theta.dtype.char in _COMPILED]
        if len(compiled) != len(tasks):
            self._numpy.run([task for task in tasks if task.theta.dtype.char not in _COMPILED])
        if not compiled:
            return
        loops: dict[tuple[int, str, bool, bool], tuple[Any, tuple[Any, ...]] | None] = {}
        calls: dict[int, tuple[Any, tuple[Any, ...], np.ndarray]] = {}
        missing: set[Variant] = set()
        for task in compiled:
            key = (id(task.scalars), task.theta.dtype.char, task.first_momentum_step, task.buf is None)
            if key not in loops:
                variant = _variant(task)
                if variant not in self._ready:
                    if self.background:
                        missing.add(variant)
                        loops[key] = None
                        continue
                    self._make([variant])
                loops[key] = self._loop(task, variant)
            loop = loops[key]
            if loop is not None:
                calls[id(task)] = (*loop, _NO_BUFFER[task.theta.dtype.char] if task.buf is None else task.buf)
        if missing:
            # The same bits from NumPy; the loops are made after it, so that the import of numba
            # does not compete with this step for the interpreter.
            self._numpy.run(compiled)
            self._start_making(missing)
            return
        run_shared(lambda share: self._run_share(share, calls), compiled, self.threads)

    def run_rows(self, tasks: Sequence[Task], rows: np.ndarray) -> None:
        """:meth:`run`, for tasks whose memory ``rows`` also gives: row ``k`` holds the addresses of
        task ``k``'s theta, grad, ax and buf (0: none) and its length. A step small enough for one
        thread whose tasks share one loop and one set of scalars is one compiled call over all of
        them (:func:`optimized.numba_kernel.kernel_over_rows`), once that loop is made; it is made
        in the background, and until then the step is :meth:`run`'s, with the same bits."""
        first = tasks[0]
        variant = _variant(first)
        small = share_count(int(rows[:, 4].sum()) * first.theta.itemsize, self.threads) == 1
        over_rows = self._over_rows.get(variant)
        if over_rows is not None and small and _alike(tasks):
            over_rows(rows, *_coefficients(first))
            return
        self.run(tasks)
        if (over_rows is None and small and variant in self._ready and variant not in self._rows_failed
                and _alike(tasks)):  # fmt: skip
            self._start_making_rows(variant)

    def _start_making_rows(self, variant: Variant) -> None:
        if self._rows_maker is not None and self._rows_maker.is_alive():
            return
        self._rows_maker = threading.Thread(
            target=self._make_rows, args=(variant,), name="asgd-numba-rows", daemon=True
        )
        self._rows_maker.start()

    def _make_rows(self, variant: Variant) -> None:
        """Compile the loop over rows of ``variant`` (a failure leaves its steps on :meth:`run`,
        which gives the same bits, and is not tried again)."""
        from optimized.numba_kernel import kernel_over_rows

        try:
            over_rows = kernel_over_rows(*variant)
            over_rows(_NO_ROWS, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
        except Exception:
            self._rows_failed.add(variant)
            return
        self._over_rows = {**self._over_rows, variant: over_rows}

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
            self._loader.start()

    @staticmethod
    def _run_share(share: list[Piece], calls: dict[int, tuple[Any, tuple[Any, ...], np.ndarray]]) -> None:
        """One thread's pieces, each one call of the compiled loop its task's choices select."""
        for task, start, stop in share:
            loop, coefficients, buf = calls[id(task)]
            loop(task.theta, task.grad, task.ax, buf, start, stop, *coefficients)

    def _loop(self, task: Task, variant: Variant) -> tuple[Any, tuple[float, ...]]:
        """The compiled loop of a task's variant, and its coefficients rounded to its dtype (as
        Python floats, which numba takes faster than NumPy scalars)."""
        return self._kernel(*variant), _coefficients(task)


def _coefficients(task: Task) -> tuple[float, ...]:
    """A task's coefficients, each rounded once to its dtype, as Python floats (which numba takes
    faster than NumPy scalars)."""
    s = task.scalars
    coefficients = (s.weight_decay, s.momentum, s.decay, s.lambd, s.eta, s.mu)
    rounded: list[float] = np.array(coefficients, task.theta.dtype).tolist()
    return tuple(rounded)


def _alike(tasks: Sequence[Task]) -> bool:
    """Whether the tasks share one compiled loop and one set of scalars."""
    first = tasks[0]
    dtype, scalars, starts, unbuffered = (first.theta.dtype, first.scalars, first.first_momentum_step,
                                          first.buf is None)  # fmt: skip
    return all(
        task.scalars is scalars and task.theta.dtype == dtype and task.first_momentum_step is starts
        and (task.buf is None) is unbuffered
        for task in tasks
    )  # fmt: skip


def numba_installed() -> bool:
    """Whether numba can be found (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def make_backend(kernel: str, block_size: int | None, threads: int) -> NumbaBackend | NumpyBackend:
    """The backend ``kernel`` names (``"auto"``: numba if it can be found, else NumPy)."""
    if kernel == "numpy" or (kernel == "auto" and not numba_installed()):
        return NumpyBackend(block_size, threads)
    if kernel == "numba" and not numba_installed():
        raise ValueError("Invalid kernel: 'numba' (numba is not installed; use kernel='numpy' or 'auto')")
    return NumbaBackend(block_size, threads, background=kernel == "auto")
