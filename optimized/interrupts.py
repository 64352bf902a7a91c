"""Ctrl-C (SIGINT) against half-done work: held back while something must not be cut in two (a
step, a commit, a file swap), or preceded by the undoing of a temporary change."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C functions; its wrappers make enums (~9 µs)
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["RestoreOnInterrupt", "interrupts_deferred"]


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
            _deliver(previous, *self.received[0])


def _deliver(handler: Any, signum: int, frame: FrameType | None) -> None:
    """A SIGINT to the handler that would have had it."""
    if callable(handler):
        handler(signum, frame)  # Python's default handler raises KeyboardInterrupt here
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)


class RestoreOnInterrupt:
    """While installed, a SIGINT first runs ``restore``, then goes to the handler that was in place
    (by default: ``KeyboardInterrupt``), so that no ``KeyboardInterrupt`` ever leaves a temporary
    change in place, wherever it lands: in the code that makes the change, in the block that uses
    it, in the code that undoes it, or in a handler that saves a checkpoint.

    ``restore`` must be idempotent: it may run again, and a second Ctrl-C may cut it short and run
    it afresh to the end before the ``KeyboardInterrupt`` is raised. Python runs signal handlers in
    the main thread only; in other threads (where no Ctrl-C lands) installing does nothing.
    """

    __slots__ = ("active", "handler", "previous", "restore")

    def __init__(self, restore: Callable[[], None]) -> None:
        self.restore = restore
        self.previous: Any = None
        self.active = False
        self.handler = self._on_interrupt  # one bound method, to recognise it when uninstalling

    def install(self) -> None:
        """Run ``restore`` before a SIGINT's handler from now on (call before making the change)."""
        self.active = True
        if threading.current_thread() is not threading.main_thread():
            return
        previous = _signal.getsignal(signal.SIGINT)
        if previous is not None:  # None: a handler installed from C, which Python cannot chain
            self.previous = previous
            _signal.signal(signal.SIGINT, self.handler)

    def uninstall(self) -> None:
        """Give SIGINT back to the handler that was in place (call once ``restore`` has run); a
        handler installed since is left alone, and this one, if it is still called, only passes
        SIGINT on."""
        if self.previous is not None and _signal.getsignal(signal.SIGINT) is self.handler:
            previous = self.previous
            while (
                isinstance(getattr(previous, "__self__", None), RestoreOnInterrupt)
                and not previous.__self__.active
            ):
                previous = previous.__self__.previous  # a block that ended out of order: unchain it
            _signal.signal(signal.SIGINT, previous)
        # Only now: a SIGINT before this line finds this handler active and restores again
        # (harmless), where one that found it inactive would have cut this method short with the
        # handler still installed, to be chained behind the next one.
        self.active = False

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.active:
            self.restore()
            self.uninstall()
        _deliver(self.previous, signum, frame)
