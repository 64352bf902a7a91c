"""The production ASGD: the shared API of :mod:`reference.optimizer` over the vectorized kernel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from optimized.kernel import StepScalars, asgd_step
from reference.numerics import Numerics
from reference.optimizer import ASGDOptimizer
from reference.state import ParameterState

__all__ = ["ASGD"]


def flat_real_view(array: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous array's real scalars (a complex element is real, imaginary)."""
    assert array.flags.c_contiguous, "a reshape would copy, and writes to the copy would be lost"
    flat = array.reshape(-1)
    return flat.view(flat.real.dtype) if np.iscomplexobj(flat) else flat


class ASGD(ASGDOptimizer):
    """Averaged SGD (torch's algorithm plus heavy-ball momentum), vectorized with NumPy, in place.

    Same API and same bits as :class:`reference.ASGD` in each numerics profile: ``"fast"``
    (NumPy's rounding, exact step counter) or ``"torch"`` (torch 2.13's CPU for-loop ASGD).
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
        state.step = numerics.increment(state.step)  # 1
        real_dtype = parameter.real.dtype
        k = StepScalars.for_dtype(
            real_dtype, dict(hyperparameters), state.eta, state.mu, numerics.fused_multiply_add
        )
        first_momentum_step = k.momentum != 0 and state.momentum_buffer is None
        if first_momentum_step:
            state.momentum_buffer = np.zeros(parameter.shape, parameter.dtype)

        contiguous = parameter.flags.c_contiguous
        work = parameter if contiguous else np.ascontiguousarray(parameter)
        theta = flat_real_view(work)
        scratch = (np.empty_like(theta), np.empty_like(theta))
        asgd_step(  # 2 to 7
            theta,
            flat_real_view(np.ascontiguousarray(gradient)),
            flat_real_view(state.ax),
            None if state.momentum_buffer is None else flat_real_view(state.momentum_buffer),
            k,
            scratch,
            first_momentum_step=first_momentum_step,
        )
        if not contiguous:
            parameter[...] = work

        state.eta, state.mu = numerics.schedule(  # 8
            state.step,
            lr=hyperparameters["lr"],
            lambd=hyperparameters["lambd"],
            alpha=hyperparameters["alpha"],
            t0=hyperparameters["t0"],
        )
