"""The three numerics profiles of the production engine: how each line of the ASGD step rounds.

A profile decides four things:

* the type in which the scalar state ``eta`` and ``mu`` is kept (and the step counter's type),
* whether ``x + s * y`` (lines 3 and 6 of the step) is one fused rounding or two,
* whether the step follows torch's foreach formulation (λ folded into the gradient, the average
  always updated, η's schedule in float32 tensor arithmetic),
* which parameter dtypes it models.

The scalar arithmetic here is NumPy's (IEEE binary32 and binary64 operations, each correctly
rounded); the executable specification states the same profiles with its own exact rounding model,
and the tests hold the two to the same bits.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

__all__ = [
    "DEPRECATED_NAMES",
    "FAST",
    "FOREACH_UNMODELLED_ALPHAS",
    "NUMERICS_PROFILES",
    "NUMPY",
    "TORCH",
    "TORCH_FOREACH",
    "Numerics",
    "numerics_named",
]


@dataclass(frozen=True)
class Numerics:
    """A rounding profile for the ASGD step."""

    name: str
    scalar_type: type[np.floating[Any]]
    """Type of the stored ``eta`` and ``mu``; float32 also makes the step counter a float32 value."""
    fused_multiply_add: bool
    """Whether ``x + s * y`` is rounded once (as ATen's ``add(alpha=)``) or twice (as NumPy)."""
    dtypes: tuple[str, ...]
    """The parameter dtypes this profile models."""
    foreach: bool = False
    """torch's foreach formulation: ``theta - eta * (g + lambd * theta)`` instead of a separate
    decay, ``ax + mu * (theta - ax)`` at every step, and η evaluated on float32 tensors."""

    @property
    def exact_step_counter(self) -> bool:
        return self.scalar_type is np.float64

    def initial_step(self) -> int | float:
        return 0 if self.exact_step_counter else 0.0

    def increment(self, step: int | float) -> int | float:
        """``step + 1``: an exact integer, or a binary32 sum that stops growing at 2**24."""
        if self.exact_step_counter:
            return int(step) + 1
        if step < 2**24:
            return float(step) + 1.0  # an integer below 2**24, plus one, is exact in float32
        return float(np.float32(step) + np.float32(1.0))

    def initial_eta(self, lr: float) -> float:
        return _rounded(self.scalar_type, lr)

    def schedule(
        self, step: int | float, *, lr: float, lambd: float, alpha: float, t0: float
    ) -> tuple[float, float]:
        """``(eta, mu)`` after ``step`` steps, evaluated as torch's Python code does: in binary64 for
        Python numbers; where a hyperparameter is a NumPy scalar, each operation in NumPy's result
        type (NEP 50: a float32 ``lr`` makes the whole schedule float32 arithmetic, ``**`` NumPy's
        float32 power). In the foreach formulation η is float32 tensor arithmetic instead
        (:func:`_foreach_eta`); μ is the same in every profile."""
        python_floats = type(lr) is type(lambd) is type(alpha) is type(t0) is float
        # A NumPy power that overflows is inf, as _power makes it (np.errstate costs µs: only then).
        with contextlib.nullcontext() if python_floats else np.errstate(all="ignore"):
            if self.foreach:
                eta = _foreach_eta(float(step), lr=lr, lambd=lambd, alpha=alpha)
            else:
                eta = lr / _power(1 + lambd * lr * step, alpha)
            mu = 1 / max(1, step - t0)
        return (
            _rounded(self.scalar_type, float(eta)),
            _rounded(self.scalar_type, float(mu)),
        )


def _rounded(scalar_type: type[np.floating[Any]], value: float) -> float:
    """``value`` rounded once to ``scalar_type`` (beyond its range: an infinity), as a float."""
    with np.errstate(over="ignore"):
        return float(scalar_type(value))


def _foreach_eta(step: float, *, lr: float, lambd: float, alpha: float) -> float:
    """torch's foreach η, ``lr / ((1 + lambd * lr * step) ** alpha)`` with ``step`` a float32 0-d
    tensor: ``lambd * lr`` is Python's (or NumPy's) product, and each later operation is a float32
    tensor operation that rounds its Python operand to float32 first. ``lr / t`` is torch's
    ``Tensor.__rtruediv__``: a reciprocal, then a product with ``lr``."""
    f32 = np.float32
    with np.errstate(all="ignore"):  # float32 overflow is inf, as in ATen
        base = f32(1.0) + f32(float(lambd * lr)) * f32(step)
        reciprocal = f32(1.0) / _tensor_power(base, float(alpha))
        return float(reciprocal * f32(float(lr)))


def _tensor_power(base: np.float32, exponent: float) -> np.float32:
    """ATen's ``pow`` of a float32 tensor and a Python number ``exponent >= 0``: exact shortcuts for
    0 and 1, ``b * b`` and ``b * b * b`` for 2 and 3 (rounded in float32 after each product), and
    otherwise the C library's binary64 ``pow`` rounded once to float32 (``std::pow(float, double)``).

    An exponent of 0.5 is ATen's ``sqrt`` kernel, which this build computes with MKL's ``vsSqrt``:
    not correctly rounded (1 ULP low for 0.59 % of float32 inputs in [1, 4)) and chosen by CPU, so
    no rounding model reproduces it; :data:`FOREACH_UNMODELLED_ALPHAS` refuses it up front.
    """
    if exponent in FOREACH_UNMODELLED_ALPHAS:
        raise ValueError(f"Invalid alpha: {exponent!r} (torch's foreach schedule is not modelled for it)")
    if exponent == 0:
        return np.float32(1.0)
    if exponent == 1:
        return base
    if exponent == 2:
        return base * base
    if exponent == 3:
        return base * base * base
    return np.float32(_power(float(base), exponent))


FOREACH_UNMODELLED_ALPHAS: Final = (0.5,)
"""Values of ``alpha`` for which torch's foreach η is not a rounding model's (see :func:`_tensor_power`)."""


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` for ``base >= 1`` (in NumPy's result type for NumPy scalars), +inf
    where it overflows.

    torch's Python code raises ``OverflowError`` here for Python floats, after the parameters were
    updated; an infinite denominator instead gives the limit ``eta = 0``.
    """
    try:
        power: float = base**exponent
    except OverflowError:
        return math.inf
    return power


NUMPY: Final = Numerics(
    name="numpy",
    scalar_type=np.float64,
    fused_multiply_add=False,
    dtypes=("float16", "float32", "float64", "complex64", "complex128"),
)
TORCH: Final = Numerics(
    name="torch",
    scalar_type=np.float32,
    fused_multiply_add=True,
    # torch's float16 CPU kernels compute in float32 and round twice, differently in the
    # vectorized body and the tail; that is not modelled, so float16 is refused here.
    dtypes=("float32", "float64", "complex64", "complex128"),
)

TORCH_FOREACH: Final = Numerics(
    name="torch-foreach",
    scalar_type=np.float32,
    fused_multiply_add=True,
    dtypes=TORCH.dtypes,
    foreach=True,
)

FAST: Final = NUMPY
"""The numpy profile's name until 2026-12 (it is not faster than the torch profile)."""
DEPRECATED_NAMES: Final = {"fast": "numpy"}
"""Old profile names, still accepted (with a ``DeprecationWarning``), and the profile each now names."""

_BY_NAME: Final = {profile.name: profile for profile in (NUMPY, TORCH, TORCH_FOREACH)}
NUMERICS_PROFILES: Final = tuple(_BY_NAME)


def numerics_named(name: str) -> Numerics:
    """The profile called ``name`` (already validated by the hyperparameter rules, which warn about
    an old name; it is still understood here)."""
    return _BY_NAME[DEPRECATED_NAMES.get(name, name)]
