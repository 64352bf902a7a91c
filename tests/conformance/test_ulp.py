"""The ULP distance: exact on the ordered integer line, with the NaN, Inf and ±0 policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.ulp import compare_ulps

DTYPES = [np.float16, np.float32, np.float64]


def ulp(a: float, b: float, dtype: type) -> int:
    return compare_ulps(np.array([a], dtype), np.array([b], dtype)).max_ulp


@pytest.mark.parametrize("dtype", DTYPES)
def test_neighbours_are_one_ulp_apart_across_zero_and_binades(dtype: type) -> None:
    tiny = np.finfo(dtype).smallest_subnormal
    assert ulp(0.0, float(tiny), dtype) == 1
    assert ulp(-float(tiny), float(tiny), dtype) == 2
    one = np.array(1.0, dtype)
    assert ulp(1.0, float(np.nextafter(one, dtype(2))), dtype) == 1
    assert ulp(1.0, float(np.nextafter(one, dtype(0))), dtype) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zeros_are_zero_ulp_apart(dtype: type) -> None:
    assert ulp(0.0, -0.0, dtype) == 0


def test_opposite_sign_extremes_do_not_wrap_around() -> None:
    """float32 ±1e38: about 4.25e9 ULP (numpy's nulp_diff reports about 4.7e7)."""
    expected = 2 * int(np.array(1e38, np.float32).view(np.uint32))
    assert ulp(1e38, -1e38, np.float32) == expected
    assert expected > 4.2e9
    largest = float(np.finfo(np.float64).max)
    assert ulp(largest, -largest, np.float64) == 2 * int(np.array(largest).view(np.uint64))
    # The widest distance, -inf to +inf in float64, still fits: 2 * 0x7FF0000000000000 < 2**64.
    assert ulp(-math.inf, math.inf, np.float64) == 2 * 0x7FF0_0000_0000_0000


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinity_is_one_ulp_past_the_largest_finite_value(dtype: type) -> None:
    assert ulp(float(np.finfo(dtype).max), math.inf, dtype) == 1
    assert ulp(-float(np.finfo(dtype).max), -math.inf, dtype) == 1
    assert ulp(math.inf, math.inf, dtype) == 0


def test_nan_policy() -> None:
    a = np.array([np.nan, np.nan, 1.0, 2.0], np.float32)
    b = np.array([-np.nan, 1.0, np.nan, 2.0], np.float32)
    comparison = compare_ulps(a, b)
    assert comparison.ulps.tolist() == [0, 0, 0, 0]
    assert comparison.nan_mismatch.tolist() == [False, True, True, False]
    assert comparison.nan_mismatches == 2


def test_complex_arrays_compare_their_components() -> None:
    a = np.array([1 + 1j], np.complex64)
    b = np.array([complex(1, float(np.nextafter(np.float32(1), np.float32(2))))], np.complex64)
    assert compare_ulps(a, b).ulps.tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_distance_counts_the_floats_in_between(dtype: type, data: st.DataObject) -> None:
    """An independent count: step with ``nextafter`` from the smaller value to the larger."""
    width = 32 if dtype is np.float32 else 64
    a = data.draw(st.floats(width=width, allow_nan=False))
    steps = data.draw(st.integers(0, 40))
    b = np.array(a, dtype)
    taken = 0
    while taken < steps and not np.isposinf(b):  # +inf is the end of the line
        with np.errstate(over="ignore"):
            b = np.nextafter(b, dtype(math.inf))
        taken += 1
    assert ulp(a, float(b), dtype) == taken


def test_mismatched_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot compare"):
        compare_ulps(np.zeros(2, np.float32), np.zeros(2, np.float64))
