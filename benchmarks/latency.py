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
from pathlib import Path

_FIRST_STEP = """
import numpy as np
import optimized
params = [np.zeros(s, np.float32) for s in ((64, 20), (64,), (32, 64), (32,), (1, 32), (1,))]
optimizer = optimized.ASGD(params, lr=0.01, kernel="{kernel}")
optimizer.step([np.ones_like(p) for p in params])
"""
_IMPORT_NUMBA = "import numba"


def _wall(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path(__file__).parents[1])
    return time.perf_counter() - started


def first_step_latency(rounds: int = 5) -> dict[str, float]:
    """Median seconds of each kind of process over ``rounds`` interleaved rounds."""
    env = dict(os.environ)
    auto, numba = _FIRST_STEP.format(kernel="auto"), _FIRST_STEP.format(kernel="numba")
    _wall(numba, env)  # warms the cache
    times: dict[str, list[float]] = {
        "import numba": [],
        "first step, kernel='auto'": [],
        "first step, kernel='numba', warm cache": [],
        "first step, kernel='numba', cold cache": [],
    }
    for _ in range(rounds):
        times["import numba"].append(_wall(_IMPORT_NUMBA, env))
        times["first step, kernel='auto'"].append(_wall(auto, env))
        times["first step, kernel='numba', warm cache"].append(_wall(numba, env))
        with tempfile.TemporaryDirectory() as empty:
            cold = {**env, "NUMBA_CACHE_DIR": empty}
            times["first step, kernel='numba', cold cache"].append(_wall(numba, cold))
    return {label: statistics.median(values) for label, values in times.items()}
