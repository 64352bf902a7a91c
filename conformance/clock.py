"""How long the user has waited: wall seconds since this process started.

On Linux the kernel records when the process started (``/proc/self/stat``), so the figure includes
the interpreter's start and every import; elsewhere it counts from the first import of
:mod:`conformance`, the earliest moment the harness sees.
"""

from __future__ import annotations

import os
import time

__all__ = ["waited"]

_IMPORTED = time.monotonic()


def _since_process_start() -> float | None:
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
            now = float(uptime.read().split()[0])
        return now - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def waited() -> float:
    """Wall seconds since this process started (or since :mod:`conformance` was first imported)."""
    since_start = _since_process_start()
    return since_start if since_start is not None else time.monotonic() - _IMPORTED
