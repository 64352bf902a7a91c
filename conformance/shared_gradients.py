"""A scenario's gradients, computed once per point and handed out as copies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from conformance.workloads import Gradients, Workload

__all__ = ["SharedGradients", "fold_arrays"]


class SharedGradients:
    """A scenario's gradients, computed once per point: implementations that agree bit for bit stand
    at the same point at each step, and a workload's gradient depends on the point and the step only
    (:class:`~conformance.workloads.Workload`). Each caller gets its own copies, so an implementation
    that writes into its gradients changes no one else's."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.step = -1
        self.known: dict[bytes, Gradients] = {}

    def at(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        if step != self.step:  # one step's points at a time: the memory stays one step's
            self.step, self.known = step, {}
        key = _point(parameters)
        gradients = self.known.get(key)
        if gradients is None:  # kept as copies: nothing the workload returns may alias what a step changes
            gradients = self.known[key] = _copies(self.workload.gradients(parameters, step))
        return _copies(gradients)


def _copies(gradients: Gradients) -> Gradients:
    return [None if g is None else g.copy() for g in gradients]


def _point(parameters: Sequence[np.ndarray]) -> bytes:
    """A digest of the parameters' dtypes, shapes and bits."""
    digest = hashlib.blake2b(digest_size=32)
    fold_arrays(digest, parameters)
    return digest.digest()


def fold_arrays(digest: Any, arrays: Iterable[np.ndarray | None]) -> None:
    """Each array's dtype, shape and bits into ``digest`` (a ``None`` as a mark of its own)."""
    for array in arrays:
        if array is None:
            digest.update(b"-")
            continue
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)  # no copy where the array is contiguous
