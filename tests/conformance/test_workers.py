"""The supervised worker processes of :mod:`conformance.workers`, driven directly: a worker that
dies between cells, a harness that dies or hangs outside any implementation's code. Every wait is
a hang guard only."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from typing import Any

import pytest

import conformance.runner
from conformance.implementations import IMPLEMENTATIONS
from conformance.results import ScenarioResult
from conformance.scenarios import select_scenarios
from conformance.workers import run_supervised

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="forked workers")

CHOSEN = [i for i in IMPLEMENTATIONS if i.name in ("reference-torch", "optimized-numpy-torch")]


@pytest.mark.e2e
def test_a_worker_that_dies_between_cells_is_replaced() -> None:
    """Killed while idle (the OOM killer, a thread an implementation left behind): the run used to
    end with BrokenPipeError when it sent the next cell."""
    cells = select_scenarios(full=False, only="torch-config-[dl]*")
    killed: list[int] = []

    def kill_the_idle_worker(result: ScenarioResult) -> None:
        if not killed:
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
                child.join()
                killed.append(child.pid or 0)

    results = run_supervised(cells, [0, 1], CHOSEN, [], jobs=1, on_done=kill_the_idle_worker)
    assert killed
    assert [r.name for r in results] == [s.name for s in cells]
    assert all(run.status == "ran" for r in results for run in r.implementations)
    assert not multiprocessing.active_children()


@pytest.mark.e2e
def test_a_harness_that_dies_outside_every_implementation_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that dies in the harness's own code blames every implementation; with no one left to
    blame, the cell used to be run again forever."""

    def dies(scenario: Any) -> Any:
        os._exit(137)

    monkeypatch.setattr(conformance.runner, "make_workload", dies)  # inherited by the forked worker
    cells = select_scenarios(full=False, only="torch-config-default")
    with pytest.raises(RuntimeError, match="the harness failed on torch-config-default"):
        run_supervised(cells, [0], CHOSEN, [], jobs=1, timeout=1800)
    assert not multiprocessing.active_children()


@pytest.mark.e2e
def test_a_harness_that_hangs_outside_every_implementation_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code no implementation is marked as running (an implementation's ``__del__``, a thread it
    left) used never to time out."""
    import threading

    def hangs(scenario: Any) -> Any:
        threading.Event().wait()

    monkeypatch.setattr(conformance.runner, "make_workload", hangs)
    cells = select_scenarios(full=False, only="torch-config-default")
    with pytest.raises(RuntimeError, match="timed out"):
        run_supervised(cells, [0], CHOSEN, [], jobs=1, timeout=2)
    assert not multiprocessing.active_children()


def test_cells_of_one_warm_up_stay_with_the_worker_that_paid_it() -> None:
    """torch.compile's first compilation costs seconds in each worker: once one worker has paid
    it, the other takes the other cells first, and a cell of that kind only when nothing else is left."""
    from collections import deque

    from conformance.workers import _choose, _Worker

    warms = [None, "compile", "compile", None, "compile"]
    first, second = (_Worker(None, None, None) for _ in range(2))  # type: ignore[arg-type]
    pending = deque(range(5))
    assert _choose(first, [first, second], pending, warms) == 0
    assert _choose(second, [first, second], pending, warms) == 1  # the first to need it pays
    assert _choose(first, [first, second], pending, warms) == 3  # left to the second: 2 and 4 wait
    assert _choose(second, [first, second], pending, warms) == 2
    assert _choose(first, [first, second], pending, warms) == 4  # nothing else is left
    assert not pending and first.warmed == second.warmed == {"compile"}
