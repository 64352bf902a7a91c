"""A forked child (``os.fork``, a ``multiprocessing`` fork pool) steps on every kernel, imports
numba and gets the compiled kernel, whatever the parent was doing: after threaded steps (the
worker threads do not survive a fork) and while numba was being loaded in the background (its
import lock would be held for good in the child). Every child runs under a deadline that only a
hang reaches, and is killed there."""

from __future__ import annotations

import copy
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimized

ROOT = Path(__file__).resolve().parents[2]
HANG_SECONDS = 600.0
"""A child that has not finished by then hangs (its work takes well under a second)."""
SIZES = [600_000, 300_000, 200_000]  # 4.4 MiB of float32: shared out over two threads

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")


def make(kernel: str, seed: int = 0) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(size).astype(np.float32) for size in SIZES]
    grads = [rng.standard_normal(size).astype(np.float32) for size in SIZES]
    optimizer = optimized.ASGD(params, lr=0.01, momentum=0.5, t0=1, kernel=kernel, threads=2)
    return optimizer, params, grads


def digest(optimizer: Any) -> str:
    """The parameters and averages of ``optimizer``, as one hash of their bytes."""
    hashed = hashlib.sha256()
    for parameter, average in zip(optimizer.param_groups[0]["params"], optimizer.averages(), strict=True):
        hashed.update(parameter.tobytes())
        hashed.update(average.tobytes())
    return hashed.hexdigest()


def in_fork(child: Callable[[], int]) -> int:
    """``child()``'s result as the exit status of a forked child; a child that hangs is killed and
    fails the test."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which reports by its exit status
        status = 99
        try:
            status = child()
        finally:
            os._exit(status)
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {HANG_SECONDS:.0f} s")


@pytest.mark.parametrize("kernel", ["numba", "numpy", "auto"])
def test_a_child_forked_after_threaded_steps_steps_on_threads(kernel: str) -> None:
    optimizer, _, grads = make(kernel)
    for _ in range(2):
        optimizer.step(grads)
    if kernel == "auto":
        assert optimizer.wait_until_compiled()
    optimizer.step(grads)  # on both threads, with the compiled kernel where it is one
    twin = copy.deepcopy(optimizer)
    for _ in range(3):
        twin.step(grads)
    expected = digest(twin)

    def child() -> int:
        for _ in range(3):
            optimizer.step(grads)
        return 0 if digest(optimizer) == expected else 3

    assert in_fork(child) == 0, "the child's steps gave other bits"


def step_the_inherited_optimizer(steps: int) -> str:
    """In a pool's worker: the optimizer the parent made before forking, stepped ``steps`` times."""
    optimizer, grads = INHERITED["optimizer"], INHERITED["grads"]
    for _ in range(steps):
        optimizer.step(grads)
    return digest(optimizer)


INHERITED: dict[str, Any] = {}


@pytest.mark.parametrize("kernel", ["numba", "auto"])
def test_a_multiprocessing_fork_pool_steps_an_optimizer_made_before_it(kernel: str) -> None:
    optimizer, _, grads = make(kernel, seed=1)
    for _ in range(3):
        optimizer.step(grads)
    INHERITED.update(optimizer=optimizer, grads=grads)
    expected = []
    for steps in (1, 2):
        twin = copy.deepcopy(optimizer)
        for _ in range(steps):
            twin.step(grads)
        expected.append(digest(twin))
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            digests = pool.map_async(step_the_inherited_optimizer, [1, 2]).get(timeout=HANG_SECONDS)
    finally:
        INHERITED.clear()
    assert digests == expected


FORK_WHILE_NUMBA_LOADS = textwrap.dedent(
    """
    import multiprocessing, sys, warnings
    import numpy as np
    import optimized

    def in_the_child(optimizer):
        warnings.simplefilter("error")  # the child must not fall back to NumPy with a warning
        import numba  # noqa: F401
        other = optimized.ASGD([np.zeros(10, np.float32)], lr=0.1, kernel="numba")
        other.step([np.ones(10, np.float32)])
        optimizer.step([np.ones(1000, np.float32)])
        loaded = optimizer.wait_until_compiled(600)
        optimizer.step([np.ones(1000, np.float32)])
        return 0 if loaded and optimizer.backend == "numba" and other.backend == "numba" else 4

    OPTIMIZER = optimized.ASGD([np.zeros(1000, np.float32)], lr=0.1, kernel="auto")

    def in_a_pool_worker(_):
        return in_the_child(OPTIMIZER)

    if __name__ == "__main__":
        from tests.optimized.test_fork import in_fork  # before the step: the fork must follow it at once

        OPTIMIZER.step([np.ones(1000, np.float32)])  # numba starts loading in the background
        if sys.argv[1] == "pool":  # at once: the loader is in the middle of importing numba
            with multiprocessing.get_context("fork").Pool(1) as pool:
                print(pool.map_async(in_a_pool_worker, [0]).get(timeout=float(sys.argv[2]))[0])
        else:
            print(in_fork(lambda: in_the_child(OPTIMIZER)))
    """
)


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["fork", "pool"])
def test_a_child_forked_while_numba_loads_imports_it_and_uses_the_compiled_kernel(
    how: str, tmp_path: Path
) -> None:
    """In a new process, so that numba is not imported yet: the fork (``os.fork``, or a fork pool's
    worker) lands while the background loader imports it (before the fix, ``import numba`` in the
    child waited forever)."""
    script = tmp_path / "fork_while_numba_loads.py"
    script.write_text(FORK_WHILE_NUMBA_LOADS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script), how, str(HANG_SECONDS)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=3 * HANG_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"], result.stdout + result.stderr
