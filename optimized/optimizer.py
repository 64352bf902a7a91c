"""The optimizer core that every ASGD implementation shares; only its backend differs.

The core owns everything that is not arithmetic: parameter groups, the gradient protocol of
``step``, validation, the state and ``state_dict``/``load_state_dict`` in torch's layout, and the
averages. At each step it resolves the parameter arrays afresh from ``param_groups`` (so a replaced
``.data``, a replaced list entry or an appended parameter is what gets updated), checks every input,
advances the clocks (lines 1 and 8 of the algorithm) and hands the rest to its backend as a list of
:class:`optimized.plan.Task` on flat arrays. Every check runs before the first thing changes, so a
refused call leaves parameters and state exactly as they were.

What does not change between steps (the resolved arrays and their segments, the validated
hyperparameters, a packed gradient list's slices) is remembered and reused while the objects it
came from are the same objects; any change is noticed at the next step and rebuilt from scratch.
"""

from __future__ import annotations

import copy
import functools
import operator
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimized.hyperparameters import DEFAULTS, Hyperparameters, validate_hyperparameters
from optimized.interrupts import RestoreOnInterrupt, interrupts_deferred
from optimized.layout import Segment, build_layout, flat_real, share_states
from optimized.memory import MemoryMap
from optimized.numerics import Numerics, numerics_named
from optimized.packing import Packed
from optimized.parameters import (
    as_gradient,
    check_distinct,
    check_gradient,
    check_parameter,
    data_of,
    gradient_of,
    has_grad_attribute,
)
from optimized.plan import Backend, StepScalars, Task
from optimized.state import Clock, ParameterState, parse_parameter_state
from optimized.tensors import is_tensor, mark_modified
from optimized.versioned import VersionedList

__all__ = ["ASGDOptimizer"]

ParamGroup = dict[str, Any]

_WRITEABLE = operator.attrgetter("flags.writeable")

_FORMAT_NAMES = {16: "binary16", 32: "binary32", 64: "binary64"}
"""IEEE 754's name for the real format of a parameter dtype, by its width in bits."""


@functools.cache
def _momentum_used(momentum: float, dtype: np.dtype[Any]) -> bool:
    """Whether line 4 runs: the momentum, rounded to the parameters' dtype, is not 0."""
    with np.errstate(over="ignore"):
        return bool(np.finfo(dtype).dtype.type(momentum) != 0)


@functools.cache
def _beyond_range(value: float, dtype: np.dtype[Any]) -> bool:
    """Whether a coefficient is larger than the parameters' dtype holds: above its largest finite
    value, where torch's conversion of a scalar argument raises (even where it would round down)."""
    return abs(float(value)) > float(np.finfo(dtype).max)


def _check_coefficients(hyper: Hyperparameters, dtype: np.dtype[Any], index: int) -> None:
    """Refuse a weight decay, momentum or (in the foreach formulation, where it multiplies the
    parameters as a scalar argument) lambd that the parameters' dtype cannot hold (torch raises
    after it has counted the step; here nothing changes)."""
    for name in ("weight_decay", "momentum", *(("lambd",) if hyper.numerics.foreach else ())):
        value = getattr(hyper, name)
        if value != 0 and _beyond_range(value, dtype):
            raise ValueError(
                f"Invalid {name}: {value!r} for params[{index}] of dtype {dtype.name} "
                f"(beyond the range of {_FORMAT_NAMES[np.finfo(dtype).bits]})"
            )


@dataclass(eq=False)
class _Layout:
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


class _StaleLayout(Exception):
    """The remembered layout no longer describes the parameter arrays."""


@dataclass(eq=False, slots=True)
class _Planned:
    """One segment's share of a checked step, and what to commit once the backend is done."""

    segment: Segment
    task: Task
    clock: Clock
    next_clock: tuple[int | float, float, float]
    new_states: dict[int, ParameterState] | None
    """States to install (the segment's first step, first momentum step, or a split)."""


class ASGDOptimizer:
    """Parameter groups, state and the ``step`` protocol of an ASGD implementation over a backend."""

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any], backend: Backend) -> None:
        self.defaults: dict[str, Any] = validate_hyperparameters(defaults)
        self.param_groups: list[ParamGroup] = []
        self.state: dict[int, ParameterState] = {}
        self._backend = backend
        # Held by every public method that reads or changes parameters or state: one call at a time.
        self._lock = threading.RLock()
        self._holding_averages: set[_AveragesHeld] = set()
        """The :meth:`averaged_parameters` blocks open, during which a step is refused."""
        self._state_version = 0
        self._layout: _Layout | None = None
        self._hyperparameters: dict[int, tuple[tuple[Any, ...], Hyperparameters]] = {}
        if isinstance(params, (np.ndarray, str, bytes)):
            raise TypeError(
                "params must be an iterable of arrays or of param-group dicts, "
                f"got a single {type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        # Build the whole list first, so that one bad group leaves no half-made optimizer behind.
        built: list[ParamGroup] = []
        for group in groups:
            built.append(self._new_group(group, already=[p for g in built for p in g["params"]]))
        self.param_groups = built

    @property
    def backend(self) -> str:
        """The name of the backend that does the arithmetic."""
        return self._backend.name

    # ----------------------------------------------------------------------------------- groups

    def _new_group(self, group: object, already: Sequence[Any]) -> ParamGroup:
        if not isinstance(group, Mapping):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a param group must have a 'params' entry")
        params = group["params"]
        params = VersionedList([params] if isinstance(params, np.ndarray) else params)
        hyperparameters = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        hyperparameters = validate_hyperparameters(hyperparameters)
        dtypes = numerics_named(hyperparameters["numerics"]).dtypes
        for offset, parameter in enumerate(params):
            check_parameter(parameter, len(already) + offset, dtypes)
        check_distinct([*already, *params])
        return {"params": params, **hyperparameters}

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (defaults fill the rest)."""
        with self._lock:
            self.param_groups.append(self._new_group(param_group, already=self._parameters()))

    def _parameters(self) -> list[Any]:
        return [p for group in self.param_groups for p in group["params"]]

    def _indexed_groups(self) -> list[tuple[ParamGroup, list[int]]]:
        """Each group with the global indices of its parameters (torch's ``state_dict`` numbering)."""
        indexed, start = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            indexed.append((group, list(range(start, start + count))))
            start += count
        return indexed

    def _group_hyperparameters(self, group_index: int) -> Hyperparameters:
        """The group's hyperparameters, validated again only when one of its values was replaced."""
        group = self.param_groups[group_index]
        values = tuple(map(group.get, DEFAULTS))
        cached = self._hyperparameters.get(group_index)
        if cached is not None and all(map(operator.is_, values, cached[0])):
            return cached[1]
        hyperparameters = Hyperparameters.of(group, f"param_groups[{group_index}]")
        self._hyperparameters[group_index] = (values, hyperparameters)
        return hyperparameters

    # ----------------------------------------------------------------------------- parameters

    def _resolved(self, hyperparameters: Sequence[Hyperparameters]) -> _Layout:
        """The parameter arrays as they are now, checked, and their segments."""
        layout = self._layout
        if layout is not None and self._unchanged(layout, hyperparameters):
            return layout
        layout = self._new_layout(hyperparameters)
        self._layout = layout
        return layout

    def _unchanged(self, layout: _Layout, hyperparameters: Sequence[Hyperparameters]) -> bool:
        """Whether every parameter is still the array it was, of the same profile, and writable."""
        if layout.state_version != self._state_version or len(layout.objects) != len(self.param_groups):
            return False
        if layout.state_identity != (id(self.state), len(self.state)):
            return False
        for group, objects, (listed, version), arrays, bare, numerics, hyper in zip(
            self.param_groups, layout.objects, layout.lists, layout.arrays, layout.bare, layout.numerics,
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

    def _new_layout(self, hyperparameters: Sequence[Hyperparameters]) -> _Layout:
        objects, lists, arrays_of_groups, index = [], [], [], 0
        for group, hyper in zip(self.param_groups, hyperparameters, strict=True):
            lists.append((group["params"], getattr(group["params"], "version", 0)))
            params = list(group["params"])
            arrays = []
            for parameter in params:
                check_parameter(parameter, index, hyper.numerics.dtypes)
                array = data_of(parameter)
                state = self.state.get(index)
                if state is not None and (state.ax.shape != array.shape or state.ax.dtype != array.dtype):
                    raise ValueError(
                        f"params[{index}] has shape {array.shape} and dtype {array.dtype.name}, but its "
                        f"state was made for shape {state.ax.shape} and dtype {state.ax.dtype.name}"
                    )
                arrays.append(array)
                index += 1
            objects.append(params)
            arrays_of_groups.append(arrays)
        memory = check_distinct([a for arrays in arrays_of_groups for a in arrays])
        segments = build_layout(arrays_of_groups, self.state, self._backend.packs)
        tensors = {i: p for i, p in enumerate(p for params in objects for p in params) if is_tensor(p)}
        return _Layout(
            tensors=tensors,
            objects=objects,
            lists=lists,
            arrays=arrays_of_groups,
            bare=[all(type(p) is np.ndarray for p in params) for params in objects],
            numerics=[hyper.numerics for hyper in hyperparameters],
            state_version=self._state_version,
            state_identity=(id(self.state), len(self.state)),
            segments=segments,
            memory=memory,
        )

    # ------------------------------------------------------------------------------ gradients

    def _gradient_list(
        self, grads: Sequence[np.ndarray | None] | None, layout: _Layout
    ) -> list[np.ndarray | None]:
        """One checked gradient (or ``None``) per parameter."""
        if grads is None:
            parameters = [p for objects in layout.objects for p in objects]
            for index, parameter in enumerate(parameters):
                if not has_grad_attribute(parameter):
                    raise TypeError(f"step() needs grads= when a parameter is a bare array (params[{index}])")
            gathered = [gradient_of(parameter) for parameter in parameters]
        else:
            if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
                raise TypeError(f"grads must be a list of arrays or None, got {type(grads).__name__}")
            if len(grads) != len(layout.all_arrays):
                raise ValueError(
                    f"grads has {len(grads)} entries, but the optimizer has {len(layout.all_arrays)} params"
                )
            gathered = list(grads)
        for index, gradient in enumerate(gathered):
            if gradient is None:
                continue
            if type(gradient) is not np.ndarray:
                gradient = gathered[index] = as_gradient(gradient)  # a torch tensor: its NumPy view
            if not (
                type(gradient) is np.ndarray
                and gradient.shape == layout.shapes[index]
                and gradient.dtype == layout.dtypes[index]
            ):
                check_gradient(gradient, layout.all_arrays[index], index)  # raises, naming what is wrong
                raise _StaleLayout  # it fits the array as it is now: the array changed in place
            overlapped = layout.memory.overlapping(gradient)
            if overlapped is not None:
                raise ValueError(
                    f"grads[{index}] shares memory with params[{overlapped}]; a gradient must not "
                    "overlap a parameter (pass a copy)"
                )
        return gathered

    def _packed_gradients(self, grads: Packed, layout: _Layout) -> list[np.ndarray] | None:
        """Each segment's slice of a packed gradient buffer laid out exactly like the parameters
        (checked once per packed list), or ``None`` if it is not."""
        if not grads.intact():
            return None
        if layout.packed_gradients is not None and layout.packed_gradients[0]() is grads:
            return layout.packed_gradients[1]
        fits = (
            len(layout.all_arrays) == len(grads)
            and grads.buffer.flags.c_contiguous
            and all(
                shape == g.shape and dtype == g.dtype and type(g) is np.ndarray
                for shape, dtype, g in zip(layout.shapes, layout.dtypes, grads, strict=False)
            )
            and layout.memory.overlapping(grads.buffer) is None
        )
        slices = None
        if fits:
            flat = flat_real(grads.buffer)
            scale = 2 if grads.buffer.dtype.kind == "c" else 1
            slices = []
            for segment in layout.segments:
                start = grads.offsets[segment.indices[0]] * scale
                slices.append(flat[start : start + segment.theta.size])
        layout.packed_gradients = (weakref.ref(grads), slices)
        return slices

    # ----------------------------------------------------------------------------------- step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the ``.grad`` of parameter objects (bare arrays carry no gradient)."""
        with self._lock:
            for parameter in self._parameters():
                if not has_grad_attribute(parameter) or parameter.grad is None:
                    continue
                if set_to_none:
                    parameter.grad = None
                else:
                    parameter.grad[...] = 0

    def step(
        self,
        grads: Sequence[np.ndarray | None] | None = None,
        *,
        closure: Callable[[], Any] | None = None,
    ) -> Any:
        """One ASGD step for every parameter that has a gradient; returns the closure's loss.

        ``grads`` is aligned with the parameters of all groups in order; a ``None`` entry skips its
        parameter and leaves its state untouched. Without ``grads``, each parameter's ``.grad``
        is used.
        """
        self._refuse_inside_averaged_parameters()
        loss = closure() if closure is not None else None
        with self._lock, interrupts_deferred():
            self._refuse_inside_averaged_parameters()  # under the lock: no block opens meanwhile
            self._execute(self._plan(grads))
        return loss

    def _refuse_inside_averaged_parameters(self) -> None:
        if self._holding_averages:
            raise RuntimeError(
                "step() inside averaged_parameters(): the parameters hold the averages there, and "
                "the step's update would be undone on exit; step after the block"
            )

    def _plan(self, grads: Sequence[np.ndarray | None] | None) -> list[_Planned]:
        """The step, checked and cut into backend tasks; nothing is changed yet."""
        try:
            return self._plan_with(grads)
        except _StaleLayout:  # a parameter changed its shape or dtype in place: look at it afresh
            self._layout = None
            return self._plan_with(grads)

    def _plan_with(self, grads: Sequence[np.ndarray | None] | None) -> list[_Planned]:
        hyperparameters = [self._group_hyperparameters(i) for i in range(len(self.param_groups))]
        layout = self._resolved(hyperparameters)
        for hyper, first_of_dtype in zip(hyperparameters, layout.first_of_dtype, strict=True):
            if hyper.weight_decay != 0 or hyper.momentum != 0 or hyper.numerics.foreach:
                for dtype, index in first_of_dtype.items():
                    _check_coefficients(hyper, dtype, index)
        flat = self._packed_gradients(grads, layout) if isinstance(grads, Packed) else None
        scalars: dict[tuple[Any, ...], tuple[StepScalars, tuple[int | float, float, float]]] = {}
        planned = []
        if flat is not None:
            for segment, gradient in zip(layout.segments, flat, strict=True):
                planned.append(self._planned(segment, gradient, hyperparameters[segment.group], scalars))
            return planned
        gradients = self._gradient_list(grads, layout)
        for segment in layout.segments:
            indices = segment.indices
            hyper = hyperparameters[segment.group]
            if len(indices) == 1:
                alone = gradients[indices.start]
                if alone is not None:
                    planned.append(self._planned(segment, _flat_gradient(segment, [alone]), hyper, scalars))
                continue
            present = gradients[indices.start : indices.stop]
            missing = sum(g is None for g in present)
            if missing == len(present):
                continue
            if missing:  # some of a packed run step: each goes its own way
                for piece, gradient in _split(segment, present):
                    planned.append(self._planned(piece, gradient, hyper, scalars, split=True))
                continue
            planned.append(self._planned(segment, _flat_gradient(segment, present), hyper, scalars))
        return planned

    def _planned(
        self,
        segment: Segment,
        gradient: np.ndarray,
        hyper: Hyperparameters,
        scalars: dict[tuple[Any, ...], tuple[StepScalars, tuple[int | float, float, float]]],
        split: bool = False,
    ) -> _Planned:
        """One segment's task: its clock (new at its first step), lines 1 and 8, its buffers."""
        if gradient.dtype != segment.theta.dtype or gradient.size != segment.theta.size:
            raise _StaleLayout  # never give a kernel arrays of different lengths
        clock, ax, buf = segment.clock, segment.ax, None
        new_state = split or clock is None
        if clock is None:
            clock = Clock.initial(hyper.lr, hyper.numerics)
        if ax is None:
            ax = np.zeros_like(segment.theta)
        # The scalars are the same for every segment of a group stepping in lockstep.
        key = (id(hyper), clock.step, clock.eta, clock.mu)
        entry = scalars.get(key)
        if entry is None:
            entry = scalars[key] = self._scalars(hyper, clock)
        first_momentum_step = False
        if hyper.momentum != 0 and _momentum_used(hyper.momentum, segment.dtype):
            buf = segment.buf
            if buf is None:
                buf, first_momentum_step, new_state = np.zeros_like(segment.theta), True, True
        return _Planned(
            segment=segment,
            task=Task(segment.theta, gradient, ax, buf, entry[0], first_momentum_step),
            clock=clock,
            next_clock=entry[1],
            new_states=segment.states(clock, ax, buf if buf is not None else segment.buf)
            if new_state
            else None,
        )

    @staticmethod
    def _scalars(
        hyper: Hyperparameters, clock: Clock
    ) -> tuple[StepScalars, tuple[int | float, float, float]]:
        """A clock's step: the scalars of lines 2 to 7, and the clock after lines 1 and 8."""
        step = hyper.numerics.increment(clock.step)  # 1
        foreach = hyper.numerics.foreach
        scalars = StepScalars(
            maximize=hyper.maximize,
            weight_decay=hyper.weight_decay,
            momentum=hyper.momentum,
            # Each formulation's own use of lambd; the other's stays neutral (never rounded to inf).
            decay=1.0 if foreach else 1 - hyper.lambd * clock.eta,
            eta=clock.eta,
            mu=clock.mu,
            fused=hyper.numerics.fused_multiply_add,
            lambd=hyper.lambd if foreach else 0.0,
            foreach=foreach,
        )
        return scalars, (step, *hyper.schedule(step))  # 8

    def _execute(self, planned: list[_Planned]) -> None:
        """Run the backend on a checked plan, then commit the clocks and any new state."""
        for item in planned:
            if item.segment.gathered is not None:
                np.copyto(item.segment.parameter_view(item.segment.theta, 0), item.segment.gathered)
        self._backend.run([item.task for item in planned])  # 2 to 7
        if self._layout is not None and self._layout.tensors:
            mark_modified([self._layout.tensors[i] for item in planned for i in item.segment.indices
                           if i in self._layout.tensors])  # fmt: skip
        for item in planned:
            if item.segment.gathered is not None:
                np.copyto(item.segment.gathered, item.segment.parameter_view(item.segment.theta, 0))
            item.clock.step, item.clock.eta, item.clock.mu = item.next_clock
            if item.new_states is not None:
                self.state.update(item.new_states)
                self._state_version += 1

    # ------------------------------------------------------------------------------- averages

    def averages(self) -> list[np.ndarray]:
        """Copies of the averaged parameters ``ax``, in parameter order.

        A parameter that has not stepped yet is its own average.
        """
        with self._lock:
            return [
                (self.state[index].ax if index in self.state else data_of(parameter)).copy()
                for index, parameter in enumerate(self._parameters())
            ]

    def averaged_parameters(self) -> AbstractContextManager[None]:
        """Hold the averages in the parameters inside the block, for evaluation.

        On exit, normal or by an exception, every parameter gets back its exact bits. A Ctrl-C
        (SIGINT) gives them back before its ``KeyboardInterrupt`` is raised, wherever it lands, so
        a handler that saves a checkpoint saves the weights; the rest of the block, if it goes on,
        sees the weights. A step inside the block, from any thread, is refused.
        """
        return _AveragesHeld(self)

    # ----------------------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """Torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``.

        Arrays are copies, so the dict can be kept while the optimizer goes on.
        """
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> dict[str, Any]:
        state: dict[int, dict[str, Any]] = {}
        groups: list[dict[str, Any]] = []
        for group, indices in self._indexed_groups():
            numerics = numerics_named(group["numerics"])
            for index in indices:
                if index in self.state:
                    state[index] = self.state[index].exported(numerics)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace hyperparameters and state with those of ``state_dict`` (copied), or change nothing.

        Saved groups are matched to this optimizer's groups by position, and saved parameter ids
        to its parameters by their order within the groups, as torch does.
        """
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict lacks {key!r}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, Sequence) or isinstance(saved_groups, (str, bytes)):
            raise TypeError(f"state_dict['param_groups'] must be a list, got {type(saved_groups).__name__}")
        if not isinstance(saved_state, Mapping):
            raise TypeError(f"state_dict['state'] must be a mapping, got {type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} param groups, the optimizer has {len(self.param_groups)}"
            )

        new_hyperparameters: list[dict[str, Any]] = []
        index_of_saved_id: dict[Any, int] = {}
        numerics_of_index: dict[int, Numerics] = {}
        for group_index, ((group, indices), saved) in enumerate(
            zip(self._indexed_groups(), saved_groups, strict=True)
        ):
            where = f"state_dict['param_groups'][{group_index}]"
            if not isinstance(saved, Mapping):
                raise TypeError(f"{where} must be a mapping, got {type(saved).__name__}")
            unknown = saved.keys() - DEFAULTS.keys() - {"params"}
            if unknown:
                raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))}")
            saved_ids = saved.get("params")
            if not isinstance(saved_ids, Sequence) or len(saved_ids) != len(indices):
                raise ValueError(
                    f"{where}['params'] must list {len(indices)} parameter ids to match the optimizer's group"
                )
            hyper = Hyperparameters.of(saved, where)
            for saved_id, index in zip(saved_ids, indices, strict=True):
                try:
                    hash(saved_id)
                except TypeError:
                    raise TypeError(
                        f"{where}['params'] has an unhashable parameter id {saved_id!r}"
                    ) from None
                if saved_id in index_of_saved_id:
                    raise ValueError(f"{where}['params'] repeats the parameter id {saved_id!r}")
                check_parameter(group["params"][index - indices[0]], index, hyper.numerics.dtypes)
                index_of_saved_id[saved_id] = index
                numerics_of_index[index] = hyper.numerics
            new_hyperparameters.append(hyper.as_group())

        parameters = self._parameters()
        new_state: dict[int, ParameterState] = {}
        for saved_id, entry in saved_state.items():
            if saved_id not in index_of_saved_id:
                raise ValueError(f"state_dict['state'] has an entry for unknown parameter id {saved_id!r}")
            index = index_of_saved_id[saved_id]
            new_state[index] = parse_parameter_state(
                entry,
                data_of(parameters[index]),
                numerics_of_index[index],
                where=f"state_dict['state'][{saved_id!r}]",
            )

        with interrupts_deferred():  # all of it or nothing
            for group, hyperparameters in zip(self.param_groups, new_hyperparameters, strict=True):
                group.update(hyperparameters)
            self.state = new_state
            self._share_states()

    def _share_states(self) -> None:
        """Let packed parameters with equal states be stepped as one range again (see
        :func:`optimized.layout.share_states`); the layout is made anew at the next step."""
        if self._backend.packs:
            share_states([[data_of(p) for p in group["params"]] for group in self.param_groups], self.state)
        self._state_version += 1

    # -------------------------------------------------------------------------------- copying

    def _copyable_state(self) -> dict[str, Any]:
        """What a copy is made from: everything but the lock, the open blocks (a copy is in none)
        and what is derived from the arrays."""
        unshared = ("_lock", "_holding_averages")
        state = {key: value for key, value in self.__dict__.items() if key not in unshared}
        state["_layout"], state["_hyperparameters"] = None, {}
        return state

    def __getstate__(self) -> dict[str, Any]:
        """A copy made under the lock, so that a pickle never holds half a step (the layout's views
        would become copies; it is made anew)."""
        with self._lock:
            return copy.deepcopy(self._copyable_state())

    def __deepcopy__(self, memo: dict[int, Any]) -> ASGDOptimizer:
        """A deep copy taken under the lock, so that it never holds half a step."""
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        with self._lock:
            twin.__setstate__(copy.deepcopy(self._copyable_state(), memo))
        return twin

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._holding_averages = set()  # a copy is no block's: it steps
        self._share_states()  # the copied states' arrays are no longer views of shared buffers


class _AveragesHeld:
    """An :meth:`ASGDOptimizer.averaged_parameters` block: the averages swapped into the
    parameters on entry, the weights swapped back on exit or before a Ctrl-C is raised."""

    def __init__(self, optimizer: ASGDOptimizer) -> None:
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
            # The weights: those an open block (of any thread) saved, since the parameters hold
            # the averages while one is open (no step can change them meanwhile).
            other = next(iter(optimizer._holding_averages), None)
            self.saved = other.saved if other is not None else [array.copy() for array in self.arrays]
            self.tensors = [parameter for parameter in parameters if is_tensor(parameter)]
            self.guard.install()  # from here on a Ctrl-C first puts the saved weights back
            optimizer._holding_averages.add(self)
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


def _flat_gradient(segment: Segment, gradients: Sequence[np.ndarray | None]) -> np.ndarray:
    """The segment's gradients as one flat real array: a view where possible, else gathered into
    the segment's gradient buffer."""
    if len(gradients) == 1:
        gradient = gradients[0]
        assert gradient is not None
        if gradient.flags.c_contiguous:
            return flat_real(gradient)
    if segment.gradient_buffer is None:
        segment.gradient_buffer = np.empty_like(segment.theta)
    for position, gradient in enumerate(gradients):
        assert gradient is not None
        np.copyto(segment.parameter_view(segment.gradient_buffer, position), gradient)
    return segment.gradient_buffer


def _split(segment: Segment, gradients: Sequence[np.ndarray | None]) -> Iterator[tuple[Segment, np.ndarray]]:
    """The parameters of a packed segment that have a gradient, each as its own segment with a
    copy of the shared clock (the others keep the shared one), and its flat gradient."""
    for position, gradient in enumerate(gradients):
        if gradient is not None:
            piece = segment.piece(position)
            yield piece, _flat_gradient(piece, [gradient])
