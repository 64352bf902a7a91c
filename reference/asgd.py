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

The optimizer core (:mod:`reference.optimizer`) runs lines 1 and 8; lines 2 to 7 run here on each
real scalar of the parameter (a complex one is a pair of reals), each operation rounded by
:mod:`reference.rounding` as the numerics profile says (:mod:`reference.numerics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reference.optimizer import ASGDOptimizer
from reference.plan import StepScalars, Task
from reference.rounding import BinaryFormat, add, convert, fma, format_of, mul, sub

__all__ = ["ASGD", "ScalarBackend"]


@dataclass(frozen=True)
class Coefficients:
    """The scalars of one step, each rounded once to the parameters' format.

    The optimizer computes them in binary64 from the hyperparameters and the stored state
    (:class:`reference.plan.StepScalars`); rounding them to the parameters' format is what NumPy
    does with a Python float and ATen with a scalar argument.
    """

    weight_decay: float
    momentum: float
    decay: float
    """``1 - lambd * eta``."""
    lambd: float
    eta: float
    mu: float
    averaging: bool
    """``mu != 1``, judged on the stored ``mu`` (before rounding to the parameters' format)."""
    has_weight_decay: bool
    """``weight_decay != 0``, judged on the hyperparameter (before rounding)."""
    maximize: bool
    fused: bool
    foreach: bool

    @classmethod
    def of(cls, fmt: BinaryFormat, scalars: StepScalars) -> Coefficients:
        return cls(
            weight_decay=convert(fmt, scalars.weight_decay),
            momentum=convert(fmt, scalars.momentum),
            decay=convert(fmt, scalars.decay),
            lambd=convert(fmt, scalars.lambd),
            eta=convert(fmt, scalars.eta),
            mu=convert(fmt, scalars.mu),
            averaging=scalars.averaging,
            has_weight_decay=scalars.has_weight_decay,
            maximize=scalars.maximize,
            fused=scalars.fused,
            foreach=scalars.foreach,
        )

    def multiply_add(self, fmt: BinaryFormat, x: float, s: float, y: float) -> float:
        """``x + s * y`` in ``fmt``: one rounding in the torch profile, two in the fast one."""
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


class ScalarBackend:
    """Lines 2 to 7 one real scalar at a time, each operation rounded by :mod:`reference.rounding`."""

    name = "reference"
    packs = False

    def run(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            fmt = format_of(task.theta.dtype)
            c = Coefficients.of(fmt, task.scalars)
            thetas, gs, axs = task.theta.tolist(), task.grad.tolist(), task.ax.tolist()
            bufs: list[float | None]
            if task.buf is None or task.first_momentum_step:
                bufs = [None] * len(thetas)
            else:
                bufs = list(task.buf.tolist())
            for i, (theta, g, ax, buf) in enumerate(zip(thetas, gs, axs, bufs, strict=True)):
                thetas[i], axs[i], bufs[i] = update_scalar(theta, g, ax, buf, c=c, fmt=fmt)
            task.theta[:] = thetas  # each value is already one of the dtype: stored exactly
            task.ax[:] = axs
            if task.buf is not None:
                task.buf[:] = bufs


class ASGD(ASGDOptimizer):
    """Averaged SGD, torch's algorithm plus heavy-ball momentum, in pure Python.

    ``params`` is a list of NumPy arrays (or of objects with ``.data``/``.grad``), or of
    param-group dicts ``{"params": [...], "lr": ...}``. ``numerics`` chooses the rounding:
    ``"fast"`` (NumPy's, with an exact step counter), ``"torch"`` (torch 2.13's CPU for-loop
    ASGD, bit for bit) or ``"torch-foreach"`` (``torch.optim.ASGD(foreach=True)`` on the CPU, bit
    for bit).
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
        super().__init__(params, defaults, ScalarBackend())
