"""The hyperparameters of ASGD: their defaults and the rule each value must satisfy.

torch validates ``lr`` and ``weight_decay`` only; a negative ``lambd`` or ``alpha`` fails there
mid-run or silently inverts the schedule (pytorch#193772). Here every value is checked when a group
is made, loaded, or stepped after one of its values was replaced.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from reference.numerics import DEPRECATED_NAMES, FOREACH_UNMODELLED_ALPHAS, NUMERICS_PROFILES, numerics_named

__all__ = ["DEFAULTS", "group_hyperparameters", "validated", "validated_all"]

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


def _number(name: str, value: object) -> float:
    """A real number as the schedule computes with it.

    A NumPy floating scalar stays what it is: torch's Python code would compute the schedule in
    its type (NEP 50). Any other real number becomes a Python float.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    try:
        as_float = float(value)
    except OverflowError:
        raise ValueError(f"Invalid {name}: {value!r} (beyond the range of a binary64 float)") from None
    if isinstance(value, np.floating):
        return value
    return as_float


def _callers_level() -> int:
    """The ``stacklevel`` that names the first caller outside this package (a warning is then shown
    at the user's line, and Python shows a ``DeprecationWarning`` raised from ``__main__``)."""
    package = os.path.dirname(__file__)
    level, frame = 2, sys._getframe(2)  # 2: the caller of the function that warns
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        level, frame = level + 1, frame.f_back
    return level


def validated(name: str, value: object) -> Any:
    """``value`` as a param group keeps it, or ``ValueError``/``TypeError`` naming both."""
    if name in ("lr", "momentum", "weight_decay", "alpha", "lambd"):
        number = _number(name, value)
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"Invalid {name}: {value!r} (must be finite and >= 0)")
        return number
    if name == "t0":
        number = _number(name, value)
        if math.isnan(number):
            raise ValueError(f"Invalid t0: {value!r} (must not be NaN; +inf means never average)")
        return number
    if name == "maximize":
        if not isinstance(value, bool):
            raise TypeError(f"maximize must be a bool, got {value!r} ({type(value).__name__})")
        return value
    if name == "numerics":
        if not isinstance(value, str):
            raise TypeError(f"numerics must be a str, got {value!r} ({type(value).__name__})")
        if value in DEPRECATED_NAMES:  # an old name: still accepted, with a warning
            renamed = DEPRECATED_NAMES[value]
            message = f"numerics={value!r} is now called {renamed!r}"
            warnings.warn(message, DeprecationWarning, stacklevel=_callers_level())
            return renamed
        if value not in NUMERICS_PROFILES:
            raise ValueError(f"Invalid numerics: {value!r} (must be one of {NUMERICS_PROFILES})")
        return value
    raise ValueError(f"Unknown hyperparameter {name!r}; known: {sorted(DEFAULTS)}")


def validated_all(values: Mapping[str, object]) -> dict[str, Any]:
    """Every value of ``values`` validated, and ``alpha`` against the profile where both are given."""
    checked = {name: validated(name, value) for name, value in values.items()}
    profile = checked.get("numerics")
    foreach = profile is not None and numerics_named(profile).foreach
    if foreach and checked.get("alpha") in FOREACH_UNMODELLED_ALPHAS:
        raise ValueError(
            f"Invalid alpha: {values['alpha']!r} for numerics={profile!r} (torch's foreach "
            "schedule computes this power with MKL's sqrt, which is not correctly rounded and "
            "depends on the CPU; use numerics='torch', or another alpha)"
        )
    return checked


def group_hyperparameters(group: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The validated hyperparameters of a param group (or saved group) named ``where``."""
    missing = [name for name in DEFAULTS if name not in group]
    if missing:
        raise ValueError(f"{where} lacks the hyperparameters {missing}")
    return validated_all({name: group[name] for name in DEFAULTS})
