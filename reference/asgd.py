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

With momentum 0 this is ``torch.optim.ASGD``. Lines 2 to 7 run on each real scalar of the
parameter (a complex one is a pair of reals), each operation rounded by :mod:`reference.rounding`
as the numerics profile says (:mod:`reference.numerics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference.numerics import Numerics
from reference.optimizer import ASGDOptimizer
from reference.rounding import BinaryFormat, add, convert, format_of, mul, sub
from reference.state import ParameterState

__all__ = ["ASGD"]


@dataclass(frozen=True)
class Coefficients:
    """The scalars of one parameter's step, each a value of the parameter's format.

    They are computed in binary64 from the hyperparameters and the stored state, and rounded once
    to the parameter's format, as NumPy does with a Python float and ATen with a scalar argument.
    """

    weight_decay: float
    momentum: float
    decay: float
    """``1 - lambd * eta``."""
    eta: float
    mu: float
    averaging: bool
    """``mu != 1``, judged on the stored ``mu`` (before rounding to the parameter's format)."""

    @classmethod
    def of(cls, fmt: BinaryFormat, hyper: Mapping[str, Any], state: ParameterState) -> Coefficients:
        return cls(
            weight_decay=convert(fmt, hyper["weight_decay"]),
            momentum=convert(fmt, hyper["momentum"]),
            decay=convert(fmt, 1 - hyper["lambd"] * state.eta),
            eta=convert(fmt, state.eta),
            mu=convert(fmt, state.mu),
            averaging=state.mu != 1,
        )


def update_scalar(
    theta: float,
    g: float,
    ax: float,
    buf: float | None,
    *,
    c: Coefficients,
    maximize: bool,
    fmt: BinaryFormat,
    numerics: Numerics,
) -> tuple[float, float, float | None]:
    """Lines 2 to 7 for one real scalar: the new ``(theta, ax, buf)``."""
    if maximize:
        g = -g  # 2 (exact)
    if c.weight_decay != 0:
        g = numerics.multiply_add(fmt, g, c.weight_decay, theta)  # 3: g + wd * theta
    if c.momentum != 0:
        buf = g if buf is None else add(fmt, mul(fmt, c.momentum, buf), g)  # 4
        g = buf
    theta = mul(fmt, theta, c.decay)  # 5
    theta = numerics.multiply_add(fmt, theta, -c.eta, g)  # 6: theta - eta * g
    if c.averaging:
        ax = add(fmt, ax, mul(fmt, sub(fmt, theta, ax), c.mu))  # 7
    else:
        ax = theta
    return theta, ax, buf


def real_scalars(array: np.ndarray) -> list[float]:
    """The array's real scalars in C order, a complex element giving its real then imaginary part."""
    flat = array.reshape(-1)
    if np.iscomplexobj(flat):
        return [part for z in flat.tolist() for part in (z.real, z.imag)]
    return [float(x) for x in flat.tolist()]


def store_real_scalars(array: np.ndarray, scalars: list[float]) -> None:
    """Write ``scalars`` (as :func:`real_scalars` orders them) into ``array`` in place."""
    if np.iscomplexobj(array):
        pairs = zip(scalars[::2], scalars[1::2], strict=True)
        values = np.array([complex(re, im) for re, im in pairs], array.dtype)
    else:
        values = np.array(scalars, array.dtype)
    array[...] = values.reshape(array.shape)


class ASGD(ASGDOptimizer):
    """Averaged SGD, torch's algorithm plus heavy-ball momentum, in pure Python.

    ``params`` is a list of NumPy arrays (or of objects with ``.data``/``.grad``), or of
    param-group dicts ``{"params": [...], "lr": ...}``. ``numerics`` chooses the rounding:
    ``"fast"`` (NumPy's, with an exact step counter) or ``"torch"`` (torch 2.13's CPU for-loop
    ASGD, bit for bit).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        alpha: float = 0.75,
        t0: float = 1e6,
        lambd: float = 1e-4,
        maximize: bool = False,
        numerics: str = "fast",
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            alpha=alpha,
            t0=t0,
            lambd=lambd,
            maximize=maximize,
            numerics=numerics,
        )
        super().__init__(params, defaults)

    def _update(
        self,
        parameter: np.ndarray,
        gradient: np.ndarray,
        state: ParameterState,
        hyperparameters: Mapping[str, Any],
        numerics: Numerics,
    ) -> None:
        fmt = format_of(parameter.dtype)
        state.step = numerics.increment(state.step)  # 1
        c = Coefficients.of(fmt, hyperparameters, state)

        thetas, gs, axs = real_scalars(parameter), real_scalars(gradient), real_scalars(state.ax)
        bufs: list[float | None]
        if state.momentum_buffer is None:
            bufs = [None] * len(thetas)
        else:
            bufs = list(real_scalars(state.momentum_buffer))
        for i, (theta, g, ax, buf) in enumerate(zip(thetas, gs, axs, bufs, strict=True)):
            thetas[i], axs[i], bufs[i] = update_scalar(
                theta, g, ax, buf, c=c, maximize=hyperparameters["maximize"], fmt=fmt, numerics=numerics
            )
        store_real_scalars(parameter, thetas)
        store_real_scalars(state.ax, axs)
        if c.momentum != 0:
            if state.momentum_buffer is None:
                state.momentum_buffer = np.zeros(parameter.shape, parameter.dtype)
            store_real_scalars(state.momentum_buffer, [b for b in bufs if b is not None])

        state.eta, state.mu = numerics.schedule(  # 8
            state.step,
            lr=hyperparameters["lr"],
            lambd=hyperparameters["lambd"],
            alpha=hyperparameters["alpha"],
            t0=hyperparameters["t0"],
        )
