"""The production engine's optimizer core, which every face of the optimized ASGD shares; only its
backend (the numba or the NumPy kernel) differs.

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
import operator
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from optimized.averaging import AveragesHeld
from optimized.checkpoint import exported_state_dict, parsed_state_dict
from optimized.gradients import flat_gradient, gradient_list, packed_gradients, split
from optimized.hyperparameters import (
    DEFAULTS,
    Hyperparameters,
    check_coefficients,
    momentum_used,
    validate_hyperparameters,
)
from optimized.interrupts import interrupts_deferred
from optimized.layout import Segment, share_states
from optimized.numerics import numerics_named
from optimized.packing import Packed
from optimized.parameters import (
    check_distinct,
    check_parameter,
    data_of,
    has_grad_attribute,
)
from optimized.plan import Backend, Planned, StepScalars, Task
from optimized.resolved import Layout, StaleLayout, new_layout, still_describes
from optimized.state import Clock, ParameterState
from optimized.tensors import mark_modified
from optimized.versioned import VersionedDict, VersionedList

__all__ = ["ASGDOptimizer"]

ParamGroup = dict[str, Any]

_WRITEABLE = operator.attrgetter("flags.writeable")


class ASGDOptimizer:
    """Parameter groups, state and the ``step`` protocol of an ASGD implementation over a backend."""

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any], backend: Backend) -> None:
        self.defaults: dict[str, Any] = validate_hyperparameters(defaults)
        self.param_groups: list[ParamGroup] = []
        self.state: dict[int, ParameterState] = VersionedDict()  # a step notices entries replaced
        self._backend = backend
        # Held by every public method that reads or changes parameters or state: one call at a time.
        self._lock = threading.RLock()
        self._holding_averages: set[AveragesHeld] = set()
        """The :meth:`averaged_parameters` blocks open, during which a step is refused."""
        self._state_version = 0
        self._layout: Layout | None = None
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

    def wait_until_compiled(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` seconds (``None``: no limit) for the compiled kernel that
        ``kernel="auto"`` loads in the background; whether steps now use it (``False``: NumPy's)."""
        return bool(getattr(self._backend, "wait_until_loaded", lambda _: False)(timeout))

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

    def _resolved(self, hyperparameters: Sequence[Hyperparameters]) -> Layout:
        """The parameter arrays as they are now, checked, and their segments."""
        layout = self._layout
        if layout is not None and still_describes(
            layout, self.param_groups, self.state, self._state_version, hyperparameters
        ):
            return layout
        layout = new_layout(
            self.param_groups, self.state, self._state_version, hyperparameters, self._backend.packs
        )
        self._layout = layout
        return layout

    # ------------------------------------------------------------------------------ gradients

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

    def _plan(self, grads: Sequence[np.ndarray | None] | None) -> list[Planned]:
        """The step, checked and cut into backend tasks; nothing is changed yet."""
        try:
            return self._plan_with(grads)
        except StaleLayout:  # a parameter changed its shape or dtype in place: look at it afresh
            self._layout = None
            return self._plan_with(grads)

    def _plan_with(self, grads: Sequence[np.ndarray | None] | None) -> list[Planned]:
        hyperparameters = [self._group_hyperparameters(i) for i in range(len(self.param_groups))]
        layout = self._resolved(hyperparameters)
        for hyper, first_of_dtype in zip(hyperparameters, layout.first_of_dtype, strict=True):
            if hyper.weight_decay != 0 or hyper.momentum != 0 or hyper.numerics.foreach:
                for dtype, index in first_of_dtype.items():
                    check_coefficients(hyper, dtype, index)
        flat = packed_gradients(grads, layout) if isinstance(grads, Packed) else None
        scalars: dict[tuple[Any, ...], tuple[StepScalars, tuple[int | float, float, float]]] = {}
        planned = []
        if flat is not None:
            for segment, gradient in zip(layout.segments, flat, strict=True):
                planned.append(self._planned(segment, gradient, hyperparameters[segment.group], scalars))
            return planned
        gradients = gradient_list(grads, layout)
        for segment in layout.segments:
            indices = segment.indices
            hyper = hyperparameters[segment.group]
            if len(indices) == 1:
                alone = gradients[indices.start]
                if alone is not None:
                    planned.append(self._planned(segment, flat_gradient(segment, [alone]), hyper, scalars))
                continue
            present = gradients[indices.start : indices.stop]
            missing = sum(g is None for g in present)
            if missing == len(present):
                continue
            if missing:  # some of a packed run step: each goes its own way
                for piece, gradient in split(segment, present):
                    planned.append(self._planned(piece, gradient, hyper, scalars, split=True))
                continue
            planned.append(self._planned(segment, flat_gradient(segment, present), hyper, scalars))
        return planned

    def _planned(
        self,
        segment: Segment,
        gradient: np.ndarray,
        hyper: Hyperparameters,
        scalars: dict[tuple[Any, ...], tuple[StepScalars, tuple[int | float, float, float]]],
        split: bool = False,
    ) -> Planned:
        """One segment's task: its clock (new at its first step), lines 1 and 8, its buffers."""
        if gradient.dtype != segment.theta.dtype or gradient.size != segment.theta.size:
            raise StaleLayout  # never give a kernel arrays of different lengths
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
        if hyper.momentum != 0 and momentum_used(hyper.momentum, segment.dtype):
            buf = segment.buf
            if buf is None:
                buf, first_momentum_step, new_state = np.zeros_like(segment.theta), True, True
        return Planned(
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

    def _execute(self, planned: list[Planned]) -> None:
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
        return AveragesHeld(self)

    # ----------------------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """Torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``.

        Arrays are copies, so the dict can be kept while the optimizer goes on.
        """
        with self._lock:
            return self._state_dict()

    def _state_dict(self) -> dict[str, Any]:
        return exported_state_dict(self.param_groups, self.state)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Replace hyperparameters and state with those of ``state_dict`` (copied), or change nothing.

        Saved groups are matched to this optimizer's groups by position, and saved parameter ids
        to its parameters by their order within the groups, as torch does.
        """
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        new_hyperparameters, new_state = parsed_state_dict(state_dict, self.param_groups)
        with interrupts_deferred():  # all of it or nothing
            for group, hyperparameters in zip(self.param_groups, new_hyperparameters, strict=True):
                group.update(hyperparameters)
            self.state = VersionedDict(new_state)
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
        self.state = VersionedDict(self.state)
        self._lock = threading.RLock()
        self._holding_averages = set()  # a copy is no block's: it steps
        self._share_states()  # the copied states' arrays are no longer views of shared buffers
