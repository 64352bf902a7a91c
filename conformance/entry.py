"""The ``asgd-conformance`` command's entry point: the CLI, with a Ctrl-C during its first moments
(importing the harness, reading the command line) ending it as one anywhere else does."""

from __future__ import annotations

import os
import sys

__all__ = ["main"]

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
"""The statuses of a run ended by Ctrl-C and by SIGTERM (here, where the CLI's first moments need
them before it is imported; the CLI uses these)."""


def main() -> int:
    """Run :func:`conformance.cli.main`; a Ctrl-C it does not handle itself exits 130, one line."""
    try:
        from conformance.cli import main as run

        status = run()
    except KeyboardInterrupt:
        print("asgd-conformance: interrupted; no report was written", file=sys.stderr)
        status = EXIT_INTERRUPTED
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _end_now(status)
    return status


def _end_now(status: int) -> None:
    """End the process with ``status`` at once. A Ctrl-C that lands in code a library evaluates
    from C (as some do while they are imported) leaves CPython set to end the process by SIGINT
    once it exits, whatever the status; an interrupted run has nothing left to finish."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
