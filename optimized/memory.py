"""Which parameters' memory an array overlaps: parameters must not overlap one another, and a
gradient must not overlap any parameter (the result would depend on the order of the updates).

Arrays are grouped by the object that owns their memory (the end of their ``.base`` chain), so the
common case, a gradient with memory of its own, costs one dictionary lookup. Arrays of one owner are
compared by byte bounds and then exactly, with :func:`numpy.shares_memory` (strided views may
interleave without overlapping).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.array_utils import byte_bounds

from optimized.tensors import is_tensor

__all__ = ["MemoryMap", "owner_of"]


def owner_of(array: np.ndarray) -> object:
    """The object at the end of ``array``'s ``.base`` chain (the array itself if it owns its memory)."""
    owner: Any = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return owner


def _owner_key(array: np.ndarray) -> object:
    """What identifies the memory ``array`` lives in: its owner, or, for a view of a torch tensor
    (whose chain ends at a tensor alias made for the view), the tensor's storage."""
    owner = array if array.base is None else owner_of(array)
    if is_tensor(owner):
        return ("torch storage", owner.untyped_storage().data_ptr())  # type: ignore[attr-defined]
    return id(owner)


class MemoryMap:
    """The memory of a list of arrays, to ask which of them another array overlaps."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self._arrays = arrays
        by_owner: dict[object, list[tuple[int, int, int]]] = {}  # the arrays keep their owners alive
        for index, array in enumerate(arrays):
            if array.size == 0:
                continue
            low, high = byte_bounds(array)
            by_owner.setdefault(_owner_key(array), []).append((low, high, index))
        self._by_owner = {key: sorted(spans) for key, spans in by_owner.items()}
        self._starts = {key: [low for low, _, _ in spans] for key, spans in self._by_owner.items()}
        self._reach = {}  # the highest end among the spans up to each position, for the bisection
        for key, spans in self._by_owner.items():
            reach, highest = [], 0
            for _, high, _ in spans:
                highest = max(highest, high)
                reach.append(highest)
            self._reach[key] = reach

    def overlapping(self, array: np.ndarray, exclude: int | None = None) -> int | None:
        """The index of an array of the map that shares memory with ``array``, or ``None``."""
        key = id(array) if array.base is None else _owner_key(array)  # most gradients own their memory
        spans = self._by_owner.get(key)
        if spans is None or array.size == 0:
            return None
        low, high = byte_bounds(array)
        stop = bisect.bisect_left(self._starts[key], high)
        reach = self._reach[key]
        for position in range(stop - 1, -1, -1):
            if reach[position] <= low:
                break
            start, end, index = spans[position]
            if (
                index != exclude
                and start < high
                and low < end
                and np.shares_memory(array, self._arrays[index])
            ):
                return index
        return None

    def first_overlap(self) -> tuple[int, int] | None:
        """Two arrays of the map that share memory, ``(earlier, later)`` by index, or ``None``."""
        for index, array in enumerate(self._arrays):
            other = self.overlapping(array, exclude=index)
            if other is not None:
                return min(index, other), max(index, other)
        return None
