"""The vectorized fused multiply-add against the rounding model's exact ``fma``, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optimized.fma import fused_multiply_add
from reference import rounding

UNSIGNED = {np.float32: np.uint32, np.float64: np.uint64}
FORMAT = {np.float32: rounding.BINARY32, np.float64: rounding.BINARY64}


def any_value(dtype: type) -> st.SearchStrategy[float]:
    """Every bit pattern of ``dtype`` is possible, special values included."""
    width = np.dtype(dtype).itemsize * 8
    return st.integers(0, 2**width - 1).map(lambda b: float(np.array(b, UNSIGNED[dtype]).view(dtype)))


@st.composite
def fma_operands(draw: st.DrawFn, dtype: type) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, x, y)`` with arbitrary patterns, ordinary values, and ``y`` close to ``-s * x``.

    Near-cancellation is where a double rounding differs from a fused one.
    """
    s = draw(st.one_of(any_value(dtype), st.floats(-10, 10, width=32 if dtype is np.float32 else 64)))
    size = draw(st.integers(1, 40))
    x = np.array([draw(any_value(dtype)) for _ in range(size)], dtype)
    cancel = draw(st.lists(st.floats(-1e-6, 1e-6), min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        near = (-(x.astype(np.float64) * s) * (1 + np.array(cancel))).astype(dtype)
        independent = np.array([draw(any_value(dtype)) for _ in range(size)], dtype)
    y = np.where(np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))), near, independent)
    return float(dtype(s)), x, y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@given(data=st.data())
def test_fused_multiply_add_is_correctly_rounded(dtype: type, data: st.DataObject) -> None:
    s, x, y = data.draw(fma_operands(dtype))
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        fused_multiply_add(s, x, y, out)
    for i in range(x.size):
        expected = rounding.fma(FORMAT[dtype], s, float(x[i]), float(y[i]))
        if math.isnan(expected):
            assert np.isnan(out[i]), (s, x[i], y[i])
        else:
            assert np.array(expected, dtype).tobytes() == out[i].tobytes(), (s, x[i], y[i], expected, out[i])


def test_fused_multiply_add_may_write_over_its_addend() -> None:
    x = np.array([1 + 2.0**-23], np.float32)
    y = np.array([-1.0], np.float32)
    fused_multiply_add(float(np.float32(1 - 2.0**-23)), x, y, y)
    assert y[0] == -(2.0**-46)  # one rounding; a separate product would give 0


def test_float64_edge_cases_outside_the_error_free_range() -> None:
    """Huge, tiny and non-finite operands take the exact path and are still correctly rounded."""
    big, tiny = 2.0**1000, 2.0**-1000
    x = np.array([big, tiny, math.inf, 1.0, 3.0, -0.0], np.float64)
    y = np.array([-(2.0**1023), tiny, -math.inf, math.nan, -(2.0**1023), -0.0], np.float64)
    out = np.empty_like(x)
    with np.errstate(all="ignore"):
        fused_multiply_add(2.0**23, x, y, out)
    expected = [
        rounding.fma(rounding.BINARY64, 2.0**23, a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)
    ]
    assert out[0] == expected[0] and out[1] == expected[1] and out[4] == expected[4]
    assert np.isnan(out[2]) and np.isnan(out[3])
    assert out[5] == 0 and math.copysign(1, out[5]) == -1.0  # (+s) * (-0) + (-0) is -0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@given(data=st.data())
def test_fused_multiply_add_in_place_with_power_of_two_factors(dtype: type, data: st.DataObject) -> None:
    """``out`` aliasing ``y`` (as the kernel's line 6 does), with factors like eta = 0.5 whose sums
    land exactly on midpoints: the elements the float32 path re-checks must read the old ``y``."""
    s = data.draw(st.sampled_from([0.5, -0.5, 0.25, -1.0, 2.0**-20]))
    values = st.floats(-4, 4, width=32 if dtype is np.float32 else 64)
    x = np.array(data.draw(st.lists(values, min_size=1, max_size=30)), dtype)
    y = np.array(data.draw(st.lists(values, min_size=x.size, max_size=x.size)), dtype)
    expected = [
        rounding.fma(FORMAT[dtype], s, float(a), float(b))
        for a, b in zip(x.tolist(), y.tolist(), strict=True)
    ]
    fused_multiply_add(s, x, y, y)
    assert y.tobytes() == np.array(expected, dtype).tobytes()


def test_float32_double_rounding_hazard_is_repaired() -> None:
    """RN64(s*x + y) lands exactly on a float32 midpoint although the exact value is below it;
    rounding that float64 sum to float32 would round up, a true FMA rounds down."""
    s, x, y = 0.00025264956639148295, 0.00023591825447510928, 1.0000001192092896
    out = np.empty(1, np.float32)
    fused_multiply_add(s, np.array([x], np.float32), np.array([y], np.float32), out)
    assert float(out[0]) == rounding.fma(rounding.BINARY32, s, x, y) == 1.0000001192092896
    assert np.float32(np.float64(s) * np.float64(x) + np.float64(y)) != out[0]


def test_a_block_full_of_hazards_is_repaired_in_bounded_chunks() -> None:
    """A power-of-two factor puts many float64 sums on a float32 midpoint (the average's
    ``ax + mu * (theta - ax)`` with ``mu = 1/2**k`` in the foreach profile), so they are redone
    across several repair chunks: every element is still the correctly rounded FMA."""
    rng = np.random.default_rng(7)
    n = 3 * 4096 + 17
    s = 0.25
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    out = np.empty(n, np.float32)
    fused_multiply_add(s, x, y, out)
    expected = np.array(
        [rounding.fma(rounding.BINARY32, s, float(a), float(b)) for a, b in zip(x, y, strict=True)],
        np.float32,
    )
    assert out.tobytes() == expected.tobytes()
    sums = np.float64(s) * x.astype(np.float64) + y.astype(np.float64)
    on_a_midpoint = (sums.view(np.int64) & ((1 << 29) - 1)) == 1 << 28
    assert np.count_nonzero(on_a_midpoint) > n // 10, "most chunks had elements to redo"


def test_true_hazards_in_every_repair_chunk_are_repaired() -> None:
    """The double-rounding hazard of the test above, planted in each of four repair chunks among
    ordinary elements: each is the true FMA, which double rounding would miss."""
    s, x_hazard, y_hazard = 0.00025264956639148295, 0.00023591825447510928, 1.0000001192092896
    rng = np.random.default_rng(8)
    n = 4 * 4096
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    planted = [1, 4096 + 5, 2 * 4096 + 77, n - 1]
    x[planted], y[planted] = x_hazard, y_hazard
    out = np.empty(n, np.float32)
    fused_multiply_add(s, x, y, out)
    assert out[planted].tolist() == [rounding.fma(rounding.BINARY32, s, x_hazard, y_hazard)] * 4
    assert np.float32(np.float64(s) * np.float64(x_hazard) + np.float64(y_hazard)) != out[1]
