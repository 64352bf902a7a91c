"""Holding Ctrl-C back while something must not be cut in two: a step, a commit, a file swap."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C functions; its wrappers make enums (~9 µs)
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["interrupts_deferred"]


class interrupts_deferred:
    """Hold a SIGINT (Ctrl-C) that arrives inside the block until the block is over, then deliver
    it to the handler that was in place, so that the block is never interrupted half-way. Signals
    reach Python only in the main thread; elsewhere, and where the handler was not installed from
    Python, the block runs as it is. (A class, not a generator: this runs at every step.)"""

    __slots__ = ("previous", "received")

    def __enter__(self) -> None:
        self.previous: Any = None
        self.received: list[tuple[int, FrameType | None]] = []
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = _signal.getsignal(signal.SIGINT)
        if self.previous is not None:
            _signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.received.append((signum, frame))

    def __exit__(self, *exc_info: object) -> None:
        previous = self.previous
        if previous is None:
            return
        _signal.signal(signal.SIGINT, previous)
        if self.received:
            if callable(previous):
                previous(*self.received[0])  # Python's default handler raises KeyboardInterrupt here
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
