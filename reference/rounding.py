"""IEEE 754 binary arithmetic, rounded to nearest (ties to even) from exact values.

This module is the rounding model of the executable specification. Each operation forms its exact
result from integers and rounds it once, so a reader can check every rule against IEEE 754-2019
without trusting any hardware. A finite float is exactly ``n / 2**k``
(:meth:`float.as_integer_ratio`), so sums, products and fused multiply-adds of floats are exact
integers times a power of two, rounded with shifts and masks (:func:`_round_scaled`); only a
quotient needs a general denominator (:func:`_round_quotient`).

Values of binary16, binary32 and binary64 are carried as Python floats: every one of them is a
binary64 value, so the float holds it exactly. An operand must already be a value of the format.

The rules, each stated once:

* **Rounding** (:func:`_round_scaled`, :func:`round_exact`): to nearest, ties to the even
  significand; results below the normal range become subnormal with the same absolute quantum; a
  result at or beyond the overflow threshold (the midpoint above the largest finite value) becomes an
  infinity of its sign.
* **Signed zero** (:func:`_sign_of_zero_sum`): a rounded result of zero keeps the sign of the
  exact result; an exact zero sum is +0 unless both addends are -0; a zero product is signed by
  the exclusive-or of the factors' signs.
* **Invalid operations** (inf - inf, 0 * inf, 0 / 0, inf / inf, and a NaN operand) give NaN.
  IEEE 754 leaves NaN payloads and signs to the implementation (x86 returns -NaN for inf - inf and passes an
  operand's payload on), so the model returns one quiet NaN and comparisons treat all NaNs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from math import copysign, inf, isfinite, isinf, isnan, ldexp

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
    emin: int = field(init=False, repr=False, compare=False)
    """The exponent of the smallest normal value, ``1 - emax``."""
    quantum_exponent_min: int = field(init=False, repr=False, compare=False)
    """The exponent of the smallest quantum, ``emin - (precision - 1)``: the subnormals' and that of
    the lowest normal binade (the smallest subnormal is ``2**quantum_exponent_min``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "emin", 1 - self.emax)
        object.__setattr__(self, "quantum_exponent_min", self.emin - (self.precision - 1))

    @property
    def largest(self) -> float:
        """The largest finite value."""
        return ldexp(2**self.precision - 1, self.emax - self.precision + 1)


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


def _round_scaled(fmt: BinaryFormat, n: int, k: int) -> float:
    """The exact nonzero ``n * 2**k`` rounded to ``fmt``: nearest, ties to even; an infinity of its
    sign at or past the overflow threshold, a zero of its sign at or below half the smallest
    subnormal."""
    magnitude = n if n > 0 else -n
    width = magnitude.bit_length()
    # The binade is 2**(width - 1 + k) <= |x| < 2**(width + k); its quantum (unit in the last
    # place) is 2**(width + k - precision), clamped at the subnormal quantum.
    quantum_exponent = width + k - fmt.precision
    if quantum_exponent < fmt.quantum_exponent_min:
        quantum_exponent = fmt.quantum_exponent_min
    shift = quantum_exponent - k  # the bits of ``magnitude`` below the quantum
    if shift <= 0:  # a multiple of the quantum: exact
        if width - 1 + k > fmt.emax:
            return inf if n > 0 else -inf
        return ldexp(n, k)
    significand = magnitude >> shift
    remainder = magnitude & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if remainder > half or (remainder == half and significand & 1):
        significand += 1
    # A carry may have moved the result into the next binade; past emax it overflows.
    if significand.bit_length() - 1 + quantum_exponent > fmt.emax:
        return inf if n > 0 else -inf
    rounded = ldexp(significand, quantum_exponent)  # +0.0 when it underflowed to zero
    return rounded if n > 0 else -rounded


def _round_quotient(fmt: BinaryFormat, n: int, d: int, k: int) -> float:
    """The exact nonzero ``n / d * 2**k`` (``d > 0``) rounded to ``fmt`` as :func:`_round_scaled`.

    ``s`` is chosen so that the integer quotient ``q`` of ``|n| * 2**s`` by ``d`` is at least
    ``2**(precision + 1)``, and a sticky bit stands for a nonzero remainder: ``q + 1/2`` for every
    value strictly between ``q`` and ``q + 1``. Counted in units of ``q`` (``2**(k - s)``), the
    exact value's binade starts at ``2**(precision + 1)`` or above, so its quantum is at least 4:
    every rounding boundary (a representable value or a midpoint) and every binade boundary is an
    integer, none lies strictly between ``q`` and ``q + 1``, and ``q + 1/2`` rounds as the exact
    quotient does. A zero remainder leaves the quotient exact.
    """
    magnitude = n if n > 0 else -n
    s = max(fmt.precision + 2 + d.bit_length() - magnitude.bit_length(), 0)
    quotient, remainder = divmod(magnitude << s, d)
    scaled = (quotient << 1) | (remainder != 0)
    return _round_scaled(fmt, scaled if n > 0 else -scaled, k - s - 1)


def round_exact(fmt: BinaryFormat, x: Fraction, *, zero_is_negative: bool = False) -> float:
    """The value of ``fmt`` nearest to the exact ``x`` (ties to even).

    A nonzero ``x`` that rounds to zero keeps its sign; an exact zero is -0 when
    ``zero_is_negative`` says so, as the operation that produced it decides.
    """
    if x == 0:
        return -0.0 if zero_is_negative else 0.0
    return _round_quotient(fmt, x.numerator, x.denominator, 0)


def _is_negative(x: float) -> bool:
    """The sign bit of ``x`` (true for -0.0)."""
    return copysign(1.0, x) < 0


def _sign_of_zero_sum(a: float, b: float) -> bool:
    """Whether an exactly zero ``a + b`` is -0: only when both addends are -0 (round to nearest)."""
    return _is_negative(a) and _is_negative(b) and a == 0 and b == 0


def _product_is_negative(a: float, b: float) -> bool:
    """The sign of ``a * b`` (and of ``a / b``): the exclusive-or of the operands' sign bits."""
    return _is_negative(a) != _is_negative(b)


def convert(fmt: BinaryFormat, x: float) -> float:
    """Round a binary64 value to ``fmt`` (a ``formatOf`` conversion)."""
    if fmt is BINARY64:
        return float(x)  # every binary64 value is its own binary64 rounding
    if isnan(x):
        return NAN
    if isinf(x) or x == 0:
        return float(x)  # signed zeros and infinities are values of every format
    n, d = float(x).as_integer_ratio()
    return _round_scaled(fmt, n, 1 - d.bit_length())


def add(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a + b`` rounded to ``fmt``."""
    if not (isfinite(a) and isfinite(b)):
        if isnan(a) or isnan(b) or (isinf(a) and isinf(b) and a != b):
            return NAN  # a NaN operand, or inf - inf
        return a if isinf(a) else b
    # a = n / 2**i and b = m / 2**j exactly (d.bit_length() == i + 1); the sum over 2**max(i, j):
    n, d = a.as_integer_ratio()
    m, e = b.as_integer_ratio()
    i, j = d.bit_length(), e.bit_length()
    if i >= j:
        total, k = n + (m << (i - j)), 1 - i
    else:
        total, k = (n << (j - i)) + m, 1 - j
    if total == 0:
        return -0.0 if _sign_of_zero_sum(a, b) else 0.0
    return _round_scaled(fmt, total, k)


def sub(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a - b`` rounded to ``fmt``; IEEE 754 defines it as ``a + (-b)``."""
    return add(fmt, a, -b)


def mul(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a * b`` rounded to ``fmt``."""
    if not (isfinite(a) and isfinite(b)):
        if isnan(a) or isnan(b) or a == 0 or b == 0:
            return NAN  # a NaN operand, or 0 * inf
        return -inf if _product_is_negative(a, b) else inf
    n, d = a.as_integer_ratio()
    m, e = b.as_integer_ratio()
    product = n * m
    if product == 0:
        return -0.0 if _product_is_negative(a, b) else 0.0
    return _round_scaled(fmt, product, 2 - d.bit_length() - e.bit_length())


def div(fmt: BinaryFormat, a: float, b: float) -> float:
    """``a / b`` rounded to ``fmt``; a nonzero ``a`` over zero is an infinity signed as a product."""
    if isnan(a) or isnan(b) or (a == 0 and b == 0) or (isinf(a) and isinf(b)):
        return NAN
    if isinf(a) or b == 0:
        return -inf if _product_is_negative(a, b) else inf
    if isinf(b) or a == 0:
        return -0.0 if _product_is_negative(a, b) else 0.0
    # (n / 2**i) / (m / 2**j) = (n / m) * 2**(j - i), with the sign carried by the numerator.
    n, d = a.as_integer_ratio()
    m, e = b.as_integer_ratio()
    if m < 0:
        n, m = -n, -m
    return _round_quotient(fmt, n, m, e.bit_length() - d.bit_length())


def fma(fmt: BinaryFormat, a: float, b: float, c: float) -> float:
    """``a * b + c`` with a single rounding to ``fmt`` (IEEE 754 fusedMultiplyAdd)."""
    if not (isfinite(a) and isfinite(b) and isfinite(c)):
        if isnan(a) or isnan(b) or isnan(c):
            return NAN
        if isinf(a) or isinf(b):
            if a == 0 or b == 0:
                return NAN  # 0 * inf
            infinite_product = -inf if _product_is_negative(a, b) else inf
            return add(fmt, infinite_product, c)
        return c
    # a * b = n * m / 2**(i + j) and c = o / 2**h exactly; the sum over the larger denominator:
    n, d = a.as_integer_ratio()
    m, e = b.as_integer_ratio()
    o, f = c.as_integer_ratio()
    product = n * m
    i_plus_j, h = d.bit_length() + e.bit_length() - 2, f.bit_length() - 1
    if i_plus_j >= h:
        total, k = product + (o << (i_plus_j - h)), -i_plus_j
    else:
        total, k = (product << (h - i_plus_j)) + o, -h
    if total == 0:
        # An exact zero of a zero product and a zero c follows the zero-sum rule with the
        # product's sign; a product cancelled by c gives +0.
        return -0.0 if product == 0 and _product_is_negative(a, b) and _is_negative(c) else 0.0
    return _round_scaled(fmt, total, k)
