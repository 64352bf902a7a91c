"""The optimizer API that the reference and the production ASGD share.

It owns everything that is not arithmetic: parameter groups, the gradient protocol of ``step``,
validation, ``state_dict``/``load_state_dict`` in torch's layout, and the averages. A subclass
supplies the arithmetic: ``_update`` for one parameter at a time (the reference), or ``_apply``
for a whole checked step (the production kernel, which updates runs of parameters together).
Every check of a call runs before the first thing changes, so a refused call leaves parameters
and state exactly as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.hyperparameters import DEFAULTS, validate_hyperparameters
from reference.numerics import Numerics, numerics_named
from reference.parameters import (
    check_distinct,
    check_gradient,
    check_parameter,
    data_of,
    gradient_of,
    has_grad_attribute,
)
from reference.state import ParameterState, parse_parameter_state

__all__ = ["ASGDOptimizer", "StepWork"]

ParamGroup = dict[str, Any]


@dataclass(frozen=True)
class StepWork:
    """One group's share of a checked step."""

    hyperparameters: dict[str, Any]
    numerics: Numerics
    gradients: list[tuple[int, np.ndarray | None]]
    """``(global parameter index, gradient or None)`` for each parameter of the group."""


class ASGDOptimizer:
    """Parameter groups, state and the ``step`` protocol of an ASGD implementation."""

    def __init__(self, params: Iterable[Any], defaults: Mapping[str, Any]) -> None:
        self.defaults: dict[str, Any] = validate_hyperparameters(defaults)
        self.param_groups: list[ParamGroup] = []
        self.state: dict[int, ParameterState] = {}
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

    # ----------------------------------------------------------------------------------- groups

    def _new_group(self, group: object, already: Sequence[Any]) -> ParamGroup:
        if not isinstance(group, Mapping):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a param group must have a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        hyperparameters = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        hyperparameters = validate_hyperparameters(hyperparameters)
        dtypes = numerics_named(hyperparameters["numerics"]).dtypes
        for offset, parameter in enumerate(params):
            check_parameter(parameter, len(already) + offset, dtypes)
        check_distinct([*already, *params])
        return {"params": params, **hyperparameters}

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (defaults fill the rest)."""
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

    def _checked_hyperparameters(self, group: ParamGroup, where: str) -> dict[str, Any]:
        missing = [name for name in DEFAULTS if name not in group]
        if missing:
            raise ValueError(f"{where} lacks the hyperparameters {missing}")
        return validate_hyperparameters({name: group[name] for name in DEFAULTS})

    # ------------------------------------------------------------------------------------- step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the ``.grad`` of parameter objects (bare arrays carry no gradient)."""
        for parameter in self._parameters():
            if not has_grad_attribute(parameter) or parameter.grad is None:
                continue
            if set_to_none:
                parameter.grad = None
            else:
                parameter.grad[...] = 0

    def _gradients(self, grads: Sequence[np.ndarray | None] | None) -> list[np.ndarray | None]:
        parameters = self._parameters()
        if grads is None:
            for index, parameter in enumerate(parameters):
                if not has_grad_attribute(parameter):
                    raise TypeError(f"step() needs grads= when a parameter is a bare array (params[{index}])")
            gathered = [gradient_of(parameter) for parameter in parameters]
        else:
            if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
                raise TypeError(f"grads must be a list of arrays or None, got {type(grads).__name__}")
            if len(grads) != len(parameters):
                raise ValueError(
                    f"grads has {len(grads)} entries, but the optimizer has {len(parameters)} params"
                )
            gathered = list(grads)
        for index, (gradient, parameter) in enumerate(zip(gathered, parameters, strict=True)):
            if gradient is not None:
                check_gradient(gradient, parameter, index)
        return gathered

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
        loss = closure() if closure is not None else None
        self._apply(self._checked_work(grads))
        return loss

    def _checked_work(self, grads: Sequence[np.ndarray | None] | None) -> list[StepWork]:
        """Everything a step needs, checked before anything changes: per group, its hyperparameters,
        its profile, and the ``(index, gradient)`` of each of its parameters."""
        gradients = self._gradients(grads)
        work = []
        for group_index, (group, indices) in enumerate(self._indexed_groups()):
            hyperparameters = self._checked_hyperparameters(group, f"param_groups[{group_index}]")
            numerics = numerics_named(hyperparameters["numerics"])
            for index in indices:
                check_parameter(group["params"][index - indices[0]], index, numerics.dtypes)
            work.append(StepWork(hyperparameters, numerics, [(i, gradients[i]) for i in indices]))
        return work

    def _apply(self, work: list[StepWork]) -> None:
        """Update each parameter that has a gradient, one at a time, through ``_update``."""
        parameters = self._parameters()
        for item in work:
            for index, gradient in item.gradients:
                if gradient is None:
                    continue
                array = data_of(parameters[index])
                state = self.state.get(index)
                if state is None:
                    state = ParameterState.initial(array, item.hyperparameters["lr"], item.numerics)
                    self.state[index] = state
                self._update(array, gradient, state, item.hyperparameters, item.numerics)

    def _update(
        self,
        parameter: np.ndarray,
        gradient: np.ndarray,
        state: ParameterState,
        hyperparameters: Mapping[str, Any],
        numerics: Numerics,
    ) -> None:
        """One ASGD step of one parameter, in place, in the rounding of ``numerics``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------- averages

    def averages(self) -> list[np.ndarray]:
        """Copies of the averaged parameters ``ax``, in parameter order.

        A parameter that has not stepped yet is its own average.
        """
        return [
            (self.state[index].ax if index in self.state else data_of(parameter)).copy()
            for index, parameter in enumerate(self._parameters())
        ]

    @contextlib.contextmanager
    def averaged_parameters(self) -> Iterator[None]:
        """Hold the averages in the parameters inside the block, for evaluation.

        On exit, normal or by an exception, every parameter gets back its exact bits.
        """
        arrays = [data_of(parameter) for parameter in self._parameters()]
        saved = [array.copy() for array in arrays]
        try:
            for array, average in zip(arrays, self.averages(), strict=True):
                array[...] = average
            yield
        finally:
            for array, original in zip(arrays, saved, strict=True):
                array[...] = original

    # ----------------------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """Torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``.

        Arrays are copies, so the dict can be kept while the optimizer goes on.
        """
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
            hyperparameters = self._checked_hyperparameters(dict(saved), where)
            numerics = numerics_named(hyperparameters["numerics"])
            for saved_id, index in zip(saved_ids, indices, strict=True):
                if saved_id in index_of_saved_id:
                    raise ValueError(f"{where}['params'] repeats the parameter id {saved_id!r}")
                check_parameter(group["params"][index - indices[0]], index, numerics.dtypes)
                index_of_saved_id[saved_id] = index
                numerics_of_index[index] = numerics
            new_hyperparameters.append(hyperparameters)

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

        for group, hyperparameters in zip(self.param_groups, new_hyperparameters, strict=True):
            group.update(hyperparameters)
        self.state = new_state
