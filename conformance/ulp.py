"""Distance in units in the last place between floating-point arrays, with an explicit policy.

Each value maps to an integer on one ordered line: the encodings of positive values count up from
0, negative values count down from 0, so -0 and +0 both land on 0 and adjacent floats are one apart.
The distance is the difference of the two integers, computed without overflow (the widest
float64 distance, -inf to +inf, is just under 2**64, so it is returned as ``uint64``).

The policy, stated once:

* ``+0`` and ``-0`` are 0 ULP apart (they compare equal; bit-exactness is checked separately).
* ``inf`` is one ULP past the largest finite value of its sign.
* Two NaNs are 0 ULP apart whatever their payloads; a NaN against a number has no distance and is
  counted as a NaN-parity mismatch instead (``nan_mismatch``), never folded into the ULP figure.

``numpy.testing``'s ``nulp_diff`` wraps around for large values of opposite sign (float32 ±1e38
gives about 4.7e7 instead of about 4.25e9); this module does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["UlpComparison", "compare_ulps", "ordered_integers", "real_components", "same_bits"]

_SIGNED: dict[int, type[np.signedinteger[Any]]] = {2: np.int16, 4: np.int32, 8: np.int64}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays of one dtype and size hold the same bits throughout (shape aside)."""
    x, y = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    if x.dtype != y.dtype or x.size != y.size:
        return False
    if x.nbytes < 1 << 15:
        return x.tobytes() == y.tobytes()
    unsigned = np.dtype(np.uint64) if x.itemsize % 8 == 0 else np.dtype(f"u{x.itemsize}")  # no copies
    return bool(np.array_equal(x.view(unsigned), y.view(unsigned)))


def real_components(array: np.ndarray) -> np.ndarray:
    """The real scalars of ``array``, flat (a complex element gives real, then imaginary)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat.view(flat.real.dtype) if np.iscomplexobj(flat) else flat


def ordered_integers(values: np.ndarray) -> np.ndarray:
    """Each float's position on the ordered integer line, as int64 (widened for float16/32)."""
    signed = _SIGNED[values.dtype.itemsize]
    bits = values.view(signed).astype(np.int64)
    magnitude_bits = bits & np.int64(np.iinfo(signed).max)
    ordered: np.ndarray = np.where(bits < 0, -magnitude_bits, magnitude_bits)
    return ordered


@dataclass(frozen=True)
class UlpComparison:
    """Element-wise comparison of two arrays' real scalars."""

    ulps: np.ndarray
    """uint64 distance per real scalar; 0 where both are NaN or where NaN parity differs."""
    nan_mismatch: np.ndarray
    """True where exactly one of the two values is NaN."""

    @property
    def max_ulp(self) -> int:
        return int(self.ulps.max()) if self.ulps.size else 0

    @property
    def nan_mismatches(self) -> int:
        return int(self.nan_mismatch.sum())


def compare_ulps(a: np.ndarray, b: np.ndarray) -> UlpComparison:
    """ULP distances between ``a`` and ``b`` (same dtype and shape) under the module's policy."""
    if a.dtype != b.dtype or a.shape != b.shape:
        raise ValueError(f"cannot compare {a.dtype}{a.shape} with {b.dtype}{b.shape}")
    x, y = real_components(a), real_components(b)
    x_nan, y_nan = np.isnan(x), np.isnan(y)
    kx, ky = ordered_integers(x), ordered_integers(y)
    ux, uy = kx.view(np.uint64), ky.view(np.uint64)
    # |kx - ky| in uint64: modular subtraction is exact once the larger operand comes first.
    ulps = np.where(kx >= ky, ux - uy, uy - ux)
    ulps[x_nan | y_nan] = 0
    return UlpComparison(ulps=ulps, nan_mismatch=x_nan != y_nan)
