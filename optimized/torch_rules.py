"""Which parameters, states and gradients the kernel path of :class:`optimized.torch.ASGD` steps.

The kernel steps a parameter through zero-copy views of its memory and state
(:mod:`optimized.torch_views`): CPU tensors of float32, float64, complex64 or complex128 in a dense
layout. A refusal names why not, for a parameter and its state (:func:`tensor_refusal`: a dtype the
kernels do not model, a tensor subclass such as DTensor, a tensor on an accelerator, a layout that is
not dense) or for a gradient (:func:`gradient_refusal`), naming the parameter (:func:`named`);
torch's functional ASGD then steps the group, so the class is correct wherever torch's is.

torch is not imported here (:mod:`optimized.torch` hands in what is needed of it, a
:class:`~optimized.torch_parts.TorchParts`); tensors are used through their methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from optimized.torch_views import memory_order

if TYPE_CHECKING:
    import torch

    from optimized.torch_parts import TorchParts
    from optimized.torch_views import Member

__all__ = ["gradient_refusal", "named", "tensor_refusal"]


def named(group: dict[str, Any], p: torch.Tensor) -> str:
    """How a message names a parameter of a group: its name, or its position in the group."""
    index = next(i for i, q in enumerate(group["params"]) if q is p)
    names = group.get("param_names")
    return f"parameter {names[index]!r}" if names else f"params[{index}] of the group"


def tensor_refusal(
    p: torch.Tensor, state: dict[str, Any], buf: torch.Tensor | None, parts: TorchParts
) -> str | None:
    """Why the kernel cannot step this parameter through views of its memory and state, or ``None``."""
    if p.dtype not in parts.kernel_dtypes:
        return f"is {p.dtype}, which the kernels do not model"
    if p.is_inference():
        return "is an inference tensor (torch refuses to update it outside inference mode)"
    arrays = (p, state["ax"]) if buf is None else (p, state["ax"], buf)
    reason = _array_refusal(p, arrays, parts)
    if reason is not None:
        return reason
    for key in ("step", "eta", "mu"):
        clock = state[key]
        if (
            type(clock) not in parts.plain_tensors
            or clock.device.type != "cpu"
            or clock.dim() != 0
            or clock.dtype not in (parts.float32, parts.float64)
            or clock.requires_grad
        ):
            return f"has a state[{key!r}] that is not a 0-d float32 or float64 CPU tensor without autograd"
    if p.dim() == 0 and not p.is_complex():
        wider = [key for key in ("eta", "mu") if state[key].dtype.itemsize > p.element_size()]
        if wider:  # 0-d tensors promote one another: torch multiplies in the clock's dtype
            return f"is 0-d with a wider state[{wider[0]!r}] ({state[wider[0]].dtype})"
    return None


def gradient_refusal(member: Member, grad: torch.Tensor, parts: TorchParts) -> str | None:
    """Why the kernel cannot read this gradient through a view of its memory, or ``None`` (a new
    gradient at every step is the common case: its own checks, made cheap)."""
    if (
        type(grad) in parts.plain_tensors
        and grad.is_cpu
        and grad.dtype is member.dtype
        and grad.shape == member.shape
        and not grad.is_conj()
        and not grad.is_neg()
        and (grad.is_contiguous() if not member.order else memory_order(grad, parts) == member.order)
    ):
        return None
    return _array_refusal(member.param, (grad,), parts) or "has a layout unlike its parameter's"


def _array_refusal(p: torch.Tensor, tensors: Sequence[torch.Tensor], parts: TorchParts) -> str | None:
    """Why these tensors (a parameter's own, its gradient or its state) cannot be stepped as flat
    arrays in the parameter's memory order, or ``None``."""
    order = memory_order(p, parts)
    for tensor in tensors:
        if type(tensor) not in parts.plain_tensors:
            return f"is a {type(tensor).__name__}, not a plain tensor"
        if not tensor.is_cpu:
            return f"is on {tensor.device}"
        if tensor.dtype is not p.dtype or tensor.shape != p.shape:
            return "has a gradient or state of another dtype or shape"
        if tensor.is_conj() or tensor.is_neg():
            return "has a pending conjugation or negation"
        if order is None or memory_order(tensor, parts) != order:
            return "has a layout that is not dense, or unlike its gradient's or state's"
    return None
