"""The hyperparameters of the optimized ASGD: their defaults and the rules every value must satisfy.

The reference states the same rules on its own (:mod:`reference.hyperparameters`); the bad-input
table holds the two to the same refusals, type and message. torch validates ``lr`` and
``weight_decay`` only; a negative ``lambd`` or ``alpha`` fails there mid-run or silently inverts the
schedule (pytorch#193772).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from optimized.numerics import (
    DEPRECATED_NAMES,
    FOREACH_UNMODELLED_ALPHAS,
    NUMERICS_PROFILES,
    Numerics,
    numerics_named,
)

__all__ = [
    "DEFAULTS",
    "NUMERICS_PROFILES",
    "Hyperparameters",
    "check_coefficients",
    "momentum_used",
    "validate_hyperparameter",
    "validate_hyperparameters",
]

DEFAULTS: Final[Mapping[str, Any]] = {
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "alpha": 0.75,
    "t0": 1e6,
    "lambd": 1e-4,
    "maximize": False,
    "numerics": "numpy",
}

_FINITE_NONNEGATIVE: Final = ("lr", "momentum", "weight_decay", "alpha", "lambd")


def _real_number(name: str, value: object) -> float:
    """``value`` as a number to compute with: a NumPy floating scalar as it is (its precision is
    part of the arithmetic torch's Python code does with it), any other real number as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond binary64's range
        raise ValueError(f"Invalid {name}: {value!r} (beyond the range of a binary64 float)") from None
    return value if isinstance(value, np.floating) else number


def _callers_level() -> int:
    """The ``stacklevel`` of the first caller outside the ``optimized`` package, so that a warning
    names the user's line (and a ``DeprecationWarning`` from ``__main__`` is shown)."""
    package = os.path.dirname(__file__)
    level, frame = 2, sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        level, frame = level + 1, frame.f_back
    return level


def validate_hyperparameter(name: str, value: object) -> Any:
    """``value`` as the optimizer stores it, or ``ValueError``/``TypeError`` naming ``name`` and ``value``.

    Numbers are stored as Python floats (NumPy floating scalars as they are), ``maximize`` as a
    bool and ``numerics`` as its name.
    """
    if name in _FINITE_NONNEGATIVE:
        number = _real_number(name, value)
        if not (math.isfinite(float(number)) and number >= 0):
            raise ValueError(f"Invalid {name}: {value!r} (must be finite and >= 0)")
        return number
    if name == "t0":
        number = _real_number(name, value)
        if math.isnan(float(number)):
            raise ValueError(f"Invalid t0: {value!r} (must not be NaN; +inf means never average)")
        return number
    if name == "maximize":
        if not isinstance(value, bool):
            raise TypeError(f"maximize must be a bool, got {value!r} ({type(value).__name__})")
        return value
    if name == "numerics":
        if not isinstance(value, str):
            raise TypeError(f"numerics must be a str, got {value!r} ({type(value).__name__})")
        renamed = DEPRECATED_NAMES.get(value)
        if renamed is not None:
            message = f"numerics={value!r} is now called {renamed!r}"
            warnings.warn(message, DeprecationWarning, stacklevel=_callers_level())
            return renamed
        if value not in NUMERICS_PROFILES:
            raise ValueError(f"Invalid numerics: {value!r} (must be one of {NUMERICS_PROFILES})")
        return value
    raise ValueError(f"Unknown hyperparameter {name!r}; known: {sorted(DEFAULTS)}")


def validate_hyperparameters(values: Mapping[str, object]) -> dict[str, Any]:
    """All of ``values`` validated; the first invalid one raises before anything is returned.

    Where both are given, ``alpha`` is also checked against what the ``numerics`` profile models.
    """
    validated = {name: validate_hyperparameter(name, value) for name, value in values.items()}
    if "alpha" in validated and "numerics" in validated:
        numerics = numerics_named(validated["numerics"])
        if numerics.foreach and validated["alpha"] in FOREACH_UNMODELLED_ALPHAS:
            raise ValueError(
                f"Invalid alpha: {values['alpha']!r} for numerics={numerics.name!r} (torch's foreach "
                "schedule computes this power with MKL's sqrt, which is not correctly rounded and "
                "depends on the CPU; use numerics='torch', or another alpha)"
            )
    return validated


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """One param group's hyperparameters, validated, with its numerics profile resolved."""

    lr: float
    momentum: float
    weight_decay: float
    alpha: float
    t0: float
    lambd: float
    maximize: bool
    numerics: Numerics

    @classmethod
    def of(cls, group: Mapping[str, Any], where: str) -> Hyperparameters:
        """The hyperparameters of a param group (a mapping with every key of :data:`DEFAULTS`)."""
        missing = [name for name in DEFAULTS if name not in group]
        if missing:
            raise ValueError(f"{where} lacks the hyperparameters {missing}")
        values = validate_hyperparameters({name: group[name] for name in DEFAULTS})
        return cls(**{**values, "numerics": numerics_named(values["numerics"])})

    def as_group(self) -> dict[str, Any]:
        """The values as a param group holds them (the profile by its name)."""
        return {name: getattr(self, name) for name in DEFAULTS} | {"numerics": self.numerics.name}

    def schedule(self, step: int | float) -> tuple[float, float]:
        """Line 8: ``(eta, mu)`` after ``step`` steps, stored in the profile's scalar format."""
        return self.numerics.schedule(step, lr=self.lr, lambd=self.lambd, alpha=self.alpha, t0=self.t0)


_FORMAT_NAMES = {16: "binary16", 32: "binary32", 64: "binary64"}
"""IEEE 754's name for the real format of a parameter dtype, by its width in bits."""


@functools.cache
def momentum_used(momentum: float, dtype: np.dtype[Any]) -> bool:
    """Whether line 4 runs: the momentum, rounded to the parameters' dtype, is not 0."""
    with np.errstate(over="ignore"):
        return bool(np.finfo(dtype).dtype.type(momentum) != 0)


@functools.cache
def _beyond_range(value: float, dtype: np.dtype[Any]) -> bool:
    """Whether a coefficient is larger than the parameters' dtype holds: above its largest finite
    value, where torch's conversion of a scalar argument raises (even where it would round down)."""
    return abs(float(value)) > float(np.finfo(dtype).max)


def check_coefficients(hyper: Hyperparameters, dtype: np.dtype[Any], index: int) -> None:
    """Refuse a weight decay, momentum or (in the foreach formulation, where it multiplies the
    parameters as a scalar argument) lambd that the parameters' dtype cannot hold (torch raises
    after it has counted the step; here nothing changes)."""
    for name in ("weight_decay", "momentum", *(("lambd",) if hyper.numerics.foreach else ())):
        value = getattr(hyper, name)
        if value != 0 and _beyond_range(value, dtype):
            raise ValueError(
                f"Invalid {name}: {value!r} for params[{index}] of dtype {dtype.name} "
                f"(beyond the range of {_FORMAT_NAMES[np.finfo(dtype).bits]})"
            )
