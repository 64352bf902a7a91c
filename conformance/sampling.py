"""Which coordinates of a tensor the reference computes at a step: all of a small tensor; of a large
one, a seeded sample plus every edge the step's data holds.

ASGD is separable: given a step's shared scalars (the clocks and the group's hyperparameters), every
value of a tensor evolves on its own. So the reference can judge another implementation at a chosen
set of coordinates, bit for bit, without computing the rest. A tensor of fewer than
:data:`WHOLE_BELOW` values is checked whole. Of a larger one the reference computes

* a seeded sample of :data:`SEEDED` values, the same at every step (:func:`seeded`);
* the first and the last value;
* every *edge* the step's data holds (:func:`edges`), in the state before the step, the gradient
  and the state after it: non-finite values, subnormals, zeros (either sign) and the largest
  finite magnitude of each array. Where one kind of edge occupies more than :data:`EDGE_LIMIT`
  values of an array, :data:`EDGE_LIMIT` of them, evenly spaced, are taken (and the coverage the
  results state counts only what was computed).

A value is an element: both parts of a complex value are computed together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np

__all__ = ["EDGE_LIMIT", "SEEDED", "WHOLE_BELOW", "edges", "seeded", "whole"]

WHOLE_BELOW: Final = 32_768
"""A tensor of fewer values than this is checked whole, at every step."""
SEEDED: Final = 4_096
"""The values of a larger tensor in the seeded sample."""
EDGE_LIMIT: Final = 256
"""The most values of one kind of edge taken from one array at one step."""


def whole(size: int) -> bool:
    """Whether a tensor of ``size`` values is checked whole."""
    return size < WHOLE_BELOW


def seeded(size: int, seed: int, tensor: int) -> np.ndarray:
    """The sorted flat indices of a tensor's seeded sample (its first and last value included), the
    same for every step of a scenario × seed cell: :data:`SEEDED` draws from ``(seed, tensor)``."""
    if whole(size):
        return np.arange(size, dtype=np.int64)
    drawn = np.random.default_rng([seed, tensor, 0x5A3]).choice(size, SEEDED, replace=False)
    return np.unique(np.concatenate([drawn.astype(np.int64), [0, size - 1]]))


def _spread(indices: np.ndarray) -> np.ndarray:
    """At most :data:`EDGE_LIMIT` of ``indices``, evenly spaced."""
    if len(indices) <= EDGE_LIMIT:
        return indices
    return indices[np.linspace(0, len(indices) - 1, EDGE_LIMIT).astype(np.int64)]


def _edges_of(array: np.ndarray) -> list[np.ndarray]:
    """The flat element indices of one array's edges, each kind limited."""
    flat = np.ascontiguousarray(array).reshape(-1)
    complex_valued = flat.dtype.kind == "c"
    reals = flat.view(np.finfo(flat.dtype).dtype) if complex_valued else flat
    unsigned = np.dtype(f"u{reals.itemsize}")
    magnitude = reals.view(unsigned) & unsigned.type(np.iinfo(unsigned).max >> 1)  # the sign bit cleared
    infinity = np.array(np.inf, reals.dtype).view(unsigned)[()]
    smallest_normal = np.array(np.finfo(reals.dtype).smallest_normal, reals.dtype).view(unsigned)[()]
    # Below the normal range or at infinity and beyond, in one comparison: the difference wraps around.
    unusual = np.flatnonzero(magnitude - smallest_normal >= infinity - smallest_normal)
    kinds = magnitude[unusual]
    found = [
        _spread(unusual[kinds >= infinity]),  # infinities and NaNs
        _spread(unusual[kinds == 0]),  # zeros of either sign
        _spread(unusual[(kinds != 0) & (kinds < infinity)]),  # subnormals
    ]
    if len(magnitude):
        largest = int(np.argmax(magnitude))  # finite magnitudes order as their bits
        if magnitude[largest] >= infinity:
            largest = int(np.argmax(np.where(magnitude >= infinity, 0, magnitude)))
        found.append(np.array([largest]))
    if complex_valued:
        found = [kind // 2 for kind in found]
    return found


def edges(arrays: Iterable[Any]) -> np.ndarray:
    """The sorted flat element indices where any of ``arrays`` (of one shape) holds an edge."""
    found = [kind for array in arrays if array is not None for kind in _edges_of(np.asarray(array))]
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64))
