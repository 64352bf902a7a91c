"""First-step latency: how long a new process takes to reach the end of its first step.

Compared, in interleaved rounds, with a process that only imports numba. With ``kernel="auto"``
(the default) no step waits for numba, which loads in the background; with ``kernel="numba"`` the
first step imports numba and loads the compiled loop from numba's on-disk cache (warm) or compiles
it (cold: an empty cache).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_FIRST_STEP = """
import numpy as np
import optimized
params = [np.zeros(s, np.float32) for s in ((64, 20), (64,), (32, 64), (32,), (1, 32), (1,))]
optimizer = optimized.ASGD(params, lr=0.01, kernel="{kernel}")
optimizer.step([np.ones_like(p) for p in params])
"""
_IMPORT_NUMBA = "import numba"
_TORCH_FIRST_STEP = """
import time, torch
{setup}
p = torch.randn(10_000_000, requires_grad=True)
p.grad = torch.randn_like(p)
step = {step}
started = time.perf_counter()
step()
print(time.perf_counter() - started)
"""
_OURS = ("import optimized.torch",
         "optimized.torch.ASGD([p], lr=1e-3, t0=0.0, weight_decay=1e-4).step")  # fmt: skip
_COMPILED = ("", "torch.compile(torch.optim.ASGD([p], lr=1e-3, t0=0.0, weight_decay=1e-4).step)")


def _wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path(__file__).parents[1])
    return time.perf_counter() - started


def _median_of_rounds(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds of each measure over ``rounds`` rounds, the measures interleaved in each."""
    times: dict[str, list[float]] = {label: [] for label in measures}
    for _ in range(rounds):
        for label, measure in measures.items():
            times[label].append(measure())
    return {label: statistics.median(values) for label, values in times.items()}


def _with_empty_directory(
    variable: str, env: dict[str, str], measure: Callable[[dict[str, str]], float]
) -> float:
    """``measure`` in an environment whose ``variable`` names a new empty directory (a cold cache)."""
    with tempfile.TemporaryDirectory() as empty:
        return measure({**env, variable: empty})


def first_step_latency(rounds: int = 5) -> dict[str, float]:
    """Median seconds of each kind of process over ``rounds`` interleaved rounds."""
    env = dict(os.environ)
    auto, numba = _FIRST_STEP.format(kernel="auto"), _FIRST_STEP.format(kernel="numba")
    _wall(numba, env)  # warms the cache
    return _median_of_rounds(
        {
            "import numba": lambda: _wall(_IMPORT_NUMBA, env),
            "first step, kernel='auto'": lambda: _wall(auto, env),
            "first step, kernel='numba', warm cache": lambda: _wall(numba, env),
            "first step, kernel='numba', cold cache": lambda: _with_empty_directory(
                "NUMBA_CACHE_DIR", env, lambda cold: _wall(numba, cold)
            ),
        },
        rounds,
    )


def _first_step(setup_and_step: tuple[str, str], env: dict[str, str]) -> float:
    """Seconds the first ``step()`` call takes in a new process (its own measurement)."""
    setup, step = setup_and_step
    code = _TORCH_FIRST_STEP.format(setup=setup, step=step)
    result = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def torch_first_step_latency(rounds: int = 3) -> dict[str, float]:
    """The first step on 1e7 float32 (averaging and weight decay on) of ``optimized.torch.ASGD``
    (``kernel="auto"``) and of a ``torch.compile``d ``torch.optim.ASGD.step``, which compiles at its
    first call: with inductor's on-disk cache warm, and with an empty one (cold). Medians of
    ``rounds`` interleaved rounds, each a new process timing its own first call."""
    env = dict(os.environ)
    _first_step(_COMPILED, env)  # warms inductor's cache
    return _median_of_rounds(
        {
            "first step, optimized.torch.ASGD": lambda: _first_step(_OURS, env),
            "first step, compiled torch step, warm cache": lambda: _first_step(_COMPILED, env),
            "first step, compiled torch step, cold cache": lambda: _with_empty_directory(
                "TORCHINDUCTOR_CACHE_DIR", env, lambda cold: _first_step(_COMPILED, cold)
            ),
        },
        rounds,
    )
