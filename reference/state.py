"""The state of one parameter, and its form in a torch-layout ``state_dict``.

The state is ``step``, ``eta``, ``mu``, the average ``ax`` and, once momentum has been used,
``momentum_buffer``. In a ``state_dict`` the exact-counter profile (``numpy``) writes ``step`` as an
``int`` and ``eta``/``mu`` as floats; the torch profiles write all three as ``numpy.float32``, the
counterpart of torch's float32 0-d tensors. Loading checks an entry whole before anything is kept,
and keeps copies of its arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import rounding
from reference.numerics import Numerics

__all__ = ["ParameterState", "exported", "initial_state", "parsed"]


@dataclass
class ParameterState:
    step: int | float
    eta: float
    mu: float
    ax: np.ndarray
    momentum_buffer: np.ndarray | None = None


def initial_state(array: np.ndarray, lr: float, numerics: Numerics) -> ParameterState:
    """Before the first step: ``step = 0``, ``eta = lr``, ``mu = 1`` and ``ax = 0``."""
    return ParameterState(
        step=numerics.initial_step(), eta=numerics.initial_eta(lr), mu=1.0, ax=np.zeros_like(array)
    )


def exported(state: ParameterState, numerics: Numerics) -> dict[str, Any]:
    """The ``state_dict`` entry of ``state``, with copies of its arrays."""
    if numerics.exact_step_counter:
        entry: dict[str, Any] = {"step": state.step, "eta": float(state.eta), "mu": float(state.mu)}
    else:
        entry = {"step": np.float32(state.step), "eta": np.float32(state.eta), "mu": np.float32(state.mu)}
    entry["ax"] = state.ax.copy()
    if state.momentum_buffer is not None:
        entry["momentum_buffer"] = state.momentum_buffer.copy()
    return entry


def _real(entry: Mapping[str, Any], key: str, where: str) -> float | int:
    """A saved scalar (a 0-d array read as its value) as a Python number."""
    value = entry[key]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}[{key!r}] must be a real number, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _as_float(value: float | int, key: str, where: str) -> float:
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"Invalid {where}[{key!r}]: {value!r} (beyond the range of a binary64 float)"
        ) from None


def _step(entry: Mapping[str, Any], where: str) -> int:
    """The step count, exactly: an integer stays an integer (the numpy profile counts past 2**53)."""
    value = _real(entry, "step", where)
    if isinstance(value, float):
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise ValueError(f"Invalid {where}['step']: {value!r} (must be a finite integer >= 0)")
        value = int(value)
    if value < 0:
        raise ValueError(f"Invalid {where}['step']: {value!r} (must be a finite integer >= 0)")
    try:
        float(value + 1)  # the next step's schedule computes with it as a binary64 float
    except OverflowError:
        beyond = f"Invalid {where}['step']: {value!r} (beyond the range of a binary64 float)"
        raise ValueError(beyond) from None
    return value


def _array(entry: Mapping[str, Any], key: str, parameter: np.ndarray, where: str) -> np.ndarray:
    """A copy of a saved array, which must be a plain ndarray of the parameter's shape and dtype."""
    value = entry[key]
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}[{key!r}] must be a numpy.ndarray, got {type(value).__name__}")
    if type(value) is not np.ndarray:
        raise TypeError(
            f"{where}[{key!r}] is a {type(value).__module__}.{type(value).__name__}, an ndarray subclass; "
            "give a plain numpy.ndarray (numpy.asarray gives one)"
        )
    if value.shape != parameter.shape:
        raise ValueError(
            f"{where}[{key!r}] has shape {value.shape}, but its parameter has shape {parameter.shape}"
        )
    if value.dtype != parameter.dtype:
        raise TypeError(
            f"{where}[{key!r}] has dtype {value.dtype.name}, "
            f"but its parameter has dtype {parameter.dtype.name}"
        )
    return value.copy()


def parsed(entry: object, parameter: np.ndarray, numerics: Numerics, where: str) -> ParameterState:
    """The state a saved entry holds for ``parameter``, or ``ValueError``/``TypeError`` naming ``where``."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(entry).__name__}")
    required, optional = {"step", "eta", "mu", "ax"}, {"momentum_buffer"}
    missing = required - entry.keys()
    if missing:
        raise ValueError(f"{where} lacks {sorted(missing)}")
    unknown = entry.keys() - required - optional
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))}")

    step = _step(entry, where)
    eta = _as_float(_real(entry, "eta", where), "eta", where)
    if not eta >= 0:
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (must be >= 0)")
    if not math.isfinite(eta):
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (must be finite: no run makes it inf)")
    # An eta that rounds to inf in the parameters' format makes every parameter NaN: no run stores one.
    if eta > rounding.format_of(parameter.dtype).largest:
        real = np.finfo(parameter.dtype).dtype  # a complex parameter steps its real and imaginary parts
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (beyond the range of the parameter's {real.name})")
    clock_format = numerics.scalar_format
    if not numerics.exact_step_counter and eta > clock_format.largest:
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (beyond the range of torch's float32 clock)")
    mu = _as_float(_real(entry, "mu", where), "mu", where)
    if not 0 <= mu <= 1:
        raise ValueError(f"Invalid {where}['mu']: {mu!r} (must be in [0, 1])")

    ax = _array(entry, "ax", parameter, where)
    buffer = entry.get("momentum_buffer")
    if buffer is not None:
        buffer = _array(entry, "momentum_buffer", parameter, where)

    if numerics.exact_step_counter:
        return ParameterState(step=step, eta=eta, mu=mu, ax=ax, momentum_buffer=buffer)
    if math.isinf(rounding.convert(clock_format, float(step))):
        raise ValueError(f"Invalid {where}['step']: {step!r} (beyond the range of torch's float32 counter)")
    return ParameterState(
        step=rounding.convert(clock_format, float(step)),
        eta=rounding.convert(clock_format, eta),
        mu=rounding.convert(clock_format, mu),
        ax=ax,
        momentum_buffer=buffer,
    )
