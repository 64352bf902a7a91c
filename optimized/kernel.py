"""The ASGD step on flat arrays of real scalars: the hot loop, apart from the API.

Arrays are 1-D, C-contiguous and of one real dtype (a complex parameter is passed as its real
view). Every operation writes into an existing array, so the step allocates only the scratch it
is given. The scalars arrive already rounded to the arrays' dtype (:class:`StepScalars`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optimized.fma import fused_multiply_add

__all__ = ["StepScalars", "asgd_step"]


@dataclass(frozen=True)
class StepScalars:
    """The coefficients of one step in the arrays' dtype, and the profile's choices."""

    maximize: bool
    weight_decay: np.floating[Any]
    momentum: np.floating[Any]
    decay: np.floating[Any]
    """``1 - lambd * eta``, computed in binary64 and rounded to the dtype."""
    eta: np.floating[Any]
    mu: np.floating[Any]
    averaging: bool
    fused: bool
    """Lines 3 and 6 as fused multiply-adds (the torch profile)."""

    @classmethod
    def for_dtype(
        cls, dtype: np.dtype[Any], hyper: dict[str, Any], eta: float, mu: float, fused: bool
    ) -> StepScalars:
        cast = dtype.type
        return cls(
            maximize=hyper["maximize"],
            weight_decay=cast(hyper["weight_decay"]),
            momentum=cast(hyper["momentum"]),
            decay=cast(1 - hyper["lambd"] * eta),
            eta=cast(eta),
            mu=cast(mu),
            averaging=mu != 1,
            fused=fused,
        )


def asgd_step(
    theta: np.ndarray,
    grad: np.ndarray,
    ax: np.ndarray,
    buf: np.ndarray | None,
    k: StepScalars,
    scratch: tuple[np.ndarray, np.ndarray],
    *,
    first_momentum_step: bool,
) -> None:
    """Lines 2 to 7 of the algorithm, in place on ``theta``, ``ax`` and ``buf``.

    ``grad`` is read only; ``scratch`` is two arrays like ``theta`` whose contents are discarded.
    ``buf`` is required when ``k.momentum != 0``. NaN and Inf propagate silently, as in torch.
    """
    with np.errstate(all="ignore"):
        _step(theta, grad, ax, buf, k, scratch, first_momentum_step)


def _step(
    theta: np.ndarray,
    grad: np.ndarray,
    ax: np.ndarray,
    buf: np.ndarray | None,
    k: StepScalars,
    scratch: tuple[np.ndarray, np.ndarray],
    first_momentum_step: bool,
) -> None:
    work, product = scratch
    g = grad
    if k.maximize:
        g = np.negative(g, out=work)  # 2
    if k.weight_decay != 0:  # 3: g + wd * theta
        if k.fused:
            fused_multiply_add(float(k.weight_decay), theta, g, work)
        else:
            np.multiply(theta, k.weight_decay, out=product)
            np.add(g, product, out=work)
        g = work
    if k.momentum != 0:  # 4
        assert buf is not None
        if first_momentum_step:
            np.copyto(buf, g)
        else:
            np.multiply(buf, k.momentum, out=buf)
            np.add(buf, g, out=buf)
        g = buf
    np.multiply(theta, k.decay, out=theta)  # 5
    if k.fused:
        fused_multiply_add(float(-k.eta), g, theta, theta)  # 6: theta - eta * g
    else:
        np.multiply(g, k.eta, out=product)
        np.subtract(theta, product, out=theta)
    if k.averaging:  # 7
        difference = np.subtract(theta, ax, out=product)
        np.multiply(difference, k.mu, out=difference)
        np.add(ax, difference, out=ax)
    else:
        np.copyto(ax, theta)
