"""Exact fused multiply-add ``s * x + y`` on NumPy arrays, rounded once, for float32 and float64.

NumPy has no FMA ufunc, and ``s * x + y`` rounds twice. torch's ``add(alpha=)`` rounds once on
x86-64, so the torch profile needs a correctly rounded emulation:

* binary32: the product of two float32 values is exact in float64; the float64 sum is made
  *round-to-odd* (an inexact result gets an odd last bit), after which one rounding to float32 is
  correct (round-to-odd at 53 >= 24 + 2 bits makes the double rounding innocuous).
* binary64: Dekker's TwoProduct and Knuth's TwoSum split the exact value into float64 pieces, and
  Boldo & Melquiond's emulated FMA adds them with one round-to-odd step and one final rounding
  (``RN(th + RO(tl + ul))``). Its proof assumes no overflow or underflow in the pieces, so
  elements whose operands are non-finite, huge or whose product is tiny are computed exactly, one
  by one, by the reference rounding model. They are rare in practice.
"""

from __future__ import annotations

import numpy as np

from reference import rounding

__all__ = ["fused_multiply_add"]

_SPLITTER = float(2**27 + 1)  # Veltkamp's constant for binary64
_SPLIT_LIMIT = 2.0**995  # beyond this, x * _SPLITTER overflows
_PRODUCT_FLOOR = 2.0**-968  # below this, the low part of a product is not representable
_SUM_LIMIT = 2.0**1020  # beyond this, TwoSum's intermediate values may overflow


def _make_round_to_odd(total: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Turn ``total = RN(a + b)`` into ``RO(a + b)`` in place (float64).

    TwoSum gives the exact rounding error; where it is nonzero and the last bit of ``total`` is
    even, ``total`` moves one unit toward the exact value. NaN errors (infinite inputs) compare
    false both ways and leave ``total`` alone.
    """
    b_virtual = total - a
    error = (a - (total - b_virtual)) + (b - b_virtual)
    bits = total.view(np.int64)
    inexact_even = ((error > 0) | (error < 0)) & ((bits & 1) == 0)
    away_from_zero = (error > 0) == (total > 0)
    bits += np.where(inexact_even, np.where(away_from_zero, 1, -1), 0)


def _fma_binary32(s: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    product = x.astype(np.float64) * np.float64(s)  # exact: 24 + 24 bits
    addend = y.astype(np.float64)
    total = product + addend
    _make_round_to_odd(total, product, addend)
    return total.astype(np.float32)


def _split(a: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``a = hi + lo`` exactly, each with at most 26 significant bits."""
    t = np.multiply(a, _SPLITTER)
    hi = t - (t - a)
    return hi, a - hi


def _fma_binary64(s: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        s_hi, s_lo = _split(np.float64(s))
        x_hi, x_lo = _split(x)
        uh = x * s
        ul = ((s_hi * x_hi - uh) + s_hi * x_lo + s_lo * x_hi) + s_lo * x_lo  # uh + ul = s * x
        th = y + uh
        b_virtual = th - y
        tl = (y - (th - b_virtual)) + (uh - b_virtual)  # th + tl = y + uh
        v = tl + ul
        _make_round_to_odd(v, tl, ul)
        result = np.where(v == 0, th, th + v)  # th + (+0) would lose th = -0

        outside_proof = ~(np.isfinite(x) & np.isfinite(y))
        outside_proof |= np.abs(x) >= _SPLIT_LIMIT
        outside_proof |= (np.abs(uh) < _PRODUCT_FLOOR) & (x != 0)
        outside_proof |= (np.abs(uh) >= _SUM_LIMIT) | (np.abs(y) >= _SUM_LIMIT)
    if not (np.isfinite(s) and abs(s) < _SPLIT_LIMIT):
        outside_proof[...] = True
    for index in np.flatnonzero(outside_proof):
        result.flat[index] = rounding.fma(
            rounding.BINARY64, float(s), float(x.flat[index]), float(y.flat[index])
        )
    return result


def fused_multiply_add(s: float, x: np.ndarray, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = s * x + y`` with a single rounding; ``s`` must be a value of the arrays' dtype.

    ``x``, ``y`` and ``out`` are 1-D float32 or float64 arrays of one dtype; ``out`` may be ``y``.
    """
    if x.dtype == np.float32:
        result = _fma_binary32(s, x, y)
    elif x.dtype == np.float64:
        result = _fma_binary64(s, x, y)
    else:
        raise TypeError(f"fused_multiply_add supports float32 and float64, got {x.dtype.name}")
    np.copyto(out, result)
    return out
