"""The optimized ASGD's ``state_dict`` in torch's layout, and loading one: everything is checked,
and the arrays copied, before the optimizer takes any of it, so a refused checkpoint changes nothing.

Saved groups are matched to the optimizer's groups by position, and saved parameter ids to its
parameters by their order within the groups, as torch does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optimized.hyperparameters import DEFAULTS, Hyperparameters, validate_hyperparameter
from optimized.numerics import Numerics, numerics_named
from optimized.parameters import check_parameter, data_of
from optimized.state import ParameterState, parse_parameter_state

__all__ = ["exported_state_dict", "indexed_groups", "parsed_state_dict"]


def indexed_groups(param_groups: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], list[int]]]:
    """Each group with the global indices of its parameters (torch's ``state_dict`` numbering)."""
    indexed, start = [], 0
    for group in param_groups:
        count = len(group["params"])
        indexed.append((group, list(range(start, start + count))))
        start += count
    return indexed


def exported_state_dict(
    param_groups: Sequence[Mapping[str, Any]], state: Mapping[int, ParameterState]
) -> dict[str, Any]:
    """``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``, arrays copied."""
    entries: dict[int, dict[str, Any]] = {}
    groups: list[dict[str, Any]] = []
    for group, indices in indexed_groups(param_groups):
        numerics = numerics_named(validate_hyperparameter("numerics", group["numerics"]))  # may be set since
        for index in indices:
            if index in state:
                entries[index] = state[index].exported(numerics)
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": indices})
    return {"state": entries, "param_groups": groups}


def parsed_state_dict(
    state_dict: object, param_groups: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[int, ParameterState]]:
    """The hyperparameters of each group and the state that ``state_dict`` holds for an optimizer with
    ``param_groups``, checked whole and copied, or ``ValueError``/``TypeError`` saying what is wrong."""
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
    if len(saved_groups) != len(param_groups):
        raise ValueError(
            f"state_dict has {len(saved_groups)} param groups, the optimizer has {len(param_groups)}"
        )

    new_hyperparameters: list[dict[str, Any]] = []
    index_of_saved_id: dict[Any, int] = {}
    numerics_of_index: dict[int, Numerics] = {}
    for group_index, ((group, indices), saved) in enumerate(
        zip(indexed_groups(param_groups), saved_groups, strict=True)
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
                raise TypeError(f"{where}['params'] has an unhashable parameter id {saved_id!r}") from None
            if saved_id in index_of_saved_id:
                raise ValueError(f"{where}['params'] repeats the parameter id {saved_id!r}")
            check_parameter(group["params"][index - indices[0]], index, hyper.numerics.dtypes)
            index_of_saved_id[saved_id] = index
            numerics_of_index[index] = hyper.numerics
        new_hyperparameters.append(hyper.as_group())

    parameters = [p for group in param_groups for p in group["params"]]
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
    return new_hyperparameters, new_state
