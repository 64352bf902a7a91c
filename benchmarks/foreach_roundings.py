"""``python -m benchmarks.foreach_roundings``: how torch's foreach ASGD rounds, established on this machine.

The ``torch-foreach`` profile (:mod:`reference.numerics`) rests on five claims about torch 2.13's CPU
kernels. Each is checked here on millions of inputs against an exact model, and the counts are
printed; nothing here is a test (the test suite checks the same claims on fewer inputs):

1. ``_foreach_add(g, theta, alpha=s)`` is ``fma(s, theta, g)``: one rounding (float32, float64).
2. ``_foreach_addcmul_(x, y, z, value=v)`` is ``fma(v*y, z, x)``: one rounding, in the vectorized
   body and the scalar tail alike.
3. The 0-d ``pow(b, alpha)`` of η's schedule is the C library's binary64 ``pow`` rounded once to
   float32 (``std::pow(float, double)``), which is neither NumPy's float32 ``power`` nor the
   vectorized pow of a long contiguous tensor.
4. ``alpha = 0.5`` goes to ATen's ``sqrt`` kernel (MKL here), which is not correctly rounded: it is
   checked on every float32 in [1, 4), which covers every base because the errors repeat with each
   factor of 4.
5. The whole η expression, ``torch.as_tensor(lr / ((1 + lambd * lr * step) ** alpha))`` with a
   float32 0-d ``step``, equals :meth:`reference.numerics.Numerics.schedule` of ``torch-foreach``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from optimized.fma import fused_multiply_add
from reference.numerics import TORCH_FOREACH

TAILS = tuple(range(1, 16))
"""Lengths below one AVX-512 vector of float32: torch's scalar tail only."""


def operands(rng: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    """Values spread over magnitudes from 1e-6 to 1e4, both signs."""
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 4, n)).astype(dtype)


def bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint32 if values.dtype == np.float32 else np.uint64)


def count(name: str, got: np.ndarray, single: np.ndarray, double: np.ndarray) -> bool:
    """Print how often torch's result has the bits of one rounding and of two; whether always one."""
    same_single = int(np.count_nonzero(bits(got) == bits(single)))
    same_double = int(np.count_nonzero(bits(got) == bits(double)))
    print(f"  {name:<58} one rounding {same_single:>10,} of {got.size:,}; two roundings {same_double:>10,}")
    return same_single == got.size


def elementwise(rng: np.random.Generator, n: int) -> bool:
    """Claims 1 and 2."""
    holds = True
    for dtype in (np.float32, np.float64):
        for sizes in ([n], list(TAILS) * max(1, n // (8 * sum(TAILS)))):
            pieces = len(sizes)
            theta, grad, other = (operands(rng, sum(sizes), dtype) for _ in range(3))
            s = dtype(rng.uniform(0.01, 0.5))
            where = "one long tensor" if pieces == 1 else f"{pieces:,} tensors of {TAILS[0]}..{TAILS[-1]}"
            split = np.cumsum(sizes)[:-1]

            def tensors(values: np.ndarray, split: np.ndarray = split) -> list[torch.Tensor]:
                return [torch.from_numpy(piece.copy()) for piece in np.split(values, split)]

            added = torch.cat(torch._foreach_add(tensors(grad), tensors(theta), alpha=float(s))).numpy()
            fused = fused_multiply_add(float(s), theta, grad.copy(), np.empty_like(grad))
            holds &= count(f"{dtype.__name__} add(alpha), {where}", added, fused, grad + s * theta)

            updated = tensors(theta)
            scalar = torch.tensor(float(np.float32(s)))  # eta and mu are float32 0-d tensors
            torch._foreach_addcmul_(updated, tensors(grad), [scalar] * pieces, value=-1)
            got = torch.cat(updated).numpy()
            s32 = float(np.float32(s))
            fused = fused_multiply_add(-s32, grad, theta.copy(), np.empty_like(theta))
            holds &= count(
                f"{dtype.__name__} addcmul(value=-1), {where}", got, fused, theta - grad * dtype(s32)
            )

            averages = tensors(other)
            torch._foreach_addcmul_(averages, tensors(theta), [scalar] * pieces)
            got = torch.cat(averages).numpy()
            fused = fused_multiply_add(s32, theta, other.copy(), np.empty_like(other))
            holds &= count(
                f"{dtype.__name__} addcmul(value=1), {where}", got, fused, other + theta * dtype(s32)
            )
    return holds


def powers(rng: np.random.Generator, n: int) -> bool:
    """Claim 3, through a strided tensor (torch's scalar path, the one a 0-d tensor takes)."""
    holds = True
    bases = (1 + rng.random(n) * 10.0 ** rng.uniform(-7, 6, n)).astype(np.float32)
    for alpha in (0.3, 0.75, 1.5, 2.5, float(rng.uniform(0, 4))):
        spread = torch.from_numpy(np.repeat(bases, 2))[::2]
        assert not spread.is_contiguous()
        got = (spread**alpha).numpy()
        probe = [(torch.tensor(float(b)) ** alpha).item() for b in bases[:2000]]
        assert np.array_equal(np.float32(probe), got[:2000]), "the strided path is not the 0-d path"
        model = np.array([b**alpha for b in bases.astype(np.float64).tolist()]).astype(np.float32)
        numpy32 = np.power(bases, np.float32(alpha))
        contiguous = (torch.from_numpy(bases) ** alpha).numpy()
        same = int(np.count_nonzero(bits(got) == bits(model)))
        print(
            f"  alpha={alpha:<8.4g} binary64 pow rounded once {same:>10,} of {n:,}; NumPy float32 power "
            f"{int(np.count_nonzero(got == numpy32)):>10,}; a contiguous tensor's pow "
            f"{int(np.count_nonzero(got == contiguous)):>10,}"
        )
        holds &= same == n
    return holds


def square_roots() -> None:
    """Claim 4: every float32 in [1, 4) through ``pow(b, 0.5)``."""
    first, stop = np.float32(1).view(np.int32), np.float32(4).view(np.int32)
    bases = np.arange(first, stop, dtype=np.int32).view(np.float32)
    got = (torch.from_numpy(bases) ** 0.5).numpy()
    correct = np.sqrt(bases)
    wrong = got != correct
    low = np.all(got[wrong].view(np.int32) - correct[wrong].view(np.int32) == -1)
    print(
        f"  pow(b, 0.5) differs from the correctly rounded sqrt for {int(np.count_nonzero(wrong)):,} of "
        f"{bases.size:,} float32 in [1, 4) ({np.count_nonzero(wrong) / bases.size:.2%}), "
        f"{'always 1 ULP low' if low else 'in both directions'}"
    )


def schedules(rng: np.random.Generator, cases: int) -> bool:
    """Claim 5: the whole expression, as torch's foreach code evaluates it."""
    alphas = (0.0, 0.25, 0.3, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0)
    differing, started = 0, time.perf_counter()
    for case in range(cases):
        lr = float(10 ** rng.uniform(-6, 1))
        lambd = float(10 ** rng.uniform(-8, 0))
        alpha = alphas[case % len(alphas)] if case % 3 else float(rng.uniform(0, 4))
        if alpha == 0.5:
            continue
        step = float(rng.integers(1, 2**24 + 1)) if case % 2 else float(rng.integers(1, 1000))
        step_tensor = torch.tensor(step, dtype=torch.float32)
        eta = torch.as_tensor(lr / ((1 + lambd * lr * step_tensor) ** alpha)).item()
        modelled, _ = TORCH_FOREACH.schedule(step, lr=lr, lambd=lambd, alpha=alpha, t0=math.inf)
        differing += np.float32(eta).tobytes() != np.float32(modelled).tobytes()
    seconds = time.perf_counter() - started
    print(f"  eta differs in {differing} of {cases:,} random cases ({seconds:.0f} s)")
    return differing == 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.foreach_roundings", description=__doc__)
    parser.add_argument("--elements", type=int, default=4_000_000, help="values per elementwise check")
    parser.add_argument("--cases", type=int, default=1_000_000, help="random cases of the eta expression")
    arguments = parser.parse_args()
    rng = np.random.default_rng(20261130)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, numpy {np.__version__}, CPU capability {capability}")
    print("\n1-2. fused multiply-adds of the foreach step (torch's result equals ...)")
    fused = elementwise(rng, arguments.elements)
    print("\n3. the 0-d pow of eta's schedule (torch's result equals ...)")
    powered = powers(rng, arguments.elements)
    print("\n4. alpha = 0.5: ATen's sqrt kernel")
    square_roots()
    print("\n5. the eta expression against reference.numerics.TORCH_FOREACH.schedule")
    scheduled = schedules(rng, arguments.cases)
    verdict = "hold" if fused and powered and scheduled else "DO NOT HOLD"
    print(f"\nclaims 1, 2, 3 and 5 {verdict} on this machine")


if __name__ == "__main__":
    main()
