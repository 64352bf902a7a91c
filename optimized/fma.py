"""Exact fused multiply-add ``out = s * x + y`` on NumPy arrays, rounded once, for float32 and float64.

NumPy has no FMA ufunc, and ``s * x + y`` rounds twice. torch's ``add(alpha=)`` rounds once on
x86-64, so the torch profile needs a correctly rounded emulation. Every function here writes into
caller-provided scratch (a :class:`FmaScratch`), so a step allocates nothing in the common case.

* binary32: ``s * x`` is exact in float64 (24 + 24 bits) and ``t = RN64(s*x + y)`` then
  ``RN32(t)`` is correct unless ``t`` sits exactly on a float32 midpoint (only then can the double
  rounding go the wrong way). Midpoints are recognised from ``t``'s bits (the 29 bits below
  float32's precision read ``1000…0``), and results at the bottom of float32's range (where the
  midpoints lie higher) are all checked. Those elements (rare, except where a coefficient is a power
  of two) are redone, a bounded chunk at a time, with a round-to-odd float64 sum, whose single
  rounding to float32 is exact (Boldo & Melquiond).
* binary64: Dekker's TwoProduct and Knuth's TwoSum split the exact value into float64 pieces, and
  Boldo & Melquiond's emulated FMA adds them with one round-to-odd step and one final rounding
  (``RN(th + RO(tl + ul))``). Its proof assumes no overflow or underflow in the pieces, so
  elements whose operands are non-finite, huge, or whose product is tiny are computed exactly,
  one by one, from rationals (:func:`exact_fma`). They are rare in practice.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["FmaScratch", "exact_fma", "fused_multiply_add"]

_SPLITTER = float(2**27 + 1)  # Veltkamp's constant for binary64
_SPLIT_LIMIT = 2.0**995  # beyond this, x * _SPLITTER overflows
_PRODUCT_FLOOR = 2.0**-968  # below this, the low part of a product is not representable
_SUM_LIMIT = 2.0**1020  # beyond this, TwoSum's intermediate values may overflow

_BELOW_BINARY32 = np.int64((1 << 29) - 1)  # float64 significand bits below float32's precision
_MIDPOINT = np.int64(1 << 28)
_EXPONENT_BINARY32 = np.int32(0x7F80_0000)
_SMALLEST_NORMAL_EXPONENT = np.int32(0x0080_0000)


_REPAIR_CHUNK = 4096
"""binary32 elements whose double rounding may go wrong are redone this many at a time, so a step
where many are (a power-of-two coefficient puts about half the sums on a midpoint) allocates only
index arrays of a bounded length."""


class FmaScratch:
    """Work arrays for :func:`fused_multiply_add` on up to ``size`` elements of ``dtype``."""

    def __init__(self, size: int, dtype: np.dtype[Any] | type = np.float32) -> None:
        self.repair: FmaScratch | None = None
        if np.dtype(dtype) == np.float32:
            self.wide = [np.empty(size, np.float64) for _ in range(2)]
            self.bits32 = np.empty(size, np.int32)
            self.narrow = np.empty(size, np.float32)
            # float64 room for the redone elements' round-to-odd sums, one chunk at a time
            self.repair = FmaScratch(min(size, _REPAIR_CHUNK), np.float64)
        else:
            self.wide = [np.empty(size, np.float64) for _ in range(6)]
        self.bits = np.empty(size, np.int64)
        self.flags = [np.empty(size, np.bool_) for _ in range(3)]


def _round_to_odd_sum_into(
    a: np.ndarray, b: np.ndarray, total: np.ndarray, error: np.ndarray, work: np.ndarray, scratch: FmaScratch
) -> None:
    """``total = RO(a + b)`` in float64 through Knuth's TwoSum, in place in the scratch arrays."""
    np.add(a, b, total)
    np.subtract(total, a, error)  # b_virtual
    np.subtract(total, error, work)  # a_virtual
    np.subtract(a, work, work)  # a's rounding error
    np.subtract(b, error, error)  # b's rounding error
    np.add(work, error, error)  # a + b = total + error exactly
    inexact_even, away, positive = (flag[: a.size] for flag in scratch.flags)
    low_bit = scratch.bits[: a.size]
    np.not_equal(error, 0, inexact_even)
    bits = total.view(np.int64)
    np.bitwise_and(bits, 1, low_bit)
    np.equal(low_bit, 0, away)
    np.logical_and(inexact_even, away, inexact_even)
    if not inexact_even.any():
        return
    np.greater(error, 0, away)  # the exact sum lies above total ...
    np.greater(total, 0, positive)
    np.equal(away, positive, away)  # ... which is away from zero when total is positive
    np.multiply(away, 2, low_bit)
    np.subtract(low_bit, 1, low_bit)  # +1 away from zero, -1 towards it
    np.multiply(low_bit, inexact_even, low_bit)
    np.add(bits, low_bit, bits)


def _fma_binary32(s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray, scratch: FmaScratch) -> None:
    n = x.size
    total, product = scratch.wide[0][:n], scratch.wide[1][:n]
    np.copyto(product, x)
    np.multiply(product, np.float64(s), out=product)  # exact: 24 + 24 bits
    np.copyto(total, y)
    np.add(total, product, out=total)
    # Hazards: t on a float32 midpoint (the 29 bits below float32's precision read 1000...0), or a
    # result at the bottom of float32's range (exponent field 0 or 1), where midpoints lie higher.
    low, midpoint = scratch.bits[:n], scratch.flags[0][:n]
    np.bitwise_and(total.view(np.int64), _BELOW_BINARY32, out=low)
    np.equal(low, _MIDPOINT, out=midpoint)
    rounded = scratch.narrow[:n]
    np.copyto(rounded, total, casting="same_kind")  # RN32(t); out may be y, so not written yet
    exponent, tiny = scratch.bits32[:n], scratch.flags[1][:n]
    np.bitwise_and(rounded.view(np.int32), _EXPONENT_BINARY32, out=exponent)
    np.less_equal(exponent, _SMALLEST_NORMAL_EXPONENT, out=tiny)
    hazard = np.logical_or(midpoint, tiny, out=midpoint)
    if hazard.any():
        repair = scratch.repair
        assert repair is not None
        for start in range(0, n, _REPAIR_CHUNK):
            where = np.flatnonzero(hazard[start : start + _REPAIR_CHUNK])
            if where.size == 0:
                continue
            where += start
            where = where[total[where] != 0]  # an exact zero sum needs no repair
            k = where.size
            exact_product, addend, odd, error, work = (array[:k] for array in repair.wide[:5])
            np.multiply(x[where], np.float64(s), exact_product)
            np.copyto(addend, y[where])
            _round_to_odd_sum_into(exact_product, addend, odd, error, work, repair)
            rounded[where] = odd
    np.copyto(out, rounded)


def _split(a: float) -> tuple[float, float]:
    """Veltkamp's split of a binary64 scalar: ``a = hi + lo`` exactly, each with at most 26
    significant bits."""
    t = a * _SPLITTER
    hi = t - (t - a)
    return hi, a - hi


def _fma_binary64(s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray, scratch: FmaScratch) -> None:
    n = x.size
    x_hi, x_lo, uh, ul, th, tl = (array[:n] for array in scratch.wide)
    s_hi, s_lo = _split(s)
    np.multiply(x, _SPLITTER, x_hi)  # Veltkamp's split of x
    np.subtract(x_hi, x, x_lo)
    np.subtract(x_hi, x_lo, x_hi)
    np.subtract(x, x_hi, x_lo)
    np.multiply(x, s, uh)  # Dekker's TwoProduct: uh + ul = s * x
    np.multiply(x_hi, s_hi, ul)
    np.subtract(ul, uh, ul)
    np.multiply(x_lo, s_hi, th)
    np.add(ul, th, ul)
    np.multiply(x_hi, s_lo, th)
    np.add(ul, th, ul)
    np.multiply(x_lo, s_lo, th)
    np.add(ul, th, ul)

    # Outside the proof's range: non-finite or huge operands, products too small for their low
    # part. NaN compares false, so "not (|v| < limit)" also catches NaN and Inf.
    inside, flag = scratch.flags[0][:n], scratch.flags[1][:n]
    np.abs(x, x_hi)
    np.less(x_hi, _SPLIT_LIMIT, inside)
    np.abs(y, x_hi)
    np.less(x_hi, _SUM_LIMIT, flag)
    np.logical_and(inside, flag, inside)
    np.abs(uh, x_hi)
    np.less(x_hi, _SUM_LIMIT, flag)
    np.logical_and(inside, flag, inside)
    zero = scratch.flags[2][:n]
    np.greater_equal(x_hi, _PRODUCT_FLOOR, flag)  # a product below the floor is fine when x is 0
    np.equal(x, 0, zero)
    np.logical_or(flag, zero, flag)
    np.logical_and(inside, flag, inside)
    if not (np.isfinite(s) and abs(s) < _SPLIT_LIMIT):
        inside[...] = False
    outside = None if inside.all() else np.flatnonzero(np.logical_not(inside, out=flag))
    exact = None
    if outside is not None:  # read before out, which may be y, is written
        exact = [exact_fma(s, float(x[i]), float(y[i])) for i in outside]

    np.add(y, uh, th)  # Knuth's TwoSum: th + tl = y + uh
    np.subtract(th, y, x_lo)  # b_virtual
    np.subtract(th, x_lo, tl)
    np.subtract(y, tl, tl)
    np.subtract(uh, x_lo, x_lo)
    np.add(tl, x_lo, tl)
    _round_to_odd_sum_into(tl, ul, x_hi, uh, x_lo, scratch)  # v = RO(tl + ul), in x_hi
    v = x_hi
    np.equal(v, 0, flag)
    np.add(th, v, out)
    np.copyto(out, th, where=flag)  # th + (+0) would lose th = -0
    if outside is not None and exact is not None:
        out[outside] = exact


def exact_fma(s: float, x: float, y: float) -> float:
    """``s * x + y`` in binary64 with one rounding, from the exact value (IEEE 754's fusedMultiplyAdd)."""
    if not (math.isfinite(s) and math.isfinite(x)):
        return s * x + y  # the product is exactly an infinity or NaN: one operation on it rounds nothing
    if not math.isfinite(y):
        return y  # a finite product added to an infinity or NaN
    exact = Fraction(s) * Fraction(x) + Fraction(y)
    if exact == 0:
        # An exact zero: -0 only when the product and y are both -0 (IEEE 754 section 6.3).
        product_negative = (math.copysign(1.0, s) < 0) != (math.copysign(1.0, x) < 0)
        both_negative_zeros = product_negative and (s == 0 or x == 0) and math.copysign(1.0, y) < 0
        return -0.0 if both_negative_zeros else 0.0
    try:
        return exact.numerator / exact.denominator  # int / int is rounded once, to nearest even
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def fused_multiply_add(
    s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray, scratch: FmaScratch | None = None
) -> np.ndarray:
    """``out = s * x + y`` with a single rounding; ``s`` must be a value of the arrays' dtype.

    ``x``, ``y`` and ``out`` are 1-D float32 or float64 arrays of one dtype; ``out`` may be ``y``.
    NaN and Inf propagate as IEEE 754 says, silently.
    """
    with np.errstate(all="ignore"):
        if x.dtype == np.float32:
            _fma_binary32(s, x, y, out, scratch or FmaScratch(x.size, np.float32))
        elif x.dtype == np.float64:
            _fma_binary64(s, x, y, out, scratch or FmaScratch(x.size, np.float64))
        else:
            raise TypeError(f"fused_multiply_add supports float32 and float64, got {x.dtype.name}")
    return out
