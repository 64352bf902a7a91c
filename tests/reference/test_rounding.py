"""The rounding model against NumPy's hardware arithmetic and against exact rational results."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from reference import rounding
from reference.rounding import BINARY16, BINARY32, BINARY64, BinaryFormat

FORMATS = {
    "float16": (BINARY16, np.float16, np.uint16),
    "float32": (BINARY32, np.float32, np.uint32),
    "float64": (BINARY64, np.float64, np.uint64),
}


def value_of(bit_pattern: int, dtype: type) -> float:
    unsigned = {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}[dtype]
    return float(np.array(bit_pattern, unsigned).view(dtype))


def special_values(dtype: type) -> list[float]:
    info = np.finfo(dtype)
    return [
        0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0,
        float(info.max), -float(info.max), float(info.smallest_normal), -float(info.smallest_normal),
        float(info.smallest_subnormal), -float(info.smallest_subnormal), float(info.eps), float(info.epsneg),
    ]  # fmt: skip


def operands(dtype: type) -> st.SearchStrategy[tuple[float, float]]:
    """Pairs of values of ``dtype``: arbitrary bit patterns, special values, and near neighbours.

    Neighbours (a pattern and a nearby pattern, possibly of the other sign) exercise cancellation,
    carries across binades and ties, which independent random patterns almost never reach.
    """
    width = np.dtype(dtype).itemsize * 8
    patterns = st.integers(0, 2**width - 1)
    anything = st.one_of(patterns.map(lambda b: value_of(b, dtype)), st.sampled_from(special_values(dtype)))
    neighbours = st.tuples(patterns, st.integers(-(2**12), 2**12), st.booleans()).map(
        lambda t: (
            value_of(t[0], dtype),
            value_of(
                ((t[0] + t[1]) % 2 ** (width - 1)) | ((t[0] >> (width - 1)) ^ t[2]) << (width - 1), dtype
            ),
        )
    )
    return st.one_of(st.tuples(anything, anything), neighbours)


def assert_same_value(got: float, expected: np.floating, dtype: type, context: str) -> None:
    """Equal bits, or both NaN: IEEE 754 leaves NaN payloads to the implementation."""
    if math.isnan(got) and np.isnan(expected):
        return
    got_bits = np.array(got, dtype).tobytes()
    assert got_bits == np.asarray(expected, dtype).tobytes(), f"{context}: model {got!r}, NumPy {expected!r}"


OPERATIONS = {
    "add": (rounding.add, np.add),
    "sub": (rounding.sub, np.subtract),
    "mul": (rounding.mul, np.multiply),
}


@pytest.mark.parametrize("dtype_name", FORMATS)
@pytest.mark.parametrize("operation", OPERATIONS)
@given(data=st.data())
def test_add_sub_mul_match_numpy_bit_for_bit(dtype_name: str, operation: str, data: st.DataObject) -> None:
    fmt, dtype, _ = FORMATS[dtype_name]
    model, numpy_operation = OPERATIONS[operation]
    pairs = data.draw(st.lists(operands(dtype), min_size=1, max_size=50))
    a = np.array([p[0] for p in pairs], dtype)
    b = np.array([p[1] for p in pairs], dtype)
    with np.errstate(all="ignore"):
        expected = numpy_operation(a, b)
    for x, y, e in zip(a.tolist(), b.tolist(), expected, strict=True):
        assert_same_value(model(fmt, x, y), e, dtype, f"{operation}({x!r}, {y!r}) in {dtype_name}")


@pytest.mark.parametrize("dtype_name", ["float16", "float32"])
@given(pattern=st.integers(0, 2**64 - 1))
@example(pattern=0x3FF0_0000_1000_0000)  # 1 + 2**-24: a binary32 tie that must round to even
def test_convert_matches_numpy_casts(dtype_name: str, pattern: int) -> None:
    fmt, dtype, _ = FORMATS[dtype_name]
    x = value_of(pattern, np.float64)
    with np.errstate(all="ignore"):
        expected = np.float64(x).astype(dtype)
    assert_same_value(rounding.convert(fmt, x), expected, dtype, f"convert({x!r}) to {dtype_name}")


def exact_rationals() -> st.SearchStrategy[Fraction]:
    """Rationals spread over and beyond binary64's range: dyadic, general, and exact ties."""
    magnitude = st.integers(-1200, 1100)
    dyadic = st.builds(lambda n, e: Fraction(n) * Fraction(2) ** e, st.integers(-(2**70), 2**70), magnitude)
    general = st.builds(
        lambda n, d, e: Fraction(n, d) * Fraction(2) ** e,
        st.integers(-(2**80), 2**80),
        st.integers(1, 2**80),
        magnitude,
    )
    # Midpoints between adjacent binary64 values (54 significant bits, the last one set): ties.
    midpoint = st.builds(
        lambda k, e: Fraction(k | 1) * Fraction(2) ** e,
        st.integers(2**53, 2**54 - 1),
        st.integers(-1128, 970),
    )
    return st.one_of(dyadic, general, midpoint)


@given(x=exact_rationals())
def test_round_exact_binary64_matches_cpython(x: Fraction) -> None:
    """CPython's ``float(Fraction)`` is correctly rounded: an oracle independent of the model."""
    try:
        expected = float(x)
    except OverflowError:
        expected = math.inf if x > 0 else -math.inf
    got = rounding.round_exact(BINARY64, x, zero_is_negative=x < 0)
    assert got == expected and math.copysign(1, got) == math.copysign(1, expected), (x, got, expected)


def assert_nearest_even(fmt: BinaryFormat, dtype: type, exact: Fraction, got: float) -> None:
    """``got`` is the correctly rounded ``exact``: no neighbour in ``dtype`` is nearer, ties go to even.

    The check uses NumPy's ``nextafter``, not the model, so it is an independent characterization.
    """
    overflow_threshold = Fraction(2) ** fmt.emax * (2 - Fraction(1, 2**fmt.precision))
    if math.isinf(got):
        assert abs(exact) >= overflow_threshold and (got > 0) == (exact > 0), (exact, got)
        return
    assert abs(exact) < overflow_threshold, (exact, got)
    here = np.array(got, dtype)
    distance = abs(exact - Fraction(got))
    for direction in (-math.inf, math.inf):
        with np.errstate(over="ignore"):
            neighbour = np.nextafter(here, np.array(direction, dtype))
        if np.isinf(neighbour):
            continue
        other = abs(exact - Fraction(float(neighbour)))
        assert distance <= other, f"{float(neighbour)!r} is nearer to {exact} than {got!r}"
        if distance == other and got != 0:
            assert int(here.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[here.itemsize])) % 2 == 0, (
                f"tie at {exact} rounded to the odd {got!r}"
            )


@pytest.mark.parametrize("dtype_name", FORMATS)
@given(data=st.data())
def test_fma_is_the_correctly_rounded_exact_result(dtype_name: str, data: st.DataObject) -> None:
    fmt, dtype, _ = FORMATS[dtype_name]
    (a, b), (c, _) = data.draw(operands(dtype)), data.draw(operands(dtype))
    assume(all(math.isfinite(v) for v in (a, b, c)))  # special operands: test_fma_special_values
    got = rounding.fma(fmt, a, b, c)
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        assert got == 0
        return
    assert_nearest_even(fmt, dtype, exact, got)
    if got == 0:
        assert math.copysign(1, got) == (1 if exact > 0 else -1), "an underflowed zero keeps its sign"


@pytest.mark.parametrize("dtype_name", FORMATS)
@given(data=st.data())
def test_fma_of_a_unit_factor_is_addition(dtype_name: str, data: st.DataObject) -> None:
    """``fma(1, b, c)`` rounds ``b + c`` once, so it is NumPy's addition, signed zeros and all."""
    fmt, dtype, _ = FORMATS[dtype_name]
    b, c = data.draw(operands(dtype))
    with np.errstate(all="ignore"):
        expected = np.add(np.array(b, dtype), np.array(c, dtype))
    assert_same_value(rounding.fma(fmt, 1.0, b, c), expected, dtype, f"fma(1, {b!r}, {c!r})")


TINY32 = float(np.finfo(np.float32).smallest_subnormal)
FMA_SPECIAL_CASES = [
    # (a, b, c, expected) in binary32
    (math.inf, 0.0, 1.0, math.nan),
    (0.0, -math.inf, 1.0, math.nan),
    (math.inf, 2.0, -math.inf, math.nan),
    (math.inf, -2.0, -math.inf, -math.inf),
    (2.0, 3.0, math.inf, math.inf),
    (2.0, 3.0, math.nan, math.nan),
    (1.0, 1.0, -1.0, 0.0),  # exact cancellation is +0
    (-0.0, 1.0, -0.0, -0.0),  # (-0) + (-0) is -0
    (-0.0, 1.0, 0.0, 0.0),
    (0.0, -5.0, -0.0, -0.0),  # the product's sign joins the zero-sum rule
    (-TINY32, 0.5, 0.0, -0.0),  # underflow to zero keeps the exact result's sign (ties to even)
    (TINY32, 0.75, 0.0, TINY32),
    (float(np.finfo(np.float32).max), 2.0, -float(np.finfo(np.float32).max), float(np.finfo(np.float32).max)),
    (float(np.finfo(np.float32).max), 1.0, float(np.finfo(np.float32).max), math.inf),
]


@pytest.mark.parametrize(("a", "b", "c", "expected"), FMA_SPECIAL_CASES)
def test_fma_special_values(a: float, b: float, c: float, expected: float) -> None:
    got = rounding.fma(BINARY32, a, b, c)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected and math.copysign(1, got) == math.copysign(1, expected), got


def test_fma_rounds_once_where_two_roundings_differ() -> None:
    """(1 + 2**-23) * (1 - 2**-23) - 1 = -2**-46 exactly; a separate product rounds it to 0."""
    a, b = 1 + 2.0**-23, 1 - 2.0**-23
    assert rounding.fma(BINARY32, a, b, -1.0) == -(2.0**-46)
    assert rounding.add(BINARY32, rounding.mul(BINARY32, a, b), -1.0) == 0.0


def test_format_of_maps_complex_to_component_format_and_refuses_others() -> None:
    assert rounding.format_of(np.dtype(np.complex64)) is BINARY32
    assert rounding.format_of(np.dtype(np.complex128)) is BINARY64
    with pytest.raises(TypeError, match=r"longdouble|float128"):
        rounding.format_of(np.dtype(np.longdouble))
