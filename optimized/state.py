"""Per-parameter ASGD state, and its exchange form in a torch-layout ``state_dict``.

The state of one parameter is ``step``, ``eta``, ``mu``, the average ``ax`` and, once momentum has
been used, ``momentum_buffer``. In the exchange form the numpy profile writes ``step`` as an exact
``int`` and ``eta``/``mu`` as floats; the torch profile writes all three as ``numpy.float32``, the
counterpart of torch's float32 0-d tensors. Parsing a loaded entry checks everything first and
copies the arrays, so a refused entry changes nothing and a loaded one aliases nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from optimized.numerics import Numerics

__all__ = ["Clock", "ParameterState", "parse_parameter_state"]

_REQUIRED_KEYS = frozenset({"step", "eta", "mu", "ax"})
_OPTIONAL_KEYS = frozenset({"momentum_buffer"})


@dataclass
class Clock:
    """The scalar state: the step counter and the ``eta`` and ``mu`` it led to.

    Parameters that always step together may share one clock (the production optimizer does, for
    the parameters of one packed buffer); the reference gives each parameter its own.
    """

    step: int | float
    eta: float
    mu: float

    @classmethod
    def initial(cls, lr: float, numerics: Numerics) -> Clock:
        """Before the first step: ``step = 0``, ``eta = lr``, ``mu = 1``."""
        return cls(step=numerics.initial_step(), eta=numerics.initial_eta(lr), mu=1.0)


@dataclass
class ParameterState:
    clock: Clock
    ax: np.ndarray
    momentum_buffer: np.ndarray | None = None

    edits: ClassVar[int] = 0
    """How many times an attribute of any state entry was set: while it stands still, no entry's
    clock or arrays were replaced, and a step need not compare them one by one."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # through the properties below for step, eta and mu
        ParameterState.edits += 1

    @property
    def step(self) -> int | float:
        return self.clock.step

    @step.setter
    def step(self, value: int | float) -> None:
        self.clock.step = value

    @property
    def eta(self) -> float:
        return self.clock.eta

    @eta.setter
    def eta(self, value: float) -> None:
        self.clock.eta = value

    @property
    def mu(self) -> float:
        return self.clock.mu

    @mu.setter
    def mu(self, value: float) -> None:
        self.clock.mu = value

    def exported(self, numerics: Numerics) -> dict[str, Any]:
        """The exchange form, with copies of the arrays."""
        scalar: Any = float if numerics.exact_step_counter else np.float32
        entry: dict[str, Any] = {
            "step": self.step if numerics.exact_step_counter else np.float32(self.step),
            "eta": scalar(self.eta),
            "mu": scalar(self.mu),
            "ax": self.ax.copy(),
        }
        if self.momentum_buffer is not None:
            entry["momentum_buffer"] = self.momentum_buffer.copy()
        return entry


def _scalar(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = entry[key]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}[{key!r}] must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond binary64's range
        raise ValueError(
            f"Invalid {where}[{key!r}]: {value!r} (beyond the range of a binary64 float)"
        ) from None


def _step(entry: Mapping[str, Any], where: str) -> int:
    """The step count, exactly: an integer stays an integer (the numpy profile counts beyond 2**53)."""
    value = entry["step"]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}['step'] must be a real number, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        count = int(value)
    else:
        number = float(value)
        if not (math.isfinite(number) and number >= 0 and number == int(number)):
            raise ValueError(f"Invalid {where}['step']: {number!r} (must be a finite integer >= 0)")
        count = int(number)
    if count < 0:
        raise ValueError(f"Invalid {where}['step']: {count!r} (must be a finite integer >= 0)")
    try:
        float(count + 1)  # the next step's schedule computes with it as a binary64 float
    except OverflowError:
        raise ValueError(
            f"Invalid {where}['step']: {count!r} (beyond the range of a binary64 float)"
        ) from None
    return count


def _array_like_parameter(value: object, parameter: np.ndarray, where: str, key: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}[{key!r}] must be a numpy.ndarray, got {type(value).__name__}")
    if type(value) is not np.ndarray:  # a subclass (np.matrix) changes what arithmetic means
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


def parse_parameter_state(
    entry: object, parameter: np.ndarray, numerics: Numerics, where: str
) -> ParameterState:
    """A validated copy of one loaded state entry, or ``ValueError``/``TypeError`` naming ``where``."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(entry).__name__}")
    missing = _REQUIRED_KEYS - entry.keys()
    if missing:
        raise ValueError(f"{where} lacks {sorted(missing)}")
    unknown = entry.keys() - _REQUIRED_KEYS - _OPTIONAL_KEYS
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))}")

    step = _step(entry, where)
    eta = _scalar(entry, "eta", where)
    if not eta >= 0:
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (must be >= 0)")
    if not math.isfinite(eta):
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (must be finite: no run makes it inf)")
    # Rounded to inf, it would make every parameter NaN at the next step: no run stores it.
    real = np.finfo(parameter.dtype).dtype  # a complex parameter steps its real and imaginary parts
    if eta > float(np.finfo(real).max):
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (beyond the range of the parameter's {real.name})")
    if not numerics.exact_step_counter and eta > float(np.finfo(np.float32).max):
        raise ValueError(f"Invalid {where}['eta']: {eta!r} (beyond the range of torch's float32 clock)")
    mu = _scalar(entry, "mu", where)
    if not 0 <= mu <= 1:
        raise ValueError(f"Invalid {where}['mu']: {mu!r} (must be in [0, 1])")

    ax = _array_like_parameter(entry["ax"], parameter, where, "ax")
    buffer = entry.get("momentum_buffer")
    if buffer is not None:
        buffer = _array_like_parameter(buffer, parameter, where, "momentum_buffer")

    if numerics.exact_step_counter:
        clock = Clock(step=step, eta=eta, mu=mu)
    else:
        with np.errstate(over="ignore"):
            as_float32 = np.float32(float(step))
        if np.isinf(as_float32):  # the counter would be float32's infinity
            raise ValueError(
                f"Invalid {where}['step']: {step!r} (beyond the range of torch's float32 counter)"
            )
        clock = Clock(
            step=float(as_float32),
            eta=float(np.float32(eta)),
            mu=float(np.float32(mu)),
        )
    return ParameterState(clock=clock, ax=ax, momentum_buffer=buffer)
