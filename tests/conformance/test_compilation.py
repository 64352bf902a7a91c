"""Seconds without compilation (conformance.compilation): numba's compile time is taken out of the
step it fell in, counted once where threads overlap, never more than the step took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.compilation import CompilerLockTimes

ROOT = Path(__file__).resolve().parents[2]


def test_overlapping_stretches_count_once_and_never_more_than_the_step() -> None:
    clock = CompilerLockTimes()
    clock.closed = [(0.0, 1.0), (0.5, 2.0), (3.0, 4.0), (9.0, 12.0)]
    assert clock.between(0.0, 4.0) == pytest.approx(3.0)  # 0-2 once, then 3-4
    assert clock.between(1.5, 3.5) == pytest.approx(1.0)  # 1.5-2.0 and 3.0-3.5 (asked in time order)
    assert clock.between(10.0, 11.0) == pytest.approx(1.0)  # all of it, no more
    assert clock.between(4.5, 8.5) == 0.0
    assert clock.between(19.0, 21.0) == 0.0


def test_a_compilation_still_going_on_another_thread_counts_up_to_the_end_of_the_step() -> None:
    import threading
    import time

    clock, started, finish = CompilerLockTimes(), threading.Event(), threading.Event()

    def compiling() -> None:
        clock.on_start()
        started.set()
        finish.wait(600)
        clock.on_end()

    worker = threading.Thread(target=compiling)
    before = time.perf_counter()
    worker.start()
    started.wait(600)
    after = time.perf_counter()
    assert 0 < clock.between(before, after) <= after - before  # open: counted up to the step's end
    finish.set()
    worker.join(600)
    assert len(clock.closed) == 1


def test_nested_acquisitions_on_one_thread_are_one_stretch() -> None:
    clock = CompilerLockTimes()
    clock.on_start()
    clock.on_start()
    clock.on_end()
    assert clock.closed == []  # the outer one is still open
    clock.on_end()
    assert len(clock.closed) == 1


SCRIPT = """
import json
from conformance.implementations import IMPLEMENTATIONS
from conformance.runner import run_scenario
from conformance.scenarios import Scenario
scenario = Scenario("cold", "random-stream", "float32", {"lr": 0.01, "t0": 5, "momentum": 0.5}, 20, size=16, seed=1)
chosen = [i for i in IMPLEMENTATIONS if i.name in ("optimized-numba-torch", "optimized-torch-forloop")]
result = run_scenario(scenario, chosen, [])
print(json.dumps({"compiling": result.compilation_seconds,
                  "seconds": {run.name: run.seconds for run in result.implementations}}))
"""


@pytest.mark.e2e
def test_a_cold_kernel_is_charged_to_compilation_not_to_the_step(tmp_path: Path) -> None:
    """In a new process with an empty numba cache the kernels compile for a good part of a second;
    the scenario's compilation_seconds holds that, the implementations' seconds only their steps."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["compiling"] > 0.05, found
    assert all(seconds is not None and seconds >= 0 for seconds in found["seconds"].values()), found
    assert found["seconds"]["optimized-numba-torch"] < found["compiling"], found
