"""Scenario cells run in worker processes that the run supervises, so that no implementation can
hang the run, end it, or outlive it.

* **Hangs.** Each worker tells the run, through shared memory, whose code it is running and since
  when. An implementation that spends more than ``timeout`` seconds in one scenario (all its calls
  together) has its worker killed; the cell runs again without it, and it is shown failed with
  the step it hung at.
* **Deaths.** A worker that ends (``os._exit``, a crash, the kernel's OOM killer) while an
  implementation's code runs is replaced; the cell runs again without that implementation, shown
  failed with the worker's exit status. (Ending outside any implementation's code fails every
  implementation of the cell.)
* **Signals.** Workers ignore Ctrl-C, which a terminal sends to the whole process group: the run
  decides, and ends them. A ``KeyboardInterrupt`` in a worker is therefore an implementation's own,
  and fails it. A worker ends when the run ends, however it ends: on Linux the kernel kills it when
  the run dies (``PR_SET_PDEATHSIG``, which a SIGKILL of the run triggers too), and elsewhere it
  notices within a second that its parent is gone.

Workers are forked (the implementations, which may be closures in a user's test file, are
inherited rather than pickled); each runs one cell at a time and sends back its result.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkProcess
from typing import Any, Final

from conformance.implementations import Implementation
from conformance.lockstep import LOCKSTEP, Checking
from conformance.results import ScenarioResult
from conformance.runner import run_scenario
from conformance.scenarios import Scenario
from conformance.verdicts import Pair

__all__ = ["DEFAULT_TIMEOUT", "run_supervised"]

DEFAULT_TIMEOUT: Final = 600.0
"""Seconds one implementation may spend on one scenario. The slowest pair of an implementation and
a scenario of the full set takes under a minute on a two-core machine; ten times that is a hang."""
_POLL_SECONDS: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1
_NOBODY: Final = -1


class _Progress:
    """Shared memory between a worker and the run: the implementation whose code runs (by its
    position, or -1), the step, when its current call began, and its seconds so far in the cell."""

    def __init__(self, context: Any, implementations: int) -> None:
        # Plain ctypes in shared memory: one writer (the worker), aligned words read whole.
        self.current: Any = context.RawValue("i", _NOBODY)
        self.step: Any = context.RawValue("i", 0)
        self.since: Any = context.RawValue("d", 0.0)
        self.spent: Any = context.RawArray("d", max(1, implementations))

    # The worker's side: a conformance.runner.Watch.

    def enter(self, implementation: int, step: int) -> None:
        self.step.value, self.since.value = step, time.monotonic()
        self.current.value = implementation

    def leave(self) -> None:
        current = self.current.value
        self.current.value = _NOBODY
        now = time.monotonic()
        if current != _NOBODY:
            self.spent[current] += now - self.since.value
        self.since.value = now  # the harness's own code runs from now on

    def reset(self) -> None:
        self.current.value = _NOBODY
        self.since.value = time.monotonic()
        for index in range(len(self.spent)):
            self.spent[index] = 0.0

    # The run's side.

    def overdue(self, timeout: float, dispatched: float) -> bool:
        """Whether the implementation running now has spent more than ``timeout`` in the cell, or
        the harness more than ``timeout`` since it last ran one (an implementation's ``__del__``,
        a thread it left behind)."""
        current = self.current.value
        if current == _NOBODY:
            idle: float = time.monotonic() - max(self.since.value, dispatched)
            return idle > timeout
        spent: float = self.spent[current] + (time.monotonic() - self.since.value)
        return spent > timeout


@dataclass
class _Worker:
    process: ForkProcess
    connection: multiprocessing.connection.Connection
    progress: _Progress
    cell: int | None = None
    """The position (in the run's list) of the cell it is running, if any."""
    dispatched: float = 0.0
    """When that cell was sent to it (time.monotonic())."""
    stopped: bool = False
    warmed: set[str] = field(default_factory=set)
    """The one-time costs it has paid (see :func:`_choose`)."""


@dataclass
class _Cells:
    """The run's bookkeeping: cells to run, their results, and who was excluded from which."""

    pending: deque[int]
    done: dict[int, ScenarioResult] = field(default_factory=dict)
    excluded: dict[int, dict[str, str]] = field(default_factory=dict)


def _die_with_parent(parent: int) -> None:
    """End this worker when the run's process ends, however it ends."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch_parent() -> None:  # elsewhere, and for a parent that died before prctl
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch_parent, name="asgd-parent-watch", daemon=True).start()


def _one_thread_each(workers: int) -> None:
    """Beside other workers, torch computes on one thread: its OpenMP threads spin while they wait
    for work, and two workers' spinning threads on two cores halve the speed of both."""
    if workers > 1 and importlib.util.find_spec("torch") is not None:
        import torch  # the implementations and workloads that use it import it anyway

        torch.set_num_threads(1)


def _work(
    connection: multiprocessing.connection.Connection,
    progress: _Progress,
    implementations: Sequence[Implementation],
    pairs: Sequence[Pair],
    parent: int,
    workers: int,
) -> None:
    """A worker's life: cells in, results out, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run decides what a Ctrl-C ends
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    _one_thread_each(workers)
    while True:
        message = connection.recv()
        if message is None:
            return
        position, scenario, cell, excluded, checking = message
        progress.reset()
        try:
            result = run_scenario(
                scenario,
                implementations,
                pairs,
                cell,
                watch=progress,
                excluded=excluded,
                in_a_worker=True,
                checking=checking,
            )
        except BaseException:  # the harness's own failure: the run reports it
            connection.send((position, None, traceback.format_exc()))
            continue
        connection.send((position, result, None))


def _start_worker(
    context: Any, implementations: Sequence[Implementation], pairs: Sequence[Pair], workers: int
) -> _Worker:
    ours, theirs = context.Pipe()
    progress = _Progress(context, len(implementations))
    process: ForkProcess = context.Process(
        target=_work,
        args=(theirs, progress, implementations, pairs, os.getpid(), workers),
        name="asgd-conformance-worker",
        daemon=True,
    )
    process.start()
    theirs.close()
    return _Worker(process, ours, progress)


def _stop(worker: _Worker) -> None:
    """End a worker now (the run needs nothing more from it)."""
    worker.stopped = True
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join()
    worker.connection.close()


def _blame(worker: _Worker, implementations: Sequence[Implementation], what: str) -> dict[str, str]:
    """Who was running when ``what`` happened to the worker, with the reason to show."""
    current, step = worker.progress.current.value, worker.progress.step.value
    if current == _NOBODY:
        reason = f"{what} outside any implementation's code (in the harness)"
        return {implementation.name: reason for implementation in implementations}
    where = "while starting" if step == 0 else f"at step {step}"
    return {implementations[current].name: f"{what} {where}"}


def _choose(
    worker: _Worker, workers: Sequence[_Worker], pending: deque[int], warms: Sequence[str | None]
) -> int:
    """The next cell for ``worker``, taken out of ``pending``: the first in order, except that a cell
    whose one-time cost in a worker (``warms``: torch.compile's first compilation, say) another
    worker has paid and this one has not is left to that one while there are other cells."""
    paid = {key for other in workers if other is not worker and not other.stopped for key in other.warmed}
    position = next(
        (p for p in pending if warms[p] is None or warms[p] not in paid - worker.warmed), pending[0]
    )
    pending.remove(position)
    key = warms[position]
    if key is not None:
        worker.warmed.add(key)
    return position


def run_supervised(
    scenarios: Sequence[Scenario],
    cells: Sequence[int],
    implementations: Sequence[Implementation],
    pairs: Sequence[Pair],
    *,
    jobs: int,
    timeout: float = DEFAULT_TIMEOUT,
    order: Sequence[int] | None = None,
    on_done: Callable[[ScenarioResult], None] | None = None,
    checking: Checking = LOCKSTEP,
    warms: Sequence[str | None] | None = None,
) -> list[ScenarioResult]:
    """Results in the order of ``scenarios``, each cell run in one of ``jobs`` supervised worker
    processes (in ``order``, by default as given, cells of one warm-up key kept to the worker that
    paid it where it can: :func:`_choose`). Every worker has ended when this returns or
    raises (a Ctrl-C included)."""
    context = multiprocessing.get_context("fork")
    cells_left = _Cells(deque(range(len(scenarios)) if order is None else order))
    workers: list[_Worker] = []
    try:
        while cells_left.pending or any(worker.cell is not None for worker in workers):
            while cells_left.pending and len(workers) < jobs:
                workers.append(_start_worker(context, implementations, pairs, jobs))
            for worker in workers:
                if worker.cell is None and cells_left.pending:
                    position = _choose(worker, workers, cells_left.pending, warms or [None] * len(scenarios))
                    excluded: Mapping[str, str] = cells_left.excluded.get(position, {})
                    try:
                        worker.connection.send(
                            (position, scenarios[position], cells[position], dict(excluded), checking)
                        )
                    except OSError:  # it ended while idle (a thread an implementation left, the OOM killer)
                        cells_left.pending.appendleft(position)
                        _stop(worker)
                        continue
                    worker.cell, worker.dispatched = position, time.monotonic()
            busy = [worker for worker in workers if worker.cell is not None]
            multiprocessing.connection.wait(
                [w.connection for w in busy] + [w.process.sentinel for w in busy], timeout=_POLL_SECONDS
            )
            for worker in busy:
                _collect(worker, workers, cells_left, scenarios, implementations, timeout, on_done)
            workers = [worker for worker in workers if not worker.stopped]
    finally:
        for worker in workers:
            _stop(worker)
    return [cells_left.done[position] for position in range(len(scenarios))]


def _collect(
    worker: _Worker,
    workers: list[_Worker],
    cells_left: _Cells,
    scenarios: Sequence[Scenario],
    implementations: Sequence[Implementation],
    timeout: float,
    on_done: Callable[[ScenarioResult], None] | None,
) -> None:
    """Take a busy worker's result, or deal with its death or its hung implementation."""
    position = worker.cell
    assert position is not None
    closed = False
    try:
        if worker.connection.poll():
            _, result, failure = worker.connection.recv()
            if failure is not None:
                raise RuntimeError(f"the harness failed on {scenarios[position].name}:\n{failure}")
            worker.cell = None
            cells_left.done[position] = result
            if on_done is not None:
                on_done(result)
            return
    except (EOFError, OSError):  # its end of the pipe closed: it is ending
        closed = True
        worker.process.join(_POLL_SECONDS * 50)
    if closed or not worker.process.is_alive():
        status = worker.process.exitcode
        blamed = _blame(worker, implementations, f"ended the worker process (exit status {status})")
    elif worker.progress.overdue(timeout, worker.dispatched):
        blamed = _blame(
            worker, implementations, f"timed out: more than {timeout:g} s on this scenario (--timeout)"
        )
    else:
        return
    _stop(worker)
    worker.cell = None
    excluded = cells_left.excluded.setdefault(position, {})
    if blamed.keys() <= excluded.keys():  # no one left to blame: running it again ends the same way
        reason = next(iter(blamed.values()), "the worker process ended")
        raise RuntimeError(f"the harness failed on {scenarios[position].name}: {reason}")
    excluded.update(blamed)
    cells_left.pending.appendleft(position)  # again, without the implementation blamed
