"""The executable specification: ASGD one scalar at a time, every rounding explicit.

Each step of a parameter with a gradient (``theta`` is the parameter, ``g`` its gradient):

1. ``step += 1``
2. ``g = -g`` if maximize
3. ``g = g + weight_decay * theta`` if weight_decay != 0
4. if momentum != 0: ``buf = g`` at the first step, else ``buf = momentum * buf + g``; then ``g = buf``
5. ``theta = theta * (1 - lambd * eta)``
6. ``theta = theta - eta * g``
7. ``ax = theta`` if ``mu == 1``, else ``ax = ax + mu * (theta - ax)``
8. ``eta = lr / (1 + lambd * lr * step) ** alpha``; ``mu = 1 / max(1, step - t0)``

With momentum 0 this is ``torch.optim.ASGD``. torch's foreach formulation (the ``torch-foreach``
profile) writes lines 5 to 7 differently, and so rounds differently:

5. ``g = g + lambd * theta`` (one rounding)
6. ``theta = theta - eta * g`` (one rounding)
7. ``ax = ax + mu * (theta - ax)`` at every step, ``mu == 1`` included (the sum and product rounded once)

:func:`step_parameter` is the whole box for one parameter: lines 1 and 8 on its state, lines 2 to 7
on each real scalar of the parameter (a complex one is a pair of reals), each operation rounded by
:mod:`reference.rounding` as the numerics profile says (:mod:`reference.numerics`). The optimizer
(:mod:`reference.optimizer`) decides which parameters step, with which hyperparameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.numerics import Numerics
from reference.rounding import BinaryFormat, add, convert, fma, format_of, mul, sub
from reference.state import ParameterState

__all__ = ["Coefficients", "step_parameter", "update_scalar", "uses_momentum"]


@dataclass(frozen=True)
class Coefficients:
    """The scalars of one step, each rounded once to the parameters' format (as NumPy rounds a
    Python float it multiplies an array by, and ATen a scalar argument)."""

    weight_decay: float
    momentum: float
    decay: float
    """``1 - lambd * eta``, computed in binary64 (1 in the foreach formulation, which has no line 5)."""
    lambd: float
    """λ as the foreach formulation's line 5 uses it (0 in the for-loop formulation)."""
    eta: float
    mu: float
    averaging: bool
    """Line 7 averages (rather than copies): ``mu != 1``, judged on the stored ``mu``; always in
    the foreach formulation."""
    has_weight_decay: bool
    """Line 3 runs: ``weight_decay != 0``, judged on the hyperparameter (as torch's ``if``)."""
    maximize: bool
    fused: bool
    """Lines 3 and 6 as fused multiply-adds (the torch profiles)."""
    foreach: bool

    @classmethod
    def of(
        cls, fmt: BinaryFormat, group: Mapping[str, Any], state: ParameterState, numerics: Numerics
    ) -> Coefficients:
        foreach = numerics.foreach
        decay = 1.0 if foreach else 1 - group["lambd"] * state.eta
        return cls(
            weight_decay=convert(fmt, float(group["weight_decay"])),
            momentum=convert(fmt, float(group["momentum"])),
            decay=convert(fmt, float(decay)),
            lambd=convert(fmt, float(group["lambd"])) if foreach else 0.0,
            eta=convert(fmt, state.eta),
            mu=convert(fmt, state.mu),
            averaging=foreach or state.mu != 1,
            has_weight_decay=group["weight_decay"] != 0,
            maximize=group["maximize"],
            fused=numerics.fused_multiply_add,
            foreach=foreach,
        )

    def multiply_add(self, fmt: BinaryFormat, x: float, s: float, y: float) -> float:
        """``x + s * y`` in ``fmt``: one rounding in the torch profiles, two in the numpy one."""
        if self.fused:
            return fma(fmt, s, y, x)
        return add(fmt, x, mul(fmt, s, y))


def update_scalar(
    theta: float, g: float, ax: float, buf: float | None, *, c: Coefficients, fmt: BinaryFormat
) -> tuple[float, float, float | None]:
    """Lines 2 to 7 for one real scalar: the new ``(theta, ax, buf)``; ``buf`` is ``None`` before
    the first step with momentum."""
    if c.maximize:
        g = -g  # 2 (exact)
    if c.has_weight_decay:
        g = c.multiply_add(fmt, g, c.weight_decay, theta)  # 3: g + wd * theta
    if c.momentum != 0:
        buf = g if buf is None else add(fmt, mul(fmt, c.momentum, buf), g)  # 4
        g = buf
    if c.foreach:
        g = fma(fmt, c.lambd, theta, g)  # 5: g + lambd * theta
        theta = fma(fmt, -c.eta, g, theta)  # 6: theta - eta * g
        return theta, fma(fmt, sub(fmt, theta, ax), c.mu, ax), buf  # 7: ax + (theta - ax) * mu
    theta = mul(fmt, theta, c.decay)  # 5
    theta = c.multiply_add(fmt, theta, -c.eta, g)  # 6: theta - eta * g
    if c.averaging:
        ax = add(fmt, ax, mul(fmt, sub(fmt, theta, ax), c.mu))  # 7
    else:
        ax = theta
    return theta, ax, buf


def uses_momentum(group: Mapping[str, Any], dtype: np.dtype[Any]) -> bool:
    """Whether line 4 runs: the momentum, rounded to the parameter's format, is not 0."""
    return group["momentum"] != 0 and convert(format_of(dtype), float(group["momentum"])) != 0


def _reals(array: np.ndarray) -> list[float]:
    """The real scalars of an array in C order (a complex value is its real and imaginary parts)."""
    values = array.ravel().tolist()
    if array.dtype.kind == "c":
        return [part for value in values for part in (value.real, value.imag)]
    return values


def _store(array: np.ndarray, reals: list[float]) -> None:
    """Write real scalars back in C order; each is already a value of the dtype, so it is stored exactly."""
    if array.dtype.kind == "c":
        values: list[Any] = [complex(reals[i], reals[i + 1]) for i in range(0, len(reals), 2)]
    else:
        values = reals
    array[...] = np.array(values, dtype=array.dtype).reshape(array.shape)


def step_parameter(
    array: np.ndarray,
    gradient: np.ndarray,
    state: ParameterState,
    group: Mapping[str, Any],
    numerics: Numerics,
) -> None:
    """One ASGD step of one parameter with its gradient: ``array`` and ``state`` updated in place."""
    fmt = format_of(array.dtype)
    c = Coefficients.of(fmt, group, state, numerics)  # eta and mu as they were before this step
    state.step = numerics.increment(state.step)  # 1
    momentum = uses_momentum(group, array.dtype)
    thetas, gs, axs = _reals(array), _reals(gradient), _reals(state.ax)
    bufs: list[float | None] = [None] * len(thetas)
    if momentum and state.momentum_buffer is not None:
        bufs = list(_reals(state.momentum_buffer))
    for i in range(len(thetas)):
        thetas[i], axs[i], bufs[i] = update_scalar(thetas[i], gs[i], axs[i], bufs[i], c=c, fmt=fmt)  # 2 to 7
    _store(array, thetas)
    _store(state.ax, axs)
    if momentum:
        if state.momentum_buffer is None:
            state.momentum_buffer = np.zeros_like(array)
        _store(state.momentum_buffer, [b if b is not None else 0.0 for b in bufs])
    state.eta, state.mu = numerics.schedule(
        state.step, lr=group["lr"], lambd=group["lambd"], alpha=group["alpha"], t0=group["t0"]
    )  # 8
