"""CPU torch tensors as parameters and gradients: stepped in place through zero-copy NumPy views.

torch is never imported here: an object can only be a torch tensor if torch has been imported
already, so ``sys.modules`` says whether to look. A tensor qualifies if NumPy can view its memory
as it is: on the CPU, strided, of a dtype NumPy has, without a pending conjugation or negation
(those would need a copy, and a copy would not be the parameter). ``requires_grad`` is no obstacle:
the view is of the detached tensor, as torch's own optimizers update parameters under ``no_grad``.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np

__all__ = ["is_tensor", "mark_modified", "numpy_view", "tensor_problem"]

_NUMPY_DTYPES = {
    "torch.float16": "float16",
    "torch.float32": "float32",
    "torch.float64": "float64",
    "torch.complex64": "complex64",
    "torch.complex128": "complex128",
}

# Per tensor (by identity: tensors compare element-wise), a weak reference to it, what its view was
# made from, and the view, so that an unchanged tensor gives the same ndarray object at every step
# (the optimizer recognises unchanged parameters by identity).
_views: dict[int, tuple[weakref.ref[Any], tuple[Any, ...], np.ndarray]] = {}


def _forget(ident: int, reference: weakref.ref[Any]) -> None:
    entry = _views.get(ident)
    if entry is not None and entry[0] is reference:  # not a newer tensor that got the same id
        del _views[ident]


def is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def tensor_problem(tensor: Any) -> str | None:
    """Why ``tensor`` cannot be stepped through a NumPy view of its memory, or ``None``."""
    if tensor.device.type != "cpu":
        return (
            f"is a torch tensor on device {tensor.device}; optimized.ASGD steps CPU memory "
            "(keep torch.optim.ASGD for tensors on an accelerator)"
        )
    if tensor.layout != sys.modules["torch"].strided:
        return f"is a torch tensor with layout {tensor.layout}; only strided tensors have a NumPy view"
    if str(tensor.dtype) not in _NUMPY_DTYPES:
        supported = ", ".join(_NUMPY_DTYPES)
        return f"is a torch tensor of dtype {tensor.dtype}; supported dtypes: {supported}"
    if tensor.is_conj() or tensor.is_neg():
        return (
            "is a torch tensor with a pending conjugation or negation, which a view cannot show (resolve it)"
        )
    return None


def numpy_view(tensor: Any) -> np.ndarray:
    """A NumPy array over ``tensor``'s memory (the same object while the tensor is unchanged)."""
    key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
    ident = id(tensor)
    remembered = _views.get(ident)
    if remembered is not None and remembered[0]() is tensor and remembered[1] == key:
        return remembered[2]
    view: np.ndarray = tensor.detach().numpy()
    _views[ident] = (weakref.ref(tensor, lambda reference: _forget(ident, reference)), key, view)
    return view


def mark_modified(tensors: list[Any]) -> None:
    """Tell autograd that the step changed these tensors in place, as torch's own in-place updates
    do (a backward pass through a graph that saved their old values then fails, as it should)."""
    if tensors:
        increment_version = sys.modules["torch"].autograd.graph.increment_version
        for tensor in tensors:
            increment_version(tensor)
