"""The reference computing one step of a scenario from given state, for the lockstep checks.

:class:`ReferenceJudge` is ``reference.ASGD`` in one numerics profile, built afresh for each step
over the chosen values of each tensor, loaded with the state it is given and stepped with the given
gradients (:mod:`conformance.lockstep` decides what it is given and compares what it returns).
Implementations that stand at the same point ask for the same computation, which is made once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import reference
from conformance.near_miss_lines import Convention, Counter, counted, with_momentum_convention
from conformance.sampling import seeded, whole
from conformance.scenarios import Scenario
from conformance.sessions import hyperparameters, param_groups
from conformance.shared_gradients import fold_arrays
from reference.asgd import step_parameter, uses_momentum
from reference.numerics import Numerics, numerics_named
from reference.state import exported, initial_state, parsed

__all__ = ["CLOCKS", "Input", "Output", "ReferenceJudge", "Variant", "clocks_of", "same_clock"]

CLOCKS = ("step", "eta", "mu")


@dataclass(frozen=True)
class Input:
    """What the reference computes one tensor's step from, at the tensor's chosen values."""

    positions: np.ndarray | None
    """Flat positions of the chosen values (``None``: all of them)."""
    theta: np.ndarray
    ax: np.ndarray
    buffer: np.ndarray | None
    gradient: np.ndarray | None
    clocks: tuple[Any, Any, Any] | None
    """``step``, ``eta``, ``mu`` before the step (``None``: the tensor has no state yet)."""


@dataclass(frozen=True)
class Output:
    theta: np.ndarray
    ax: np.ndarray
    buffer: np.ndarray | None
    clocks: tuple[Any, Any, Any] | None


def _exact(clock: Any) -> int | float:
    """A clock's exact value: an integer count as an int, anything else as a binary64 float (which
    holds every float32 and float64 value exactly)."""
    return int(clock) if isinstance(clock, (int, np.integer)) else float(clock)


def same_clock(a: Any, b: Any) -> bool:
    """Two clocks hold the same value."""
    return _exact(a) == _exact(b)


def clocks_of(entry: dict[str, Any] | None) -> tuple[Any, Any, Any] | None:
    """A state entry's ``step``, ``eta`` and ``mu`` (``None``: no state)."""
    return None if entry is None else (entry["step"], entry["eta"], entry["mu"])


class ReferenceJudge:
    """``reference.ASGD`` in one numerics profile, computing steps from given state for the
    :class:`Lockstep` checks of one scenario (one computation per distinct input and step)."""

    def __init__(
        self,
        numerics: str,
        scenario: Scenario,
        initial: Sequence[np.ndarray],
        *,
        full_coverage: bool,
        variant: Variant | None = None,
    ) -> None:
        self.numerics, self.scenario, self.initial, self.variant = numerics, scenario, list(initial), variant
        self.shapes = [array.shape for array in initial]
        counts = [count for count, _ in scenario.groups] or [len(self.initial)]
        self.group_of = [group for group, count in enumerate(counts) for _ in range(count)]
        """Each tensor's param group."""
        self.fixed = [
            None if full_coverage or whole(array.size) else seeded(array.size, scenario.seed, number)
            for number, array in enumerate(initial)
        ]
        """Each tensor's seeded sample (``None``: the tensor is checked whole)."""
        self.seconds = 0.0
        self.last_clocks: tuple[Any, Any, Any] | None = None
        self._step, self._known = -1, dict[bytes, list[Output]]()

    def outputs(self, index: int, lrs: Sequence[float], inputs: Sequence[Input]) -> list[Output]:
        """The reference's step ``index`` from ``inputs`` with the groups' ``lrs``."""
        if index != self._step:
            self._step, self._known = index, {}
        key = _digest(lrs, inputs)
        known = self._known.get(key)
        if known is None:
            started = time.perf_counter()
            known = self._known[key] = self._compute(lrs, inputs)
            self.seconds += time.perf_counter() - started
        if len(self._known) == 1 and known and known[0].clocks is not None:
            self.last_clocks = known[0].clocks  # the first implementation's at each step
        return known

    def _compute(self, lrs: Sequence[float], inputs: Sequence[Input]) -> list[Output]:
        if self.variant is not None:
            return _variant_step(self, self.variant, lrs, inputs)
        arrays = [entry.theta.copy() for entry in inputs]
        hyper = hyperparameters(self.scenario)
        groups = param_groups(self.scenario, arrays)
        if self.scenario.groups:
            groups = [{**group, "lr": lr} for group, lr in zip(groups, lrs, strict=True)]
        else:
            hyper["lr"] = lrs[0]
        optimizer = reference.ASGD(groups, numerics=self.numerics, **hyper)
        saved = optimizer.state_dict()
        saved["state"] = {
            number: _saved(entry) for number, entry in enumerate(inputs) if entry.clocks is not None
        }
        optimizer.load_state_dict(saved)
        optimizer.step([entry.gradient for entry in inputs])
        after, averages = optimizer.state_dict()["state"], optimizer.averages()
        outputs = []
        for number, theta in enumerate(arrays):
            entry = after.get(number)
            outputs.append(
                Output(
                    theta,
                    averages[number],
                    None if entry is None else entry.get("momentum_buffer"),
                    clocks_of(entry),
                )
            )
        return outputs


def _saved(entry: Input) -> dict[str, Any]:
    """An input's state (it has one) as a ``state_dict`` entry in this project's layout, with copies."""
    assert entry.clocks is not None
    saved = {**dict(zip(CLOCKS, entry.clocks, strict=True)), "ax": entry.ax.copy()}
    if entry.buffer is not None:
        saved["momentum_buffer"] = entry.buffer.copy()
    return saved


def _digest(lrs: Sequence[float], inputs: Sequence[Input]) -> bytes:
    digest = hashlib.blake2b(repr(list(lrs)).encode(), digest_size=32)
    for entry in inputs:
        exact = None if entry.clocks is None else [(type(c).__name__, _exact(c)) for c in entry.clocks]
        digest.update(repr(exact).encode())  # exact values: a 0-d array's repr rounds
        fold_arrays(digest, (entry.positions, entry.theta, entry.ax, entry.buffer, entry.gradient))
    return digest.digest()


@dataclass(frozen=True)
class Variant:
    """A near miss of a profile, for diagnosis: other rounding (``numerics``), hyperparameters
    changed in every group (``changed``: a group's hyperparameters to those the variant uses),
    another momentum convention or another step counter (:mod:`conformance.near_miss_lines`)."""

    name: str
    numerics: Numerics | None = None
    changed: Callable[[dict[str, Any]], dict[str, Any]] = lambda group: group
    momentum: Convention | None = None
    counter: Counter | None = None


def _variant_step(
    judge: ReferenceJudge, variant: Variant, lrs: Sequence[float], inputs: Sequence[Input]
) -> list[Output]:
    """:meth:`ReferenceJudge._compute` for a variant: the spec's own box for one parameter
    (``reference.asgd.step_parameter``) with the variant's profile and hyperparameters."""
    numerics = variant.numerics or numerics_named(judge.numerics)
    hyper = hyperparameters(judge.scenario)
    overrides = [dict(o) for _, o in judge.scenario.groups] or [{}]
    outputs = []
    for number, entry in enumerate(inputs):
        group_number = judge.group_of[number]
        group = variant.changed({**hyper, **overrides[group_number], "lr": lrs[group_number]})
        theta = entry.theta.copy()
        if entry.gradient is None:  # no step: all as it was, the clocks in the implementation's format
            copied = _saved(entry) if entry.clocks is not None else {"ax": theta.copy()}
            outputs.append(Output(theta, copied["ax"], copied.get("momentum_buffer"), entry.clocks))
            continue
        if entry.clocks is None:
            state = initial_state(theta, group["lr"], numerics)
        else:
            state = parsed(_saved(entry), theta, numerics, f"state[{number}]")
        convention = variant.momentum if uses_momentum(group, theta.dtype) else None
        if convention is not None:
            gradient, buffer = with_momentum_convention(
                convention, theta, entry.gradient, entry.buffer, group, state, numerics
            )
            applied = {**group, "maximize": False, "weight_decay": 0.0, "momentum": 0.0}
            step_parameter(theta, gradient, state, applied, numerics)
            state.momentum_buffer = buffer
        else:
            step_parameter(theta, entry.gradient, state, group, numerics)
        held = exported(state, numerics)
        if variant.counter is not None:
            before = 0 if entry.clocks is None else _exact(entry.clocks[0])
            held.update(zip(CLOCKS, counted(variant.counter, before, group, numerics), strict=True))
        outputs.append(Output(theta, held["ax"], held.get("momentum_buffer"), clocks_of(held)))
    return outputs
