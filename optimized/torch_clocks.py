"""The scalars and clocks of a kernel step of :class:`optimized.torch.ASGD`, as torch computes them.

The clocks (``step``, ``eta``, ``mu``) are computed as torch computes them (its Python expressions,
its float32 tensor arithmetic on the foreach path, its rounding to the state's dtype), once per
distinct clock rather than once per parameter: :func:`next_clock` gives lines 1 and 8, and
:func:`scalars_for_clock` the scalars of lines 2 to 7 that the kernel rounds as the path torch would take
(``foreach=None``/``False`` is torch's CPU for-loop path, ``foreach=True`` its foreach path). A
coefficient beyond the parameters' dtype (:func:`beyond_range`) is left to torch's path.

torch is not imported here (:mod:`optimized.torch` hands in what is needed of it, a
:class:`~optimized.torch_parts.TorchParts`); tensors are used through their methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np

from optimized.plan import StepScalars

if TYPE_CHECKING:
    import torch

    from optimized.torch_parts import TorchParts

__all__ = ["beyond_range", "next_clock", "scalars_for_clock"]

_LARGEST: Final[dict[type[np.floating[Any]], float]] = {
    np.float32: float(np.finfo(np.float32).max),
    np.float64: float(np.finfo(np.float64).max),
}
_EXACT_FLOAT32_INTEGERS: Final = 2.0**24
"""Every integer up to this one is a float32."""


def scalars_for_clock(group: dict[str, Any], eta: float, mu: float, foreach: bool) -> StepScalars:
    """The scalars of lines 2 to 7 with the clock's stored ``eta`` and ``mu``, computed as torch's
    Python code computes them (``1 - lambd * eta`` in the type of ``lambd``)."""
    lambd = group["lambd"]
    return StepScalars(
        maximize=group["maximize"],
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
        decay=1.0 if foreach else 1 - lambd * eta,
        eta=eta,
        mu=mu,
        fused=True,
        lambd=lambd if foreach else 0.0,
        foreach=foreach,
    )


def beyond_range(scalars: StepScalars, real: type[np.floating[Any]]) -> str | None:
    """A coefficient larger than the parameters' dtype holds, which ATen's scalar conversion refuses
    (torch's path then raises torch's error), or ``None``."""
    largest = _LARGEST[real]
    if (  # as floats: a NumPy scalar compared with a float its dtype cannot hold warns of overflow
        abs(float(scalars.eta)) <= largest
        and abs(float(scalars.decay)) <= largest
        and abs(float(scalars.weight_decay)) <= largest
        and abs(float(scalars.lambd)) <= largest
        and abs(float(scalars.momentum)) <= largest
    ):
        return None
    values = {
        "weight_decay": scalars.weight_decay,
        "momentum": scalars.momentum,
        "1 - lambd * eta": scalars.decay,
        "lambd": scalars.lambd,
        "eta": scalars.eta,
    }
    largest = _LARGEST[real]
    for name, value in values.items():
        if abs(float(value)) > largest:
            return f"{name} = {value!r} is beyond {np.dtype(real).name}"
    return None


def next_clock(
    group: dict[str, Any], step: torch.Tensor, step_view: np.ndarray, parts: TorchParts
) -> tuple[float, float, float]:
    """``(step, eta, mu)`` after this step (lines 1 and 8) by torch's own arithmetic, each the exact
    value of the tensor torch copies into the state: ``step + 1`` in the step tensor's dtype; η in
    Python (or NumPy) arithmetic on ``step.item()`` on the for-loop path, in tensor arithmetic on the
    step tensor on the foreach path; μ in Python arithmetic; each made a tensor by ``as_tensor``."""
    lr, lambd, alpha, t0 = group["lr"], group["lambd"], group["alpha"], group["t0"]
    if group["foreach"] is True:
        new_step = step + 1
        value = new_step.item()
        eta = parts.as_tensor(lr / ((1 + lambd * lr * new_step) ** alpha)).item()
    else:
        value = step_view.item() + 1.0  # exact in binary64; rounded to a float32 step as torch's += 1
        if value > _EXACT_FLOAT32_INTEGERS and step.dtype is parts.float32:
            value = float(np.float32(value))
        eta = _as_tensor_value(lr / ((1 + lambd * lr * value) ** alpha), parts)
    return value, eta, _as_tensor_value(1 / max(1, value - t0), parts)


def _as_tensor_value(value: Any, parts: TorchParts) -> float:
    """``torch.as_tensor(value).item()``: a Python float rounded to torch's default dtype (done here
    directly for float32 and float64, the usual defaults, at a fraction of the cost)."""
    if type(value) is float:
        default = parts.get_default_dtype()
        if default is parts.float64:
            return value
        if default is parts.float32 and abs(value) <= _LARGEST[np.float32]:
            return float(np.float32(value))
    result: float = parts.as_tensor(value).item()
    return result
