"""The parts of torch that the torch-free modules of :class:`optimized.torch.ASGD` use, handed in.

Only :mod:`optimized.torch` imports torch. :mod:`optimized.torch_groups`, :mod:`optimized.torch_rules`,
:mod:`optimized.torch_views`, :mod:`optimized.torch_clocks` and :mod:`optimized.torch_state` work on
tensors through their methods; the torch objects they compare with or call (the tensor types, dtypes
and memory formats, and the functions that make tensors) reach them in one :class:`TorchParts` that
:mod:`optimized.torch` fills in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["TorchParts"]


@dataclass(frozen=True, slots=True)
class TorchParts:
    """The torch objects the checks, views, clocks and state of :class:`optimized.torch.ASGD` use:
    each field is torch's object of its name (``float32`` is ``torch.float32``, ``zeros_like`` is
    ``torch.zeros_like``), but for ``tensor``, ``plain_tensors`` and ``kernel_dtypes``."""

    tensor: type[torch.Tensor]
    """``torch.Tensor``."""
    plain_tensors: tuple[type[torch.Tensor], ...]
    """Tensor types whose memory is the tensor (a subclass such as DTensor may hold a shard or nothing)."""
    kernel_dtypes: Mapping[torch.dtype, type[np.floating[Any]]]
    """The parameter dtypes the kernels step, and the real dtype a parameter is stepped as."""
    float32: torch.dtype
    float64: torch.dtype
    channels_last: torch.memory_format
    channels_last_3d: torch.memory_format
    preserve_format: torch.memory_format
    get_default_dtype: Callable[[], torch.dtype]
    as_tensor: Callable[..., torch.Tensor]
    zeros: Callable[..., torch.Tensor]
    ones: Callable[..., torch.Tensor]
    zeros_like: Callable[..., torch.Tensor]
    is_complex: Callable[[torch.Tensor], bool]
    view_as_real: Callable[[torch.Tensor], torch.Tensor]
