"""The param groups of :class:`optimized.torch.ASGD`: their keys, the checks of their
hyperparameters, and whether the kernel path can step a group at all.

A param group's hyperparameters are checked when the group is made, loaded or changed
(:func:`check_group`): torch's checks with its messages, and the values no run could use. A group
that passes is stepped by the kernel unless :func:`group_refusal` names why not whatever its tensors
(``differentiable``, ``capturable``, a tensor hyperparameter), or a parameter or gradient of it is
refused (:mod:`optimized.torch_rules`); torch's functional ASGD then steps the group.

torch is not imported here (:mod:`optimized.torch` hands in what is needed of it, a
:class:`~optimized.torch_parts.TorchParts`); tensors are used through their methods.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from optimized.torch_parts import TorchParts

__all__ = ["CHECKED_KEYS", "GROUP_DEFAULTS", "check_group", "group_refusal"]

CHECKED_KEYS: Final = ("lr", "lambd", "alpha", "t0", "weight_decay", "foreach", "maximize",
                       "differentiable", "capturable", "momentum")  # fmt: skip
GROUP_DEFAULTS: Final = {
    "foreach": None,
    "maximize": False,
    "differentiable": False,
    "capturable": False,
    "momentum": 0.0,
}
"""What a param group lacking these keys means (an older or a ``torch.optim.ASGD`` state dict)."""


def _number(name: str, value: object, parts: TorchParts) -> float:
    """A hyperparameter as a float to check (it is stored as given)."""
    if isinstance(value, parts.tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        return float(value.detach().cpu().reshape(()).item())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_group(group: dict[str, Any], where: str, parts: TorchParts) -> None:
    """Refuse a param group's hyperparameters that no run could use, naming the value.

    torch checks ``lr >= 0`` and ``weight_decay >= 0`` (its messages are kept); a negative ``lambd``
    or ``alpha`` fails torch mid-run or silently inverts the schedule (pytorch#193772), so both are
    refused up front here, as are non-finite values and a NaN ``t0``.
    """
    lr = _number("lr", group["lr"], parts)
    if not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {group['lr']}")
    weight_decay = _number("weight_decay", group["weight_decay"], parts)
    if not weight_decay >= 0.0:
        raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
    for name in ("lr", "weight_decay", "lambd", "alpha", "momentum"):
        value = _number(name, group[name], parts)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"Invalid {name} value: {group[name]!r} in {where} (must be finite and >= 0)")
    if math.isnan(_number("t0", group["t0"], parts)):
        raise ValueError(
            f"Invalid t0 value: {group['t0']!r} in {where} (must not be NaN; inf never averages)"
        )
    if group["foreach"] is not None and not isinstance(group["foreach"], bool):
        raise TypeError(f"foreach must be None or a bool, got {group['foreach']!r} in {where}")
    for name in ("maximize", "differentiable", "capturable"):
        if not isinstance(group[name], bool):
            raise TypeError(f"{name} must be a bool, got {group[name]!r} in {where}")


def group_refusal(group: dict[str, Any], parts: TorchParts) -> str | None:
    """Why the kernel cannot step this group whatever its tensors, or ``None``."""
    if group["differentiable"]:
        return "differentiable=True (autograd through the step is torch's)"
    if group["capturable"]:
        return "capturable=True (the schedule is on tensors, for graph capture)"
    for name in ("lr", "lambd", "alpha", "t0", "weight_decay", "momentum"):
        if isinstance(group[name], parts.tensor):
            return f"{name} is a tensor (torch computes the schedule in its arithmetic)"
    return None
