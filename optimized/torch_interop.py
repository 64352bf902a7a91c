"""Hand a run over between ``torch.optim.ASGD`` and :class:`optimized.ASGD`, in both directions.

torch's state is float32 0-d tensors (``step``, ``eta``, ``mu``) and an ``ax`` tensor per parameter;
its groups carry ``foreach``, ``differentiable`` and ``capturable`` and no ``momentum``. A group's
``foreach`` flag names the path, and so the profile: ``numerics="torch"`` continues exactly as
torch's for-loop path would, ``numerics="torch-foreach"`` as its foreach path.
torch itself is not imported here: tensors are read through ``.detach().cpu().numpy()``, and
:func:`state_dict_to_torch` imports torch only when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from optimized.hyperparameters import DEFAULTS

__all__ = ["TORCH_PROFILES", "state_dict_from_torch", "state_dict_to_torch"]

_SHARED_HYPERPARAMETERS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")
_TORCH_ONLY_GROUP_KEYS = {"differentiable": False, "capturable": False}
_FOREACH_OF_PROFILE = {"torch": False, "torch-foreach": True}
"""torch's ``foreach`` flag for the path a profile models (``None``, torch's own choice, for others)."""
TORCH_PROFILES = tuple(_FOREACH_OF_PROFILE)
"""The profiles that model a path of torch, and so the profiles a torch state carries."""
_SCALAR_STATE = ("step", "eta", "mu")


def _to_numpy(value: Any, *, scalar: bool = False) -> Any:
    """A tensor as a NumPy copy (with ``scalar``, a 0-d tensor as a NumPy scalar of its dtype);
    other values as they are."""
    if hasattr(value, "detach"):
        array = value.detach().cpu().numpy().copy()
        return array[()] if scalar and array.ndim == 0 else array
    return value


def _state_entry(index: Any, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter's torch state in this project's layout: scalars as ``numpy.float32``, arrays
    (``ax``, 0-d ones too) as arrays. torch keeps the scalars in its default dtype, which the torch
    profile models only as float32."""
    converted = {}
    for key, value in entry.items():
        if key in _SCALAR_STATE:
            dtype = value.dtype if hasattr(value, "detach") else None
            if dtype is not None and str(dtype) != "torch.float32":
                raise ValueError(
                    f"torch state {index!r}[{key!r}] is {dtype} (torch's default dtype was not float32 when "
                    "it was made); the torch profile models torch's float32 step, eta and mu"
                )
            converted[key] = _to_numpy(value, scalar=True)
        else:
            converted[key] = _to_numpy(value)
    return converted


def state_dict_from_torch(torch_state_dict: Mapping[str, Any], numerics: str | None = None) -> dict[str, Any]:
    """A ``torch.optim.ASGD`` state dict in this project's layout.

    Each group gets the profile of the path torch took: ``"torch-foreach"`` where its ``foreach`` is
    ``True``, else ``"torch"`` (torch's choice on the CPU). ``numerics`` sets one for every group,
    for a state made where torch chose by itself (``foreach=None`` on a GPU takes the foreach path).
    Arrays are copies. The result goes to :meth:`optimized.ASGD.load_state_dict`, which checks it.
    """
    if numerics is not None and not isinstance(numerics, str):
        raise TypeError(f"numerics must be a str or None, got {numerics!r} ({type(numerics).__name__})")
    if numerics is not None and numerics not in TORCH_PROFILES:
        raise ValueError(
            f"Invalid numerics: {numerics!r} (a torch state continues in one of {TORCH_PROFILES})"
        )
    groups = []
    for index, group in enumerate(torch_state_dict["param_groups"]):
        missing = [name for name in _SHARED_HYPERPARAMETERS if name not in group]
        if missing:
            raise ValueError(
                f"param_groups[{index}] lacks {missing}: not a torch.optim.ASGD state dict "
                f"(its keys are {sorted(map(str, group))})"
            )
        if hasattr(group["lr"], "detach"):
            raise ValueError(
                f"param_groups[{index}]['lr'] is a tensor ({group['lr'].dtype}): torch then evaluates eta's "
                "schedule in that tensor's arithmetic, which no profile models; hand over with a float lr"
            )
        converted = {name: _to_numpy(group[name], scalar=True) for name in _SHARED_HYPERPARAMETERS}
        profile = numerics or ("torch-foreach" if group.get("foreach") is True else "torch")
        groups.append({**converted, "momentum": 0.0, "numerics": profile, "params": list(group["params"])})
    state = {index: _state_entry(index, entry) for index, entry in torch_state_dict["state"].items()}
    return {"state": state, "param_groups": groups}


def state_dict_to_torch(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """This project's state dict as one ``torch.optim.ASGD.load_state_dict`` accepts.

    torch's ASGD has no momentum, so a group with momentum is refused. Scalar state becomes float32
    0-d tensors as torch keeps it; a numpy-profile state (exact step, binary64 eta and mu) is rounded
    to float32 here, so only a run of a torch profile hands over bit for bit. A group's ``foreach``
    names the path of its profile (``False`` for ``"torch"``, ``True`` for ``"torch-foreach"``), so
    torch continues on that path on any device.
    """
    import torch

    groups = []
    for index, group in enumerate(state_dict["param_groups"]):
        if group.get("momentum", DEFAULTS["momentum"]) != 0:
            raise ValueError(
                f"param_groups[{index}] has momentum={group['momentum']!r}; torch.optim.ASGD has no momentum"
            )
        shared = {name: group[name] for name in _SHARED_HYPERPARAMETERS}
        foreach = _FOREACH_OF_PROFILE.get(group.get("numerics", DEFAULTS["numerics"]))
        groups.append({**shared, "foreach": foreach, **_TORCH_ONLY_GROUP_KEYS,
                       "params": list(group["params"])})  # fmt: skip
    state: dict[Any, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        converted = {key: torch.tensor(float(entry[key]), dtype=torch.float32) for key in _SCALAR_STATE}
        converted["ax"] = torch.from_numpy(np.array(entry["ax"], copy=True))
        state[index] = converted
    return {"state": state, "param_groups": groups}
