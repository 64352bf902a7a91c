"""Exact fused multiply-add ``out = s * x + y`` on NumPy arrays, rounded once, for float32 and float64.

NumPy has no FMA ufunc, and ``s * x + y`` rounds twice. torch's ``add(alpha=)`` rounds once on
x86-64, so the torch profile needs a correctly rounded emulation. Every function here writes into
caller-provided scratch (a :class:`FmaScratch`), so a step allocates nothing in the common case.

* binary32: ``s * x`` is exact in float64 (24 + 24 bits) and ``t = RN64(s*x + y)`` then
  ``RN32(t)`` is correct unless ``t`` sits exactly on a float32 midpoint (only then can the double
  rounding go the wrong way). Midpoints are recognised from ``t``'s bits (the 29 bits below
  float32's precision read ``1000…0``), and results at the bottom of float32's range (where the
  midpoints lie higher) are all checked. Those rare elements are redone with a round-to-odd
  float64 sum, whose single rounding to float32 is exact (Boldo & Melquiond).
* binary64: Dekker's TwoProduct and Knuth's TwoSum split the exact value into float64 pieces, and
  Boldo & Melquiond's emulated FMA adds them with one round-to-odd step and one final rounding
  (``RN(th + RO(tl + ul))``). Its proof assumes no overflow or underflow in the pieces, so
  elements whose operands are non-finite, huge, or whose product is tiny are computed exactly,
  one by one, by the reference rounding model. They are rare in practice.
"""

from __future__ import annotations

import numpy as np

from reference import rounding

__all__ = ["FmaScratch", "fused_multiply_add"]

_SPLITTER = float(2**27 + 1)  # Veltkamp's constant for binary64
_SPLIT_LIMIT = 2.0**995  # beyond this, x * _SPLITTER overflows
_PRODUCT_FLOOR = 2.0**-968  # below this, the low part of a product is not representable
_SUM_LIMIT = 2.0**1020  # beyond this, TwoSum's intermediate values may overflow

_BELOW_BINARY32 = np.int64((1 << 29) - 1)  # float64 significand bits below float32's precision
_MIDPOINT = np.int64(1 << 28)
_EXPONENT_BINARY32 = np.int32(0x7F80_0000)
_SMALLEST_NORMAL_EXPONENT = np.int32(0x0080_0000)


class FmaScratch:
    """Work arrays for :func:`fused_multiply_add` on up to ``size`` elements."""

    def __init__(self, size: int) -> None:
        self.wide = np.empty(size, np.float64)
        self.wide_2 = np.empty(size, np.float64)
        self.bits = np.empty(size, np.int64)
        self.bits32 = np.empty(size, np.int32)
        self.narrow = np.empty(size, np.float32)
        self.flag = np.empty(size, np.bool_)
        self.flag_2 = np.empty(size, np.bool_)


def _round_to_odd_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``RO(a + b)`` in float64: an inexact sum gets an odd last bit (allocates; used on few elements)."""
    total = a + b
    b_virtual = total - a
    error = (a - (total - b_virtual)) + (b - b_virtual)
    bits = total.view(np.int64)
    inexact_even = ((error > 0) | (error < 0)) & ((bits & 1) == 0)
    away_from_zero = (error > 0) == (total > 0)
    bits += np.where(inexact_even, np.where(away_from_zero, 1, -1), 0)
    rounded_to_odd: np.ndarray = total
    return rounded_to_odd


def _fma_binary32(s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray, scratch: FmaScratch) -> None:
    n = x.size
    total, product = scratch.wide[:n], scratch.wide_2[:n]
    np.copyto(product, x)
    np.multiply(product, np.float64(s), out=product)  # exact: 24 + 24 bits
    np.copyto(total, y)
    np.add(total, product, out=total)
    # Hazards: t on a float32 midpoint (the 29 bits below float32's precision read 1000...0), or a
    # result at the bottom of float32's range (exponent field 0 or 1), where midpoints lie higher.
    low, midpoint = scratch.bits[:n], scratch.flag[:n]
    np.bitwise_and(total.view(np.int64), _BELOW_BINARY32, out=low)
    np.equal(low, _MIDPOINT, out=midpoint)
    rounded = scratch.narrow[:n]
    np.copyto(rounded, total, casting="same_kind")  # RN32(t); out may be y, so not written yet
    exponent, tiny = scratch.bits32[:n], scratch.flag_2[:n]
    np.bitwise_and(rounded.view(np.int32), _EXPONENT_BINARY32, out=exponent)
    np.less_equal(exponent, _SMALLEST_NORMAL_EXPONENT, out=tiny)
    if midpoint.any() or tiny.any():
        where = np.flatnonzero(midpoint | tiny)
        where = where[total[where] != 0]  # an exact zero sum needs no repair
        exact_product = x[where].astype(np.float64) * np.float64(s)
        rounded[where] = _round_to_odd_sum(exact_product, y[where].astype(np.float64))
    np.copyto(out, rounded)


def _split(a: np.ndarray | np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``a = hi + lo`` exactly, each with at most 26 significant bits."""
    t = np.multiply(a, _SPLITTER)
    hi = t - (t - a)
    return hi, a - hi


def _fma_binary64(s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    s_hi, s_lo = _split(np.float64(s))
    x_hi, x_lo = _split(x)
    uh = x * s
    ul = ((s_hi * x_hi - uh) + s_hi * x_lo + s_lo * x_hi) + s_lo * x_lo  # uh + ul = s * x
    th = y + uh
    b_virtual = th - y
    tl = (y - (th - b_virtual)) + (uh - b_virtual)  # th + tl = y + uh
    v = _round_to_odd_sum(tl, ul)
    result = np.where(v == 0, th, th + v)  # th + (+0) would lose th = -0

    outside_proof = ~(np.isfinite(x) & np.isfinite(y))
    outside_proof |= np.abs(x) >= _SPLIT_LIMIT
    outside_proof |= (np.abs(uh) < _PRODUCT_FLOOR) & (x != 0)
    outside_proof |= (np.abs(uh) >= _SUM_LIMIT) | (np.abs(y) >= _SUM_LIMIT)
    if not (np.isfinite(s) and abs(s) < _SPLIT_LIMIT):
        outside_proof[...] = True
    for index in np.flatnonzero(outside_proof):
        x_i, y_i = float(x.flat[index]), float(y.flat[index])
        result.flat[index] = rounding.fma(rounding.BINARY64, float(s), x_i, y_i)
    np.copyto(out, result)


def fused_multiply_add(
    s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray, scratch: FmaScratch | None = None
) -> np.ndarray:
    """``out = s * x + y`` with a single rounding; ``s`` must be a value of the arrays' dtype.

    ``x``, ``y`` and ``out`` are 1-D float32 or float64 arrays of one dtype; ``out`` may be ``y``.
    NaN and Inf propagate as IEEE 754 says, silently.
    """
    with np.errstate(all="ignore"):
        if x.dtype == np.float32:
            _fma_binary32(s, x, y, out, scratch or FmaScratch(x.size))
        elif x.dtype == np.float64:
            _fma_binary64(s, x, y, out)
        else:
            raise TypeError(f"fused_multiply_add supports float32 and float64, got {x.dtype.name}")
    return out
