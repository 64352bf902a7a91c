"""What the optimizer core hands to a backend: checked work on flat arrays, and nothing to decide.

A step is planned by the core (:mod:`optimized.optimizer`): it resolves the parameter arrays, checks
every input, advances the clocks (lines 1 and 8) and cuts the work into :class:`Task` s, one per
segment of parameters stepped as one flat range. A :class:`Backend` then runs lines 2 to 7 of
every task in place. Backends only compute: the scalar reference, the NumPy kernel and the numba
kernel take the same plan and must give the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from optimized.layout import Segment
    from optimized.state import Clock, ParameterState

__all__ = ["Backend", "Planned", "StepScalars", "Task"]


@dataclass(frozen=True, slots=True)
class StepScalars:
    """The scalars of one step of one clock, in binary64 as the optimizer computes them.

    A backend rounds each to the parameters' dtype once (as NumPy does with a Python float and ATen
    with a scalar argument) before it uses it.
    """

    maximize: bool
    weight_decay: float
    momentum: float
    decay: float
    """``1 - lambd * eta`` (1 in the foreach formulation, which does not use it)."""
    eta: float
    mu: float
    fused: bool
    """Lines 3 and 6 as fused multiply-adds (the torch profiles)."""
    lambd: float = 0.0
    """λ itself, which torch's foreach formulation adds to the gradient as ``lambd * theta`` (0 in
    the for-loop formulation, which uses ``decay`` instead)."""
    foreach: bool = False
    """torch's foreach formulation of lines 5 to 7 (see :class:`reference.numerics.Numerics`)."""

    @property
    def has_weight_decay(self) -> bool:
        """Line 3 runs when the hyperparameter is not 0, as torch's ``if weight_decay != 0`` decides:
        a weight decay that rounds to 0 in the parameters' dtype still adds ``0 * theta``."""
        return bool(self.weight_decay != 0)

    @property
    def averaging(self) -> bool:
        """Whether line 7 averages rather than copies: ``mu != 1``, judged on the stored ``mu``
        (before rounding to the parameters' dtype); always in the foreach formulation."""
        return self.foreach or self.mu != 1


@dataclass(slots=True)
class Task:
    """Lines 2 to 7 for one segment: flat, C-contiguous real arrays of one dtype.

    ``theta``, ``ax`` and ``buf`` are updated in place; ``grad`` is only read. ``buf`` is ``None``
    when the momentum, rounded to the dtype, is 0; ``first_momentum_step`` says that ``buf`` holds
    nothing yet (line 4 then sets ``buf = g``).
    """

    theta: np.ndarray
    grad: np.ndarray
    ax: np.ndarray
    buf: np.ndarray | None
    scalars: StepScalars
    first_momentum_step: bool = False


class Backend(Protocol):
    """Runs lines 2 to 7 of a checked plan, in place."""

    @property
    def name(self) -> str:
        """The backend's name, as ``repr`` and the conformance report show it."""
        ...

    @property
    def packs(self) -> bool:
        """Whether parameters that tile one buffer are stepped as one flat range."""
        ...

    def run(self, tasks: Sequence[Task]) -> None:
        """Every task's lines 2 to 7; the tasks touch disjoint memory."""
        ...


@dataclass(eq=False, slots=True)
class Planned:
    """One segment's share of a checked step, and what to commit once the backend is done."""

    segment: Segment
    task: Task
    clock: Clock
    next_clock: tuple[int | float, float, float]
    new_states: dict[int, ParameterState] | None
    """States to install (the segment's first step, first momentum step, or a split)."""
