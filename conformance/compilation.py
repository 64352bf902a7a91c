"""Time spent compiling: numba's kernels, compiled or loaded from numba's cache on their first use in
a process, kept out of the seconds an implementation is charged for a scenario.

The production kernels are compiled lazily, one per combination of a step's choices, so whichever
scenario first needs a combination pays for it: seconds against torch's milliseconds that say nothing
about the step. numba reports each compilation, and each load from its cache, as a
``numba:compiler_lock`` event, on whichever thread does it (a step may run on a pool of threads).
:func:`compiling_between` gives how much of a stretch of time some thread spent compiling; the runner
takes that out of the step that stretch was, so a step is never charged less than nothing. numba
itself and the kernels' module are imported once, before any step (:func:`watch_compilation`), so no
background load of them overlaps another implementation's step. The report gives the total once, in
its environment table.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["CompilerLockTimes", "compiling_between", "watch_compilation"]


class CompilerLockTimes:
    """The stretches of time some thread spent inside numba's compiler lock (the outermost
    acquisition on each thread)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._depth: dict[int, int] = {}
        self._open: dict[int, float] = {}
        self.closed: list[tuple[float, float]] = []

    def on_start(self) -> None:
        thread, now = threading.get_ident(), time.perf_counter()
        with self._guard:
            depth = self._depth.get(thread, 0)
            if depth == 0:
                self._open[thread] = now
            self._depth[thread] = depth + 1

    def on_end(self) -> None:
        thread, now = threading.get_ident(), time.perf_counter()
        with self._guard:
            depth = self._depth.get(thread, 0) - 1
            if depth > 0:
                self._depth[thread] = depth
                return
            self._depth.pop(thread, None)
            start = self._open.pop(thread, None)
            if start is not None:
                self.closed.append((start, now))

    def between(self, start: float, end: float) -> float:
        """How much of ``[start, end]`` some thread spent compiling (overlaps counted once); the
        stretches that ended before ``start`` are forgotten (steps are timed one after another)."""
        with self._guard:
            self.closed = [(s, e) for s, e in self.closed if e > start]
            stretches = sorted(
                (max(s, start), min(e, end))
                for s, e in [*self.closed, *((s, end) for s in self._open.values())]
                if s < end and e > start
            )
        total, reached = 0.0, start
        for s, e in stretches:
            if e > reached:
                total += e - max(s, reached)
                reached = e
        return total


_CLOCK = CompilerLockTimes()
_watching = False


def watch_compilation() -> None:
    """Start timing numba's compilations in this process (once; nothing where numba is missing).

    It imports numba and the production kernels' module, so that neither import falls inside a step
    (nor, done on a background thread by ``kernel="auto"``, overlaps another implementation's)."""
    global _watching
    if _watching:
        return
    _watching = True
    try:
        from numba.core import event

        import optimized.numba_kernel  # noqa: F401  (its import, and numba's, before any step)
    except ImportError:
        return

    class _Listener(event.Listener):
        def on_start(self, happened: Any) -> None:
            _CLOCK.on_start()

        def on_end(self, happened: Any) -> None:
            _CLOCK.on_end()

    register: Any = event.register  # numba has no type hints
    register("numba:compiler_lock", _Listener())


def compiling_between(start: float, end: float) -> float:
    """Seconds of ``[start, end]`` (``time.perf_counter`` readings) that numba spent compiling or
    loading compiled code, on any thread; never more than ``end - start``."""
    return _CLOCK.between(start, end)
