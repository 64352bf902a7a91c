"""A parameter's state in :class:`optimized.torch.ASGD`, made as torch's ASGD makes it.

``state[p]`` is torch's: 0-d ``step``, ``eta`` and ``mu`` tensors in torch's scalar dtype and an
``ax`` tensor like the parameter, made before a parameter's first step (:func:`initialize`), and with
``momentum`` (the keyword-only extension) a ``momentum_buffer`` like the parameter. On torch's path,
lines 2 to 4 run first in torch ops (:func:`momentum_directions`), since torch's ASGD has no momentum.

torch is not imported here (:mod:`optimized.torch` hands in what is needed of it, a
:class:`~optimized.torch_parts.TorchParts`); tensors are used through their methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from optimized.torch_parts import TorchParts

__all__ = ["clock_dtype", "initialize", "momentum_directions"]


def momentum_directions(
    group: dict[str, Any],
    stepping: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    parts: TorchParts,
) -> list[torch.Tensor]:
    """Lines 2 to 4 as the kernel rounds them, on real views: ``g = -g``, ``g + wd·θ`` fused
    (ATen's ``add`` with ``alpha``), then ``buf = g`` at the first momentum step, else
    ``m·buf + g`` in two roundings; the buffers are the directions torch's ASGD then takes."""
    directions = []
    for p, grad, state in stepping:
        g = _real(grad, parts)
        if group["maximize"]:
            g = -g
        if group["weight_decay"] != 0:
            g = g.add(_real(p, parts), alpha=group["weight_decay"])
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = parts.zeros_like(p, memory_format=parts.preserve_format)
            _real(buf, parts).copy_(g)
            state["momentum_buffer"] = buf
        else:
            _real(buf, parts).mul_(group["momentum"]).add_(g)
        directions.append(buf)
    return directions


def _real(tensor: torch.Tensor, parts: TorchParts) -> torch.Tensor:
    """A complex tensor as pairs of reals (torch's ASGD steps complex parameters so)."""
    return parts.view_as_real(tensor) if parts.is_complex(tensor) else tensor


def clock_dtype(parts: TorchParts) -> torch.dtype:
    """The dtype of torch's ``step``, ``eta`` and ``mu`` tensors: float64 where that is torch's
    default dtype, else float32."""
    return parts.float64 if parts.get_default_dtype() == parts.float64 else parts.float32


def initialize(state: dict[str, Any], p: torch.Tensor, lr: Any, parts: TorchParts) -> None:
    """A parameter's state before its first step, as torch's ASGD makes it."""
    dtype = clock_dtype(parts)
    if isinstance(lr, parts.tensor) and lr.dim() != 0:
        lr = lr.squeeze()
    state["step"] = parts.zeros((), device=p.device, dtype=dtype)
    state["eta"] = parts.as_tensor(lr, device=p.device, dtype=dtype).clone().detach()
    state["mu"] = parts.ones((), device=p.device, dtype=dtype)
    state["ax"] = parts.zeros_like(p, memory_format=parts.preserve_format)
