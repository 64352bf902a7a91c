"""IEEE 754 binary arithmetic, rounded to nearest (ties to even) from exact values.

This module is the rounding model of the executable specification. Each operation forms its exact
result as a ratio of integers and rounds it once, so a reader can check every rule against IEEE
754-2019 without trusting any hardware. A finite float is exactly ``n / 2**k``
(:meth:`float.as_integer_ratio`), so sums, products and fused multiply-adds of floats are exact
integer arithmetic over a power of two; only a quotient needs a general denominator.

Values of binary16, binary32 and binary64 are carried as Python floats: every one of them is a
binary64 value, so the float holds it exactly. An operand must already be a value of the format.

The rules, each stated once:

* **Rounding** (:func:`round_exact`): to nearest, ties to the even significand; results below the
  normal range become subnormal with the same absolute quantum; a result at or beyond the overflow
  threshold (the midpoint above the largest finite value) becomes an infinity of its sign.
* **Signed zero** (:func:`_sign_of_zero_sum`): a rounded result of zero keeps the sign of the
  exact result; an exact zero sum is +0 unless both addends are -0; a zero product is signed by
  the exclusive-or of the factors' signs.
* **Invalid operations** (inf - inf, 0 * inf, 0 / 0, inf / inf, and a NaN operand) give NaN.
  IEEE 754 leaves NaN payloads and signs to the implementation (x86 returns -NaN for inf - inf and passes an
  operand's payload on), so the model returns one quiet NaN and comparisons treat all NaNs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "BINARY16",
    "BINARY32",
    "BINARY64",
    "BinaryFormat",
    "add",
    "convert",
    "div",
    "fma",
    "format_of",
    "mul",
    "round_exact",
    "sub",
]

NAN = math.nan


@dataclass(frozen=True)
class BinaryFormat:
    """An IEEE 754 binary interchange format: ``precision`` significand bits and exponent ``emax``."""

    name: str
    precision: int
    emax: int

    @property
    def emin(self) -> int:
        """The exponent of the smallest normal value."""
        return 1 - self.emax

    @property
    def largest(self) -> float:
        """The largest finite value."""
        return math.ldexp(2**self.precision - 1, self.emax - self.precision + 1)


BINARY16 = BinaryFormat("binary16", precision=11, emax=15)
BINARY32 = BinaryFormat("binary32", precision=24, emax=127)
BINARY64 = BinaryFormat("binary64", precision=53, emax=1023)

_FORMAT_BY_DTYPE_NAME = {
    "float16": BINARY16,
    "float32": BINARY32,
    "float64": BINARY64,
    "complex64": BINARY32,
    "complex128": BINARY64,
}


def format_of(dtype: object) -> BinaryFormat:
    """The format of a NumPy dtype's real components (complex64 → binary32, complex128 → binary64)."""
    name = getattr(dtype, "name", str(dtype))
    try:
        return _FORMAT_BY_DTYPE_NAME[name]
    except KeyError:
        raise TypeError(
            f"dtype {name!r} has no binary16/binary32/binary64 rounding model; "
            f"supported: {sorted(_FORMAT_BY_DTYPE_NAME)}"
        ) from None


def _round_magnitude(fmt: BinaryFormat, n: int, d: int) -> float:
    """Round the positive exact value ``n / d`` to ``fmt``: nearest, ties to even, +inf past the
    overflow threshold."""
    # The binade: 2**e <= x < 2**(e + 1).
    e = n.bit_length() - d.bit_length()
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    # The quantum (unit in the last place) of the binade, clamped at the subnormal quantum.
    quantum_exponent = max(e, fmt.emin) - (fmt.precision - 1)
    if quantum_exponent >= 0:
        significand, remainder = divmod(n, d << quantum_exponent)
        twice_remainder, divisor = remainder << 1, d << quantum_exponent
    else:
        significand, remainder = divmod(n << -quantum_exponent, d)
        twice_remainder, divisor = remainder << 1, d
    if twice_remainder > divisor or (twice_remainder == divisor and significand & 1):
        significand += 1
    # A carry may have moved the result into the next binade; past emax it overflows.
    if significand.bit_length() - 1 + quantum_exponent > fmt.emax:
        return math.inf
    return math.ldexp(significand, quantum_exponent)


def round_exact(fmt: BinaryFormat, x: Fraction, *, zero_is_negative: bool = False) -> float:
    """The value of ``fmt`` nearest to the exact ``x`` (ties to even).

    A nonzero ``x`` that rounds to zero keeps its sign; an exact zero is -0 when
    ``zero_is_negative`` says so, as the operation that produced it decides.
    """
    return _round_ratio(fmt, x.numerator, x.denominator, zero_is_negative)


def _round_ratio(fmt: BinaryFormat, n: int, d: int, zero_is_negative: bool) -> float:
    """:func:`round_exact` of ``n / d`` (``d > 0``)."""
    if n == 0:
        return -0.0 if zero_is_negative else 0.0
    magnitude = _round_magnitude(fmt, abs(n), d)
    return magnitude if n > 0 else -magnitude


def _sum(n: int, d: int, m: int, e: int) -> tuple[int, int]:
    """``n / d + m / e`` for denominators that are powers of two, exactly, over the larger one."""
    if d >= e:
        return n + m * (d // e), d
    return n * (e // d) + m, e


def _is_negative(x: float) -> bool:
    """The sign bit of ``x`` (true for -0.0)."""
    return math.copysign(1.0, x) < 0


def _sign_of_zero_sum(a: float, b: float) -> bool:
    """Whether an exactly zero ``a + b`` is -0: only when both addends are -0 (round to nearest)."""
    return _is_negative(a) and _is_negative(b) and a == 0 and b == 0


def convert(fmt: BinaryFormat, x: float) -> float:
    """Round a binary64 value to ``fmt`` (a ``formatOf`` conversion)."""
    if fmt is BINARY64:
        return float(x)  # every binary64 value is its own binary64 rounding
    if math.isnan(x):
        return NAN
    if math.isinf(x) or x == 0:
        return float(x)  # signed zeros and infinities are values of every format
    # A binary64 value needs no Fraction: scaling it by a power of two is exact, so is rounding
    # the scaled value (below 2**precision) half to even with round(); the rule is _round_magnitude's.
    magnitude = abs(float(x))
    binade = math.frexp(magnitude)[1] - 1  # 2**binade <= magnitude < 2**(binade + 1)
    quantum_exponent = max(binade, fmt.emin) - (fmt.precision - 1)
    significand = round(math.ldexp(magnitude, -quantum_exponent))
    if significand.bit_length() - 1 + quantum_exponent > fmt.emax:
        rounded = math.inf
    else:
        rounded = math.ldexp(significand, quantum_exponent)
    return rounded if x > 0 else -rounded


def add(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a + b`` rounded to ``fmt``."""
    if math.isnan(a) or math.isnan(b):
        return NAN
    if math.isinf(a) or math.isinf(b):
        if math.isinf(a) and math.isinf(b) and a != b:
            return NAN  # inf - inf
        return a if math.isinf(a) else b
    n, d = _sum(*a.as_integer_ratio(), *b.as_integer_ratio())
    return _round_ratio(fmt, n, d, _sign_of_zero_sum(a, b))


def sub(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a - b`` rounded to ``fmt``; IEEE 754 defines it as ``a + (-b)``."""
    return add(fmt, a, -b)


def _product_is_negative(a: float, b: float) -> bool:
    return _is_negative(a) != _is_negative(b)


def mul(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a * b`` rounded to ``fmt``."""
    if math.isnan(a) or math.isnan(b):
        return NAN
    if math.isinf(a) or math.isinf(b):
        if a == 0 or b == 0:
            return NAN  # 0 * inf
        return -math.inf if _product_is_negative(a, b) else math.inf
    (n, d), (m, e) = a.as_integer_ratio(), b.as_integer_ratio()
    return _round_ratio(fmt, n * m, d * e, _product_is_negative(a, b))


def div(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a / b`` rounded to ``fmt``; a nonzero ``a`` over zero is an infinity signed as a product."""
    if math.isnan(a) or math.isnan(b) or (a == 0 and b == 0) or (math.isinf(a) and math.isinf(b)):
        return NAN
    negative = _product_is_negative(a, b)
    if math.isinf(a) or b == 0:
        return -math.inf if negative else math.inf
    if math.isinf(b):
        return -0.0 if negative else 0.0
    (n, d), (m, e) = a.as_integer_ratio(), b.as_integer_ratio()
    numerator, denominator = n * e, d * m
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    return _round_ratio(fmt, numerator, denominator, negative)


def fma(fmt: BinaryFormat, a: float, b: float, c: float) -> float:
    """``a * b + c`` with a single rounding to ``fmt`` (IEEE 754 fusedMultiplyAdd)."""
    if math.isnan(a) or math.isnan(b) or math.isnan(c):
        return NAN
    if math.isinf(a) or math.isinf(b):
        if a == 0 or b == 0:
            return NAN  # 0 * inf
        infinite_product = -math.inf if _product_is_negative(a, b) else math.inf
        return add(fmt, infinite_product, c)
    if math.isinf(c):
        return c
    (n, d), (m, e) = a.as_integer_ratio(), b.as_integer_ratio()
    product = n * m
    total, denominator = _sum(product, d * e, *c.as_integer_ratio())
    # A zero product carries the sign of a * b into the zero-sum rule.
    signed_product = -0.0 if _product_is_negative(a, b) else 0.0
    zero_is_negative = product == 0 and _sign_of_zero_sum(signed_product, c)
    return _round_ratio(fmt, total, denominator, zero_is_negative)
