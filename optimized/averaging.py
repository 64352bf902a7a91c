"""An ``averaged_parameters()`` block of the optimized ASGD: the averages held in the parameters for
evaluation, and the weights given back on exit, on an exception, or before a Ctrl-C is raised.

Blocks may overlap (from one thread or several): the first to open saves the weights and swaps the
averages in, the last to close puts the weights back. A step is refused while any block is open.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimized.interrupts import RestoreOnInterrupt
from optimized.parameters import data_of
from optimized.tensors import is_tensor, mark_modified

__all__ = ["AveragesHeld"]


class AveragesHeld:
    """An :meth:`optimized.optimizer.ASGDOptimizer.averaged_parameters` block: the averages swapped into the
    parameters on entry, the weights swapped back on exit or before a Ctrl-C is raised."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.arrays: list[np.ndarray] = []
        self.saved: list[np.ndarray] = []
        self.tensors: list[Any] = []
        self.guard = RestoreOnInterrupt(self._restore)

    def __enter__(self) -> None:
        optimizer = self.optimizer
        with optimizer._lock:
            if self in optimizer._holding_averages:
                raise RuntimeError("this averaged_parameters() block is already open")
            parameters = list(optimizer._parameters())
            averages = optimizer.averages()
            self.arrays = [data_of(parameter) for parameter in parameters]
            for index, (array, average) in enumerate(zip(self.arrays, averages, strict=True)):
                _check_swappable(array, average, index)  # before anything changes
            # The weights: those an open block (of any thread) saved, since the parameters hold
            # the averages while one is open (no step can change them meanwhile).
            other = next(iter(optimizer._holding_averages), None)
            self.saved = other.saved if other is not None else [array.copy() for array in self.arrays]
            self.tensors = [parameter for parameter in parameters if is_tensor(parameter)]
            self.guard.install()  # from here on a Ctrl-C first puts the saved weights back
            optimizer._holding_averages.add(self)
            if other is None:  # the first block swaps the averages in; later ones find them there
                for array, average in zip(self.arrays, averages, strict=True):
                    array[...] = average
                mark_modified(self.tensors)  # autograd must not use values saved before the swap

    def _restore(self) -> None:
        """The weights back in the parameters (idempotent)."""
        with self.optimizer._lock:
            held = self.optimizer._holding_averages
            if self not in held:
                return
            if len(held) > 1:  # another block still holds the averages; the last one puts the weights back
                held.discard(self)
                return
            for array, original in zip(self.arrays, self.saved, strict=True):
                array[...] = original
            mark_modified(self.tensors)
            held.discard(self)

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._restore()
        finally:
            self.guard.uninstall()


def _check_swappable(array: np.ndarray, average: np.ndarray, index: int) -> None:
    """Refuse a parameter its average cannot be copied into (replaced by one of another shape or
    dtype since it stepped, or made read-only)."""
    if array.shape != average.shape or array.dtype != average.dtype:
        raise ValueError(
            f"params[{index}] has shape {array.shape} and dtype {array.dtype.name}, but its "
            f"state was made for shape {average.shape} and dtype {average.dtype.name}"
        )
    if not array.flags.writeable:
        raise ValueError(f"params[{index}] is read-only; the optimizer updates parameters in place")
