"""What the optimizers accept as parameters and gradients, and the checks made at that boundary.

A parameter is a writable NumPy array, updated in place; or an object whose ``.data`` is such an
array and whose ``.grad`` is an array or ``None`` (:class:`Parameter`); or a CPU torch tensor (a
``torch.nn.Parameter``), updated in place through a NumPy view of its memory, whose ``.grad`` is a
tensor or ``None`` (:mod:`optimized.tensors`). Every check here raises before anything changes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from optimized.memory import MemoryMap
from optimized.tensors import is_tensor, numpy_view, tensor_problem

__all__ = [
    "SUPPORTED_DTYPES",
    "Parameter",
    "as_gradient",
    "check_gradient",
    "check_parameter",
    "data_of",
    "gradient_of",
    "has_grad_attribute",
]

SUPPORTED_DTYPES = ("float16", "float32", "float64", "complex64", "complex128")


class Parameter:
    """A trainable array for a torch-style loop: ``.data`` is updated in place, ``.grad`` is read."""

    def __init__(self, data: np.ndarray, grad: np.ndarray | None = None) -> None:
        self.data = data
        self.grad = grad

    def __repr__(self) -> str:
        return f"Parameter({self.data!r})"


def data_of(parameter: Any) -> np.ndarray:
    """The array a parameter's values live in."""
    if isinstance(parameter, np.ndarray):
        return parameter
    if is_tensor(parameter):
        return numpy_view(parameter)
    data: np.ndarray = parameter.data
    return data


def has_grad_attribute(parameter: Any) -> bool:
    return not isinstance(parameter, np.ndarray) and hasattr(parameter, "grad")


def gradient_of(parameter: Any) -> Any:
    """A parameter object's ``.grad`` (``None`` for a bare array)."""
    return parameter.grad if has_grad_attribute(parameter) else None


def as_gradient(gradient: Any) -> Any:
    """A gradient as the optimizer reads it: a CPU torch tensor as a NumPy view of its memory."""
    if is_tensor(gradient) and tensor_problem(gradient) is None:
        return gradient.detach().numpy()
    return gradient


@functools.cache
def _name_of(dtype: np.dtype[Any]) -> str:
    """``dtype.name``, which NumPy computes anew on every access, remembered."""
    return dtype.name


def _describe_dtype(dtype: np.dtype[Any]) -> str:
    """A dtype's name, with its byte order where that is not the machine's."""
    return dtype.name if dtype.isnative else f"{dtype.name} ({dtype.str}, non-native byte order)"


def check_parameter(parameter: Any, index: int, dtypes: Sequence[str] = SUPPORTED_DTYPES) -> None:
    """Refuse a parameter that cannot be updated in place in one of ``dtypes``."""
    if is_tensor(parameter):
        problem = tensor_problem(parameter)
        if problem is not None:
            raise TypeError(f"params[{index}] {problem}")
    array = data_of(parameter) if is_tensor(parameter) else (
        parameter if isinstance(parameter, np.ndarray) else getattr(parameter, "data", None))  # fmt: skip
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"params[{index}] must be a numpy.ndarray or have an ndarray .data, "
            f"got {type(parameter).__name__}"
        )
    if type(array) is not np.ndarray:
        raise TypeError(
            f"params[{index}] is a {type(array).__module__}.{type(array).__name__}, an ndarray subclass; "
            "pass a plain numpy.ndarray (numpy.asarray gives one)"
        )
    if _name_of(array.dtype) not in dtypes:
        raise TypeError(
            f"params[{index}] has dtype {array.dtype.name}; supported dtypes: {', '.join(dtypes)}"
        )
    if not array.dtype.isnative:
        raise TypeError(
            f"params[{index}] has dtype {_describe_dtype(array.dtype)}; the optimizer updates arrays "
            "of the machine's byte order (array.astype(array.dtype.newbyteorder('=')) makes one)"
        )
    if not array.flags.writeable:
        raise ValueError(f"params[{index}] is read-only; the optimizer updates parameters in place")
    strides = zip(array.strides, array.shape, strict=True)
    if array.size > 1 and any(stride == 0 and n > 1 for stride, n in strides):
        raise ValueError(
            f"params[{index}] has several elements in one memory location (a stride of 0, as from "
            "broadcasting or expand); each would be updated in turn"
        )


def check_gradient(gradient: object, parameter: Any, index: int) -> None:
    """Refuse a gradient that does not match its parameter in type, shape, dtype and byte order."""
    array = data_of(parameter)
    if is_tensor(gradient):
        problem = tensor_problem(gradient)
        if problem is not None:
            raise TypeError(f"grads[{index}] {problem}")
    if not isinstance(gradient, np.ndarray):
        raise TypeError(f"grads[{index}] must be a numpy.ndarray or None, got {type(gradient).__name__}")
    if type(gradient) is not np.ndarray:
        raise TypeError(
            f"grads[{index}] is a {type(gradient).__module__}.{type(gradient).__name__}, an ndarray "
            "subclass; pass a plain numpy.ndarray (numpy.asarray gives one)"
        )
    if gradient.shape != array.shape:
        raise ValueError(
            f"grads[{index}] has shape {gradient.shape}, but its parameter has shape {array.shape}"
        )
    if gradient.dtype != array.dtype:
        raise TypeError(
            f"grads[{index}] has dtype {_describe_dtype(gradient.dtype)}, but its parameter has dtype "
            f"{_describe_dtype(array.dtype)}"
        )


def check_distinct(parameters: Iterable[Any]) -> MemoryMap:
    """Refuse a parameter that appears twice or shares memory with another (its updates would
    depend on their order, and on how a step is cut into threads); the parameters' memory map."""
    arrays = [data_of(parameter) for parameter in parameters]
    seen: set[int] = set()
    for index, array in enumerate(arrays):
        if id(array) in seen:
            raise ValueError(f"params[{index}] appears more than once among the parameters")
        seen.add(id(array))
    memory = MemoryMap(arrays)
    overlap = memory.first_overlap()
    if overlap is not None:
        raise ValueError(
            f"params[{overlap[1]}] shares memory with params[{overlap[0]}]; parameters must not overlap"
        )
    return memory
