"""``python -m benchmarks``: the optimized ASGD against torch, plain NumPy and the memory bound.

Every case is timed in one run, against the others on the same work, and reported as ratios:
absolute times on a shared two-core machine are noisy, ratios much less so. The contenders of a
case are timed in interleaved rounds (one step of each per round), so a slow spell of the machine
falls on all of them alike; each timing is the best of ``--repeat`` rounds after two warm-up
rounds, with setup outside the timed region.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import optimized
from benchmarks.models import resnet50_shapes
from optimized.numpy_kernel import BLOCK_BYTES, block_length
from optimized.threads import DEFAULT_THREADS

WEIGHT_DECAY = 1e-4


def best_times(steps: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best time of each step over ``repeat`` interleaved rounds, after two warm-up rounds."""
    times: dict[str, list[float]] = {label: [] for label in steps}
    for round_number in range(repeat + 2):
        for label, step in steps.items():
            started = time.perf_counter()
            step()
            if round_number >= 2:
                times[label].append(time.perf_counter() - started)
    return {label: min(values) for label, values in times.items()}


def torch_step(
    shapes: list[tuple[int, ...]], dtype: torch.dtype, t0: float, foreach: bool
) -> Callable[[], object]:
    params = [torch.randn(shape, dtype=dtype, requires_grad=True) for shape in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.ASGD(params, lr=1e-3, t0=t0, weight_decay=WEIGHT_DECAY, foreach=foreach)
    return optimizer.step


def arrays(shapes: list[tuple[int, ...]], dtype: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def optimized_step(
    shapes: list[tuple[int, ...]], dtype: str, t0: float, numerics: str, packed: bool = False
) -> Callable[[], object]:
    params, grads = arrays(shapes, dtype, 0), arrays(shapes, dtype, 1)
    if packed:
        params, grads = optimized.pack(params), optimized.pack(grads)
    optimizer = optimized.ASGD(params, lr=1e-3, t0=t0, weight_decay=WEIGHT_DECAY, numerics=numerics)
    return lambda: optimizer.step(grads)


def naive_numpy_step(shapes: list[tuple[int, ...]], dtype: str, t0: float) -> Callable[[], object]:
    """The algorithm as a straightforward NumPy translation: whole-array expressions, temporaries."""
    params, grads = arrays(shapes, dtype, 0), arrays(shapes, dtype, 1)
    axs = [np.zeros_like(p) for p in params]
    state = {"step": 0, "eta": 1e-3, "mu": 1.0}

    def step() -> None:
        state["step"] += 1
        for p, g, ax in zip(params, grads, axs, strict=True):
            g = g + WEIGHT_DECAY * p
            p *= 1 - 1e-4 * state["eta"]
            p -= state["eta"] * g
            if state["mu"] == 1:
                ax[...] = p
            else:
                ax += state["mu"] * (p - ax)
        state["eta"] = 1e-3 / (1 + 1e-4 * 1e-3 * state["step"]) ** 0.75
        state["mu"] = 1 / max(1, state["step"] - t0)

    return step


def bound_step(shapes: list[tuple[int, ...]], dtype: str, averaging: bool) -> Callable[[], object]:
    """The memory-traffic bound: the same minimal bytes (read θ, g and, averaging, ax; write θ
    and ax) streamed by one cheap operation per array, blocked and threaded like the kernel."""
    total = sum(math.prod(s) for s in shapes)
    theta, grad = arrays([(total,)], dtype, 0)[0], arrays([(total,)], dtype, 1)[0]
    ax = np.zeros_like(theta)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(DEFAULT_THREADS)
    share = -(-total // DEFAULT_THREADS)
    length = block_length(theta.dtype)

    def chunk(start: int, stop: int) -> None:
        for i in range(start, stop, length):
            j = min(i + length, stop)
            np.add(theta[i:j], grad[i:j], out=theta[i:j])
            if averaging:
                np.add(ax[i:j], theta[i:j], out=ax[i:j])

    def step() -> None:
        futures = [pool.submit(chunk, a, min(a + share, total)) for a in range(0, total, share)]
        for future in futures:
            future.result()

    return step


def run_case(
    name: str, makers: dict[str, Callable[[], Callable[[], object]]], repeat: int
) -> dict[str, float]:
    steps = {label: make() for label, make in makers.items()}
    timings = best_times(steps, repeat)
    del steps
    gc.collect()
    print(f"\n{name}")
    base = timings["optimized fast"]
    for label, seconds in timings.items():
        print(f"  {label:<28} {seconds * 1e3:9.2f} ms   {seconds / base:6.2f}x optimized fast")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    arguments = parser.parse_args()
    repeat = arguments.repeat
    resnet = resnet50_shapes()
    tiny = [(100,)] * 10_000
    large = [(10_000_000,)]
    f32, f64 = torch.float32, torch.float64

    cases: dict[str, dict[str, Callable[[], Callable[[], object]]]] = {}
    for t0, label in ((1e6, "averaging off"), (0.0, "averaging on")):
        cases[f"ResNet-50 shapes, 161 tensors, 25.6M float32, {label}"] = {
            "torch for-loop (default)": lambda t0=t0: torch_step(resnet, f32, t0, False),
            "torch foreach": lambda t0=t0: torch_step(resnet, f32, t0, True),
            "naive NumPy": lambda t0=t0: naive_numpy_step(resnet, "float32", t0),
            "optimized fast": lambda t0=t0: optimized_step(resnet, "float32", t0, "fast"),
            "optimized torch profile": lambda t0=t0: optimized_step(resnet, "float32", t0, "torch"),
            "memory bound": lambda t0=t0: bound_step(resnet, "float32", t0 == 0.0),
        }
    cases["10,000 packed tensors of 100 float32"] = {
        "torch for-loop (default)": lambda: torch_step(tiny, f32, 1e6, False),
        "torch foreach": lambda: torch_step(tiny, f32, 1e6, True),
        "optimized fast": lambda: optimized_step(tiny, "float32", 1e6, "fast", packed=True),
        "optimized unpacked": lambda: optimized_step(tiny, "float32", 1e6, "fast"),
        "memory bound": lambda: bound_step(tiny, "float32", False),
    }
    for dtype, torch_dtype in (("float32", f32), ("float64", f64)):
        cases[f"one tensor of 1e7 {dtype}, averaging on"] = {
            "torch for-loop (default)": lambda d=torch_dtype: torch_step(large, d, 0.0, False),
            "optimized fast": lambda d=dtype: optimized_step(large, d, 0.0, "fast"),
            "optimized torch profile": lambda d=dtype: optimized_step(large, d, 0.0, "torch"),
            "memory bound": lambda d=dtype: bound_step(large, d, True),
        }

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}, "
          f"kernel blocks of {BLOCK_BYTES >> 20} MiB per array, threads {DEFAULT_THREADS}, "
          f"best of {repeat} interleaved rounds")  # fmt: skip
    results: dict[str, Any] = {
        name: run_case(name, steps, repeat) for name, steps in cases.items() if arguments.only in name
    }
    print("\nratios")
    for name, timings in results.items():
        fast = timings["optimized fast"]
        parts = [f"torch/optimized {timings['torch for-loop (default)'] / fast:.2f}x"]
        parts.append(f"optimized/bound {fast / timings['memory bound']:.2f}x")
        if "optimized torch profile" in timings:
            parts.append(f"torch profile/fast {timings['optimized torch profile'] / fast:.2f}x")
        print(f"  {name}: " + ", ".join(parts))
    if arguments.out:
        arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
