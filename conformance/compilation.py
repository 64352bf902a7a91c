"""Time spent compiling: numba's kernels, compiled or loaded from numba's cache on their first use in
a process, kept out of the seconds an implementation is charged for a scenario.

The production kernels are compiled lazily, one per combination of a step's choices, so whichever
scenario first needs a combination pays for it: seconds against torch's milliseconds that say nothing
about the step. numba reports each compilation, and each load from its cache, as a
``numba:compiler_lock`` event; :func:`compiling_seconds` adds up the outermost ones. The report gives
their total once, in its environment table.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["compiling_seconds", "watch_compilation"]


class _Clock:
    """The seconds inside numba's outermost compiler lock, on any thread."""

    def __init__(self) -> None:
        self.seconds, self._depth, self._since = 0.0, 0, 0.0
        self._guard = threading.Lock()

    def on_start(self, event: Any) -> None:
        with self._guard:
            if self._depth == 0:
                self._since = time.perf_counter()
            self._depth += 1

    def on_end(self, event: Any) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.perf_counter() - self._since


_CLOCK = _Clock()
_watching = False


def watch_compilation() -> None:
    """Start counting numba's compilations in this process (once; nothing where numba is missing).

    It imports numba, so that its import, too, falls outside the implementations' steps."""
    global _watching
    if _watching:
        return
    _watching = True
    try:
        from numba.core import event
    except ImportError:
        return

    class _Listener(event.Listener):
        def on_start(self, happened: Any) -> None:
            _CLOCK.on_start(happened)

        def on_end(self, happened: Any) -> None:
            _CLOCK.on_end(happened)

    register: Any = event.register  # numba has no type hints
    register("numba:compiler_lock", _Listener())


def compiling_seconds() -> float:
    """Seconds this process has spent compiling with numba since :func:`watch_compilation`."""
    return _CLOCK.seconds
