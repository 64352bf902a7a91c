"""The parameters as a step of the optimized ASGD sees them, remembered between steps.

Resolving the parameters (reading ``.data``, checking each array, cutting them into segments) costs
more than a small step, so the result is kept in a :class:`Layout` while the objects it came from
are the same objects, and made anew when anything changed.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimized.hyperparameters import Hyperparameters
from optimized.layout import Segment, build_layout
from optimized.memory import MemoryMap
from optimized.numerics import Numerics
from optimized.packing import Packed
from optimized.parameters import check_distinct, check_parameter, data_of
from optimized.state import ParameterState
from optimized.tensors import is_tensor
from optimized.versioned import VersionedDict, VersionedList

__all__ = ["Layout", "StaleLayout", "new_layout", "state_parts", "state_stamp", "still_describes"]

_WRITEABLE = operator.attrgetter("flags.writeable")


@dataclass(eq=False)
class Layout:
    """The resolved parameters of every group and their segments, valid while nothing changed."""

    objects: list[list[Any]]
    """The entries of each group's ``params`` list, compared by identity at each step."""
    lists: list[tuple[Any, int]]
    """Each group's ``params`` list object and its version: while both are unchanged, so are the
    entries (a :class:`VersionedList` counts its changes)."""
    arrays: list[list[np.ndarray]]
    bare: list[bool]
    """Whether a group's entries are the arrays themselves (no ``.data`` to read again)."""
    numerics: list[Numerics]
    state_version: int
    state_identity: tuple[int, int]
    """``id`` and length of the optimizer's ``state`` dict when the layout was made."""
    state_parts: tuple[list[int], list[Any]]
    """The ``state`` dict's keys, and each entry with its clock and arrays, when the layout was made:
    an entry or array replaced from outside (``opt.state[0].ax = ...``) is noticed by identity."""
    state_stamp: tuple[int, int] | None
    """:func:`state_stamp` when ``state_parts`` last matched: while it is the same, they still do."""
    segments: list[Segment]
    memory: MemoryMap
    """The parameters' memory, to refuse gradients that overlap a parameter."""
    all_arrays: list[np.ndarray] = field(init=False)
    first_of_dtype: list[dict[np.dtype[Any], int]] = field(init=False)
    """Per group, the index of its first parameter of each dtype."""
    shapes: list[tuple[int, ...]] = field(init=False)
    dtypes: list[np.dtype[Any]] = field(init=False)
    """Each array's shape and dtype when the layout was made (both can be changed in place)."""
    packed_gradients: tuple[weakref.ref[Packed], list[np.ndarray] | None] | None = None
    """The last packed gradient list seen, and its flat slice per segment (``None``: no fit)."""
    tensors: dict[int, Any] = field(default_factory=dict)
    """The parameters that are torch tensors, by index: a step marks them modified for autograd."""

    def __post_init__(self) -> None:
        self.all_arrays = [array for arrays in self.arrays for array in arrays]
        self.first_of_dtype = []
        index = 0
        for arrays in self.arrays:
            first: dict[np.dtype[Any], int] = {}
            for array in arrays:
                first.setdefault(array.dtype, index)
                index += 1
            self.first_of_dtype.append(first)
        self.shapes = [array.shape for array in self.all_arrays]
        self.dtypes = [array.dtype for array in self.all_arrays]


class StaleLayout(Exception):
    """The remembered layout no longer describes the parameter arrays."""


def still_describes(
    layout: Layout,
    param_groups: Sequence[Mapping[str, Any]],
    state: Mapping[int, ParameterState],
    state_version: int,
    hyperparameters: Sequence[Hyperparameters],
) -> bool:
    """Whether every parameter is still the array it was, of the same profile, and writable (the
    state entries found unchanged are stamped on ``layout``, so the next step need not look again)."""
    if layout.state_version != state_version or len(layout.objects) != len(param_groups):
        return False
    if layout.state_identity != (id(state), len(state)):
        return False
    stamp = state_stamp(state)
    if stamp is None or stamp != layout.state_stamp:  # something may have changed: look
        keys, parts = layout.state_parts
        if list(state) != keys or not all(map(operator.is_, state_parts(state), parts)):
            return False
        layout.state_stamp = stamp
    for group, objects, (listed, version), arrays, bare, numerics, hyper in zip(
        param_groups, layout.objects, layout.lists, layout.arrays, layout.bare, layout.numerics,
        hyperparameters, strict=True,
    ):  # fmt: skip
        params = group["params"]
        if hyper.numerics is not numerics:
            return False
        same_list = params is listed and type(params) is VersionedList and params.version == version
        if not same_list and (len(params) != len(objects) or not all(map(operator.is_, params, objects))):
            return False
        if not bare and not all(map(operator.is_, map(data_of, params), arrays)):
            return False
    return all(map(_WRITEABLE, layout.all_arrays))


def state_stamp(state: Mapping[int, ParameterState]) -> tuple[int, int] | None:
    """What changes whenever an entry of ``state`` is added, removed or replaced, or an attribute of
    any entry is set (``None``: a ``state`` that does not count its changes, compared entry by entry)."""
    if type(state) is not VersionedDict:
        return None
    return ParameterState.edits, state.version


def state_parts(state: Mapping[int, ParameterState]) -> list[Any]:
    """Each state entry, its clock, its average and its momentum buffer, in the dict's order."""
    return [
        part for entry in state.values() for part in (entry, entry.clock, entry.ax, entry.momentum_buffer)
    ]


def new_layout(
    param_groups: Sequence[Mapping[str, Any]],
    state: dict[int, ParameterState],
    state_version: int,
    hyperparameters: Sequence[Hyperparameters],
    packs: bool,
) -> Layout:
    """The parameter arrays as they are now, checked, and their segments."""
    objects, lists, arrays_of_groups, index = [], [], [], 0
    for group, hyper in zip(param_groups, hyperparameters, strict=True):
        lists.append((group["params"], getattr(group["params"], "version", 0)))
        params = list(group["params"])
        arrays = []
        for parameter in params:
            check_parameter(parameter, index, hyper.numerics.dtypes)
            array = data_of(parameter)
            saved = state.get(index)
            if saved is not None and (saved.ax.shape != array.shape or saved.ax.dtype != array.dtype):
                raise ValueError(
                    f"params[{index}] has shape {array.shape} and dtype {array.dtype.name}, but its "
                    f"state was made for shape {saved.ax.shape} and dtype {saved.ax.dtype.name}"
                )
            arrays.append(array)
            index += 1
        objects.append(params)
        arrays_of_groups.append(arrays)
    memory = check_distinct([a for arrays in arrays_of_groups for a in arrays])
    segments = build_layout(arrays_of_groups, state, packs)
    tensors = {i: p for i, p in enumerate(p for params in objects for p in params) if is_tensor(p)}
    return Layout(
        tensors=tensors,
        objects=objects,
        lists=lists,
        arrays=arrays_of_groups,
        bare=[all(type(p) is np.ndarray for p in params) for params in objects],
        numerics=[hyper.numerics for hyper in hyperparameters],
        state_version=state_version,
        state_identity=(id(state), len(state)),
        state_parts=(list(state), state_parts(state)),
        state_stamp=state_stamp(state),
        segments=segments,
        memory=memory,
    )
