"""The per-step comparison of two implementations: where bits first differ, and the figures per step."""

from __future__ import annotations

import numpy as np

from conformance.metrics import PairMetrics


def test_the_first_divergence_names_step_quantity_tensor_and_element() -> None:
    names = ("w", "z")
    same = [np.zeros((2, 3), np.float32), np.zeros(4, np.complex64)]
    metrics = PairMetrics()
    metrics.add(1, names, (same, same), (same, same))
    assert metrics.first is None and metrics.differing_bits == 0
    later = [same[0].copy(), same[1].copy()]
    later[1][2] = np.complex64(complex(0, np.float32(1e-45)))  # the imaginary part, one ULP off zero
    averages = [same[0].copy(), same[1].copy()]
    averages[0][1, 2] = -0.0  # -0 differs from +0 in its bits, by 0 ULP
    metrics.add(2, names, (same, averages), (later, same))
    first = metrics.first
    assert first is not None
    assert (first.step, first.quantity, first.tensor, first.element) == (2, "parameters", "z", "[2].imag")
    assert metrics.averages.first is not None and metrics.averages.first.element == "[1, 2]"
    assert metrics.parameters.differing_per_step == [0, 1] and metrics.averages.differing_per_step == [0, 1]
    assert metrics.parameters.max_ulp_per_step == [0, 1] and metrics.averages.max_ulp == 0


def test_the_normwise_figure_is_each_tensors_own_scale() -> None:
    """A large tensor does not hide the drift of a small one: the step's figure is the largest."""
    big = np.full(8, 1e6, np.float32)
    small = np.ones(2, np.float32)
    drifted = small.copy()
    drifted[0] = np.nextafter(np.float32(1), np.float32(2))
    metrics = PairMetrics()
    metrics.add(1, ("big", "small"), ([big, drifted], [big, small]), ([big, small], [big, small]))
    assert metrics.parameters.normwise_ulp_per_step == [1.0]


def test_tensors_of_mixed_dtypes_are_each_held_to_their_own_dtypes_budget() -> None:
    """In a scenario of mixed dtypes a float32 tensor drifting 2**13 ULP fails the float32 budget
    (2**12) although a float64 tensor may drift far more within its own (2**38)."""
    from conformance.scenarios import MIXED
    from conformance.verdicts import TORCH_PATHS_BUDGET, Policy, judge

    policy = Policy("bounded", ulp_budget=TORCH_PATHS_BUDGET)
    names = ("single", "double")
    base = [np.ones(4, np.float32), np.ones(4, np.float64)]

    def drifted(single_ulps: int, double_ulps: int) -> PairMetrics:
        moved = [
            base[0] + np.float32(single_ulps * np.spacing(np.float32(1))),
            base[1] + double_ulps * np.spacing(1.0),
        ]
        metrics = PairMetrics()
        metrics.add(1, names, (moved, moved), (base, base))
        return metrics

    within = judge(policy, drifted(2**11, 2**30), MIXED)
    assert within.holds, within.reason
    assert "float32 2.05e+03 of 4096" in within.reason and "float64 1.07e+09 of 274877906944" in within.reason
    over = judge(policy, drifted(2**13, 2**30), MIXED)
    assert not over.holds and "exceeds the budget in the float32 tensors" in over.reason
    assert drifted(2**13, 2**30).normwise_ulp_by_dtype == {"float32": 2.0**13, "float64": 2.0**30}


def test_the_first_divergence_carries_both_values_in_decimal_and_hex() -> None:
    from conformance.metrics import ArrayDifference

    left, right = np.array([1.0, 0.5], np.float32), np.array([1.0, 0.5], np.float32)
    right.view(np.uint32)[1] += 1
    difference = ArrayDifference()
    difference.add(3, "parameters", ["theta"], [left], [right])
    assert difference.first is not None
    assert difference.first.values == ("0.5 (0x3f000000)", "0.50000006 (0x3f000001)")
