"""``pack``: many arrays as views of one contiguous buffer, so the optimizer sees one flat range."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from optimized.versioned import VersionedList

__all__ = ["Packed", "pack"]


class Packed(VersionedList):
    """The views returned by :func:`pack`, with the buffer they tile.

    It is a list and can be used as one. ``buffer`` is the flat array behind the views and
    ``offsets[i]`` where view ``i`` starts in it. As long as the list holds its original views,
    the optimizer takes a gradient list like this one as one flat array, with no per-array work.
    """

    buffer: np.ndarray
    offsets: tuple[int, ...]

    def intact(self) -> bool:
        """Whether the list still holds exactly the views it was made with (it was never changed)."""
        return self.version == 0


def pack(arrays: Iterable[Any]) -> Packed:
    """Copy ``arrays`` (one dtype) into one contiguous buffer; return views of it, same shapes.

    Parameters made this way (and gradients made this way) are updated as a single flat range:
    10,000 tiny tensors cost about what one tensor of the same total size does.
    """
    sources = [np.asarray(array) for array in arrays]
    if not sources:
        raise ValueError("pack needs at least one array")
    dtypes = {a.dtype for a in sources}
    if len(dtypes) != 1:
        raise TypeError(f"pack needs arrays of one dtype, got {sorted(d.name for d in dtypes)}")
    sizes = [math.prod(a.shape) for a in sources]
    offsets = tuple(int(o) for o in np.cumsum([0, *sizes]))
    buffer = np.empty(offsets[-1], sources[0].dtype)
    views = []
    for source, start, stop in zip(sources, offsets[:-1], offsets[1:], strict=True):
        view = buffer[start:stop].reshape(source.shape)
        view[...] = source
        views.append(view)
    packed = Packed(views)
    packed.buffer, packed.offsets = buffer, offsets[:-1]
    return packed
