"""What the reference takes as a parameter and as a gradient, and the checks made at that boundary.

A parameter is a writable NumPy array, updated in place, or an object whose ``.data`` is such an
array and whose ``.grad`` is an array or ``None`` (:class:`Parameter`). Every check here raises
before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Parameter",
    "array_of",
    "check_distinct",
    "check_gradient",
    "check_parameter",
    "gradient_overlap",
    "has_grad_attribute",
]


class Parameter:
    """A trainable array for a torch-style loop: ``.data`` is updated in place, ``.grad`` is read."""

    def __init__(self, data: np.ndarray, grad: np.ndarray | None = None) -> None:
        self.data = data
        self.grad = grad

    def __repr__(self) -> str:
        return f"Parameter({self.data!r})"


def array_of(parameter: Any) -> np.ndarray:
    """The array a (checked) parameter's values live in."""
    return parameter if isinstance(parameter, np.ndarray) else parameter.data


def has_grad_attribute(parameter: Any) -> bool:
    """Whether ``step()`` can read the parameter's gradient from its ``.grad``."""
    return not isinstance(parameter, np.ndarray) and hasattr(parameter, "grad")


def _dtype_name(dtype: np.dtype[Any]) -> str:
    """A dtype's name, with its byte order where that is not the machine's."""
    return dtype.name if dtype.isnative else f"{dtype.name} ({dtype.str}, non-native byte order)"


def _plain_array(value: object, what: str) -> None:
    """Refuse an ndarray subclass (``np.matrix`` changes what ``*`` means)."""
    if type(value) is not np.ndarray:
        raise TypeError(
            f"{what} is a {type(value).__module__}.{type(value).__name__}, an ndarray subclass; "
            "pass a plain numpy.ndarray (numpy.asarray gives one)"
        )


def check_parameter(parameter: Any, index: int, dtypes: Sequence[str]) -> None:
    """Refuse a parameter that cannot be updated in place in one of ``dtypes``."""
    array = parameter if isinstance(parameter, np.ndarray) else getattr(parameter, "data", None)
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"params[{index}] must be a numpy.ndarray or have an ndarray .data, "
            f"got {type(parameter).__name__}"
        )
    _plain_array(array, f"params[{index}]")
    if array.dtype.name not in dtypes:
        raise TypeError(
            f"params[{index}] has dtype {array.dtype.name}; supported dtypes: {', '.join(dtypes)}"
        )
    if not array.dtype.isnative:
        raise TypeError(
            f"params[{index}] has dtype {_dtype_name(array.dtype)}; the optimizer updates arrays "
            "of the machine's byte order (array.astype(array.dtype.newbyteorder('=')) makes one)"
        )
    if not array.flags.writeable:
        raise ValueError(f"params[{index}] is read-only; the optimizer updates parameters in place")
    if array.size > 1 and any(
        stride == 0 and n > 1 for stride, n in zip(array.strides, array.shape, strict=True)
    ):
        raise ValueError(
            f"params[{index}] has several elements in one memory location (a stride of 0, as from "
            "broadcasting or expand); each would be updated in turn"
        )


def check_distinct(arrays: Sequence[np.ndarray]) -> None:
    """Refuse a parameter that appears twice or shares memory with another: its update would
    depend on the order in which the parameters are stepped."""
    for later, array in enumerate(arrays):
        for earlier in range(later):
            if arrays[earlier] is array:
                raise ValueError(f"params[{later}] appears more than once among the parameters")
    for later, array in enumerate(arrays):
        for earlier in range(later):
            if np.shares_memory(arrays[earlier], array):
                raise ValueError(
                    f"params[{later}] shares memory with params[{earlier}]; parameters must not overlap"
                )


def check_gradient(gradient: object, array: np.ndarray, index: int) -> None:
    """Refuse a gradient that does not match its parameter's array in type, shape and dtype."""
    if not isinstance(gradient, np.ndarray):
        raise TypeError(f"grads[{index}] must be a numpy.ndarray or None, got {type(gradient).__name__}")
    _plain_array(gradient, f"grads[{index}]")
    if gradient.shape != array.shape:
        raise ValueError(
            f"grads[{index}] has shape {gradient.shape}, but its parameter has shape {array.shape}"
        )
    if gradient.dtype != array.dtype:
        raise TypeError(
            f"grads[{index}] has dtype {_dtype_name(gradient.dtype)}, but its parameter has dtype "
            f"{_dtype_name(array.dtype)}"
        )


def gradient_overlap(gradient: np.ndarray, arrays: Sequence[np.ndarray]) -> int | None:
    """The index of a parameter whose memory the gradient shares, or ``None``."""
    return next((index for index, array in enumerate(arrays) if np.shares_memory(gradient, array)), None)
