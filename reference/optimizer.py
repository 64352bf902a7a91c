"""The reference ASGD optimizer: parameter groups, the ``step`` protocol, state and ``state_dict``.

Written to be read against torch's ``Optimizer``: no caches, threads, views or signal handling.
Every call looks at the parameters afresh (a replaced ``.data``, a replaced list entry or an
appended parameter is what gets updated) and checks everything it will use before it changes
anything, so a refused call leaves parameters and state as they were. State is kept per parameter,
by the parameter's position across the groups (torch's ``state_dict`` numbering).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from reference import rounding
from reference.asgd import step_parameter
from reference.hyperparameters import DEFAULTS, group_hyperparameters, validated, validated_all
from reference.numerics import numerics_named
from reference.parameters import (
    array_of,
    check_distinct,
    check_gradient,
    check_parameter,
    gradient_overlap,
    has_grad_attribute,
)
from reference.state import ParameterState, exported, initial_state, parsed

__all__ = ["ASGD"]


class ASGD:
    """Averaged SGD, torch's algorithm plus heavy-ball momentum, in pure Python.

    ``params`` is a list of NumPy arrays (or of objects with ``.data``/``.grad``), or of
    param-group dicts ``{"params": [...], "lr": ...}``. ``numerics`` chooses the rounding:
    ``"numpy"`` (NumPy's, with an exact step counter), ``"torch"`` (torch 2.13's CPU for-loop
    ASGD, bit for bit) or ``"torch-foreach"`` (``torch.optim.ASGD(foreach=True)`` on the CPU, bit
    for bit).
    """

    backend = "reference"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        alpha: float = 0.75,
        t0: float = 1e6,
        lambd: float = 1e-4,
        maximize: bool = False,
        numerics: str = "numpy",
    ) -> None:
        self.defaults: dict[str, Any] = validated_all(
            {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "alpha": alpha, "t0": t0,
             "lambd": lambd, "maximize": maximize, "numerics": numerics}
        )  # fmt: skip
        self.state: dict[int, ParameterState] = {}
        self.param_groups: list[dict[str, Any]] = []
        self._open_blocks: list[_AveragesHeld] = []
        self._weights: list[tuple[np.ndarray, np.ndarray]] = []
        """Each parameter's array and a copy of its weights, while a block holds the averages."""
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
        made: list[dict[str, Any]] = []
        for group in groups:  # all of them checked before the optimizer holds any
            made.append(self._checked_group(group, [p for g in made for p in g["params"]]))
        self.param_groups = made

    def __getstate__(self) -> dict[str, Any]:
        """What a copy or a pickle holds: all but the open blocks (a copy is in none, and steps)."""
        return {**self.__dict__, "_open_blocks": [], "_weights": []}

    def _checked_group(self, group: object, earlier: list[Any]) -> dict[str, Any]:
        """A new param group: its parameters checked, the defaults filling its hyperparameters."""
        if not isinstance(group, Mapping):
            raise TypeError(f"a param group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise ValueError("a param group must have a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        hyper = validated_all({**self.defaults, **{k: v for k, v in group.items() if k != "params"}})
        for offset, parameter in enumerate(params):
            check_parameter(parameter, len(earlier) + offset, numerics_named(hyper["numerics"]).dtypes)
        check_distinct([array_of(p) for p in [*earlier, *params]])
        return {"params": params, **hyper}

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (the defaults fill the rest)."""
        self.param_groups.append(self._checked_group(param_group, self._parameters()))

    def _parameters(self) -> list[Any]:
        return [p for group in self.param_groups for p in group["params"]]

    def _numbered_groups(self) -> list[tuple[dict[str, Any], list[int]]]:
        """Each group with the positions of its parameters across all groups."""
        numbered, start = [], 0
        for group in self.param_groups:
            numbered.append((group, list(range(start, start + len(group["params"])))))
            start += len(group["params"])
        return numbered

    # ------------------------------------------------------------------------------------- step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the ``.grad`` of parameter objects (bare arrays carry no gradient)."""
        for parameter in self._parameters():
            if has_grad_attribute(parameter) and parameter.grad is not None:
                if set_to_none:
                    parameter.grad = None
                else:
                    parameter.grad[...] = 0

    def step(
        self, grads: Sequence[np.ndarray | None] | None = None, *, closure: Callable[[], Any] | None = None
    ) -> Any:
        """One ASGD step for every parameter that has a gradient; returns the closure's loss.

        ``grads`` lists a gradient (or ``None``, which skips the parameter and leaves its state
        untouched) for each parameter of all groups in order; without it each parameter's
        ``.grad`` is used.
        """
        self._refuse_inside_averaged_parameters()
        loss = closure() if closure is not None else None
        self._refuse_inside_averaged_parameters()  # the closure may have opened a block
        for array, gradient, index, group, numerics in self._checked_work(grads):
            state = self.state.get(index) or initial_state(array, group["lr"], numerics)
            step_parameter(array, gradient, state, group, numerics)
            self.state[index] = state
        return loss

    def _refuse_inside_averaged_parameters(self) -> None:
        if self._open_blocks:
            raise RuntimeError(
                "step() inside averaged_parameters(): the parameters hold the averages there, and "
                "the step's update would be undone on exit; step after the block"
            )

    def _checked_arrays(self) -> tuple[list[Any], list[np.ndarray], list[dict[str, Any]]]:
        """The parameters, their arrays and each one's group hyperparameters, all checked as a step
        needs them (and their states' shapes and dtypes against the arrays); nothing is changed."""
        groups = [group_hyperparameters(g, f"param_groups[{i}]") for i, g in enumerate(self.param_groups)]
        parameters, arrays, owners = [], [], []
        for (group, indices), hyper in zip(self._numbered_groups(), groups, strict=True):
            for index, parameter in zip(indices, group["params"], strict=True):
                check_parameter(parameter, index, numerics_named(hyper["numerics"]).dtypes)
                array = array_of(parameter)
                state = self.state.get(index)
                if state is not None and (state.ax.shape != array.shape or state.ax.dtype != array.dtype):
                    raise ValueError(
                        f"params[{index}] has shape {array.shape} and dtype {array.dtype.name}, but its "
                        f"state was made for shape {state.ax.shape} and dtype {state.ax.dtype.name}"
                    )
                parameters.append(parameter)
                arrays.append(array)
                owners.append(hyper)
        check_distinct(arrays)
        return parameters, arrays, owners

    def _checked_work(self, grads: Sequence[np.ndarray | None] | None) -> list[tuple[Any, ...]]:
        """``(array, gradient, index, hyperparameters, numerics)`` for each parameter that steps,
        everything checked; nothing is changed."""
        parameters, arrays, owners = self._checked_arrays()
        for index, (array, hyper) in enumerate(zip(arrays, owners, strict=True)):
            _check_coefficients(hyper, array.dtype, index)
        gradients = self._checked_gradients(grads, parameters, arrays)
        return [
            (array, gradient, index, hyper, numerics_named(hyper["numerics"]))
            for index, (array, gradient, hyper) in enumerate(zip(arrays, gradients, owners, strict=True))
            if gradient is not None
        ]

    @staticmethod
    def _checked_gradients(
        grads: Sequence[np.ndarray | None] | None, parameters: list[Any], arrays: list[np.ndarray]
    ) -> list[np.ndarray | None]:
        if grads is None:
            for index, parameter in enumerate(parameters):
                if not has_grad_attribute(parameter):
                    raise TypeError(f"step() needs grads= when a parameter is a bare array (params[{index}])")
            gradients = [parameter.grad for parameter in parameters]
        else:
            if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
                raise TypeError(f"grads must be a list of arrays or None, got {type(grads).__name__}")
            if len(grads) != len(arrays):
                raise ValueError(
                    f"grads has {len(grads)} entries, but the optimizer has {len(arrays)} params"
                )
            gradients = list(grads)
        for index, gradient in enumerate(gradients):
            if gradient is not None:
                check_gradient(gradient, arrays[index], index)
                overlapped = gradient_overlap(gradient, arrays)
                if overlapped is not None:
                    raise ValueError(
                        f"grads[{index}] shares memory with params[{overlapped}]; a gradient must not "
                        "overlap a parameter (pass a copy)"
                    )
        return gradients

    # --------------------------------------------------------------------------------- averages

    def averages(self) -> list[np.ndarray]:
        """Copies of the averaged parameters ``ax``, in parameter order; a parameter that has not
        stepped yet is its own average."""
        return [
            (self.state[index].ax if index in self.state else array_of(parameter)).copy()
            for index, parameter in enumerate(self._parameters())
        ]

    def averaged_parameters(self) -> _AveragesHeld:
        """Hold the averages in the parameters inside the block, for evaluation; on exit every
        parameter gets back its exact bits. A step inside the block is refused. (A Ctrl-C that
        lands while the values are being copied may leave some swapped: the reference does not
        defer signals; ``optimized.ASGD`` does.)"""
        return _AveragesHeld(self)

    # ------------------------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``,
        with copies of the arrays."""
        state: dict[int, dict[str, Any]] = {}
        groups: list[dict[str, Any]] = []
        for group, indices in self._numbered_groups():
            numerics = numerics_named(validated("numerics", group["numerics"]))  # it may have been set since
            for index in indices:
                if index in self.state:
                    state[index] = exported(self.state[index], numerics)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take hyperparameters and state from ``state_dict`` (copies), or refuse it and change nothing.

        Saved groups are matched to this optimizer's groups by position, and saved parameter ids to
        its parameters by their order within the groups, as torch does.
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
        hyperparameters, position_of_id, group_of_position = [], {}, {}
        for number, ((group, indices), saved) in enumerate(
            zip(self._numbered_groups(), saved_groups, strict=True)
        ):
            where = f"state_dict['param_groups'][{number}]"
            if not isinstance(saved, Mapping):
                raise TypeError(f"{where} must be a mapping, got {type(saved).__name__}")
            unknown = saved.keys() - DEFAULTS.keys() - {"params"}
            if unknown:
                raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))}")
            ids = saved.get("params")
            if not isinstance(ids, Sequence) or len(ids) != len(indices):
                raise ValueError(
                    f"{where}['params'] must list {len(indices)} parameter ids to match the optimizer's group"
                )
            hyper = group_hyperparameters(saved, where)
            for saved_id, index, parameter in zip(ids, indices, group["params"], strict=True):
                try:
                    hash(saved_id)
                except TypeError:
                    raise TypeError(
                        f"{where}['params'] has an unhashable parameter id {saved_id!r}"
                    ) from None
                if saved_id in position_of_id:
                    raise ValueError(f"{where}['params'] repeats the parameter id {saved_id!r}")
                check_parameter(parameter, index, numerics_named(hyper["numerics"]).dtypes)
                position_of_id[saved_id], group_of_position[index] = index, hyper
            hyperparameters.append(hyper)
        parameters = self._parameters()
        state: dict[int, ParameterState] = {}
        for saved_id, entry in saved_state.items():
            if saved_id not in position_of_id:
                raise ValueError(f"state_dict['state'] has an entry for unknown parameter id {saved_id!r}")
            index = position_of_id[saved_id]
            numerics = numerics_named(group_of_position[index]["numerics"])
            where = f"state_dict['state'][{saved_id!r}]"
            state[index] = parsed(entry, array_of(parameters[index]), numerics, where)
        for group, hyper in zip(self.param_groups, hyperparameters, strict=True):
            group.update(hyper)
        self.state = state


def _check_coefficients(hyper: Mapping[str, Any], dtype: np.dtype[Any], index: int) -> None:
    """Refuse a weight decay, momentum or (in the foreach formulation, where it multiplies the
    parameters as a scalar argument) lambd that the parameters' format cannot hold: torch raises
    there, even for a value that would round down to the largest one."""
    names = ["weight_decay", "momentum"] + (["lambd"] if numerics_named(hyper["numerics"]).foreach else [])
    fmt = rounding.format_of(dtype)
    for name in names:
        value = hyper[name]
        if value != 0 and abs(float(value)) > fmt.largest:
            raise ValueError(
                f"Invalid {name}: {value!r} for params[{index}] of dtype {dtype.name} "
                f"(beyond the range of {fmt.name})"
            )


class _AveragesHeld:
    """An :meth:`ASGD.averaged_parameters` block. Blocks may overlap: the first to open swaps the
    averages in, the last to close puts the weights back."""

    def __init__(self, optimizer: ASGD) -> None:
        self.optimizer = optimizer

    def __enter__(self) -> None:
        optimizer = self.optimizer
        if self in optimizer._open_blocks:
            raise RuntimeError("this averaged_parameters() block is already open")
        if not optimizer._open_blocks:
            _, arrays, _ = optimizer._checked_arrays()  # every swap below can be made
            averages = optimizer.averages()
            optimizer._weights = [(array, array.copy()) for array in arrays]
            for array, average in zip(arrays, averages, strict=True):
                array[...] = average
        optimizer._open_blocks.append(self)

    def __exit__(self, *exc_info: object) -> None:
        optimizer = self.optimizer
        if self not in optimizer._open_blocks:
            return
        optimizer._open_blocks.remove(self)
        if not optimizer._open_blocks:
            for array, weights in optimizer._weights:
                array[...] = weights
            optimizer._weights = []
