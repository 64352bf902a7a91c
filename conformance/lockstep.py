"""The reference judging another implementation step by step, from the implementation's own state.

At each step the reference takes the implementation's state before the step (parameters, averages,
momentum buffers and clocks), the gradients the implementation received, and computes the step,
which must match the implementation's state after it bit for bit. A divergence is found at the
step where it happens, with nothing compounded, and a workload whose gradients come from the
implementation's own parameters (autograd on a model) is judged along the implementation's own
trajectory: up to a first divergence that is the same as running alongside it.

The reference computes the coordinates :mod:`conformance.sampling` chooses (every one of a small
tensor, with ``full_coverage`` every one of every tensor) and the clocks in full. State the harness
cannot read (a user's clocks or momentum buffer) stays the reference's own, carried from step to
step; where a momentum buffer is carried, the reference computes only the seeded sample, whose
buffer it holds. Between two steps the implementation's state must not change (a checkpoint taken
and loaded there included): the next step's state is compared with the last one's where the
reference computed it.

Implementations that stand at the same point share the reference's computation (one per distinct
input at each step), so judging several of them costs little more than judging one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from conformance.metrics import PairMetrics, Sampled, shown
from conformance.reference_judge import CLOCKS, Input, Output, ReferenceJudge, clocks_of, same_clock
from conformance.sampling import edges
from conformance.sessions import Session, late_state
from conformance.ulp import same_bits
from conformance.workloads import Gradients
from reference.numerics import numerics_named
from reference.state import initial_state

__all__ = ["LOCKSTEP", "Checking", "Lockstep"]


@dataclass(frozen=True)
class Checking:
    """How a run checks the reference's pairs."""

    lockstep: bool = True
    """The reference judges each step from the implementation's state (else it runs its own
    trajectory beside the implementation, every value at every step, differences compounding)."""
    full_coverage: bool = False
    """In lockstep, the reference computes every value of every tensor (else large tensors are
    sampled: :mod:`conformance.sampling`)."""


LOCKSTEP: Final = Checking()
"""The default: lockstep, large tensors sampled."""


def _flat(array: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    flat = np.asarray(array).reshape(-1)
    return flat.copy() if positions is None else flat[positions]


@dataclass
class _Before:
    """An implementation's state before a step, as copies."""

    parameters: list[np.ndarray]
    averages: list[np.ndarray]
    entries: list[dict[str, Any] | None] | None
    gradients: Gradients
    lrs: list[float]


class Lockstep:
    """One implementation judged by a :class:`ReferenceJudge`: the pair's metrics and coverage.
    ``switch`` is told when the reference's code starts (``True``) and ends (``False``) running at a
    step."""

    def __init__(
        self,
        judge: ReferenceJudge,
        names: Sequence[str],
        metrics: PairMetrics,
        switch: Callable[[bool, int], None] = lambda reference, index: None,
    ) -> None:
        self.judge, self.names, self.metrics, self.switch = judge, list(names), metrics, switch
        self.checked = self.stepped = 0
        """Values the reference computed and values the implementation held, over all steps (a
        tensor without a gradient included: it must not change)."""
        self.failure: str | None = None
        """Why the check could not go on (the reference refused the implementation's state, say)."""
        scenario = judge.scenario
        self._clocks_then: list[tuple[Any, Any, Any] | None] = [None] * len(names)
        """The clocks each tensor's state holds now, as last seen or computed (``None``: no state)."""
        if scenario.start_step:
            for number, shape in enumerate(judge.shapes):
                late = late_state(scenario, judge.numerics, np.zeros(shape))
                self._clocks_then[number] = (late["step"], late["eta"], late["mu"])
        self._buffers_then: list[tuple[np.ndarray | None, np.ndarray] | None] = [None] * len(names)
        """The momentum buffer each tensor's state holds now, at the positions it was computed at."""
        self._before: _Before | None = None
        self._held_edges: list[np.ndarray | None] = [None] * len(names)
        """The edges of each tensor's state after the last step (its state before this one)."""
        self._last: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] | None = None
        """Where the last step was checked (positions), and the implementation's parameters and
        averages there."""

    def before(self, session: Session, gradients: Gradients, lrs: Sequence[float], index: int) -> None:
        """Read the implementation's state before step ``index`` (and what it gets for it)."""
        if self.failure is not None:
            return
        before = _Before(
            [np.array(p, copy=True) for p in session.parameters()],
            [np.array(a, copy=True) for a in session.averages()],
            session.state(),
            [None if g is None else g.copy() for g in gradients],
            list(lrs),
        )
        try:
            self._between_steps(before, index)
        except Exception as error:  # the harness's own checks on what it read
            self.failure = f"the state before step {index} could not be checked: {_described(error)}"
        self._before = before

    def _mismatch(
        self, index: int, number: int, what: str, count: int = 1, values: tuple[str, str] | None = None
    ) -> None:
        self.metrics.add_mismatch(index, self.names[number], what, count=count, values=values)

    def _at_the_start(self, before: _Before, index: int) -> None:
        """Before its first step the implementation must stand at the scenario's start: the shared
        parameters (and in a late run the injected averages), no momentum buffer, and either no
        state or the state the reference starts from (the injected one of a late run), since the
        reference takes whatever state it reads as given."""
        judge = self.judge
        for number, start in enumerate(judge.initial):
            held_now = [("parameters", before.parameters[number])]
            if judge.scenario.start_step:  # the injected average is the starting point
                held_now.append(("averages", before.averages[number]))
            for what, now in held_now:
                differing = _differing(now.reshape(-1), start.reshape(-1))
                if differing:
                    self._mismatch(index, number, f"{what} before the first step", differing)
        if before.entries is None:
            return
        profile = numerics_named(judge.numerics)
        for number, entry in enumerate(before.entries):
            start, expected = judge.initial[number], self._clocks_then[number]
            if entry is None:
                if expected is not None:
                    self._mismatch(index, number, "state before the first step (the injected one is missing)")
                continue
            if expected is None:  # a state made before the first step: the reference's initial one
                fresh = initial_state(start, before.lrs[judge.group_of[number]], profile)
                expected, ax = (fresh.step, fresh.eta, fresh.mu), fresh.ax
            else:
                ax = start
            held = clocks_of(entry)
            assert held is not None
            if not all(map(same_clock, held, expected)) or _differing(entry["ax"], ax):
                self._mismatch(index, number, "state before the first step")
            if entry.get("momentum_buffer") is not None:
                self._mismatch(index, number, "momentum buffer before the first step")

    def _between_steps(self, before: _Before, index: int) -> None:
        """What the implementation holds now must be what it held after the last step."""
        if self._last is None:
            self._at_the_start(before, index)
            return
        for number, (positions, theta, ax) in enumerate(self._last):
            for what, now, then in (
                ("parameters", before.parameters[number], theta),
                ("averages", before.averages[number], ax),
            ):
                differing = _differing(_flat(now, positions), then)
                if differing:
                    self._mismatch(index, number, f"{what} between steps", differing)
        if before.entries is None:
            return
        for number, entry in enumerate(before.entries):
            held, clocks = clocks_of(entry), self._clocks_then[number]
            if (held is None) != (clocks is None) or (
                held is not None and clocks is not None and not all(map(same_clock, held, clocks))
            ):
                self._mismatch(index, number, "clocks between steps")
            buffer, buffer_then = (
                None if entry is None else entry.get("momentum_buffer"),
                self._buffers_then[number],
            )
            if (buffer is None) != (buffer_then is None):
                self._mismatch(index, number, "momentum buffer between steps")
            elif buffer is not None and buffer_then is not None:
                differing = _differing(_flat(buffer, buffer_then[0]), buffer_then[1])
                if differing:
                    self._mismatch(index, number, "momentum buffer between steps", differing)

    def after(self, session: Session, values: tuple[list[np.ndarray], list[np.ndarray]], index: int) -> None:
        """Judge step ``index`` from the state read before it and the implementation's ``values`` now."""
        before, self._before = self._before, None
        if self.failure is not None or before is None:
            return
        entries_after = session.state()
        try:
            self._judge(before, values, entries_after, index)
        except Exception as error:  # the harness's own code on what it read
            self.failure = f"step {index} could not be checked: {_described(error)}"

    def _judge(
        self,
        before: _Before,
        values: tuple[list[np.ndarray], list[np.ndarray]],
        entries_after: list[dict[str, Any] | None] | None,
        index: int,
    ) -> None:
        inputs = [
            self._input(before, values, entries_after, number, index) for number in range(len(self.names))
        ]
        self.switch(True, index)
        try:
            outputs = self.judge.outputs(index, before.lrs, inputs)
        except (ValueError, TypeError) as refused:
            self.failure = f"the reference refused the state before step {index}: {refused}"
            return
        except Exception as error:
            self.failure = f"the reference failed at step {index}: {_described(error)}"
            return
        finally:
            self.switch(False, index)
        sampled: list[Sampled] = [
            (shape, entry.positions) for shape, entry in zip(self.judge.shapes, inputs, strict=True)
        ]
        theirs = [
            [_flat(array, entry.positions) for array, entry in zip(arrays, inputs, strict=True)]
            for arrays in values
        ]
        self.metrics.add(
            index,
            self.names,
            ([o.theta for o in outputs], [o.ax for o in outputs]),
            (theirs[0], theirs[1]),
            sampled,
        )
        self._compare_state(index, inputs, outputs, entries_after, sampled)
        self._remember(inputs, outputs, entries_after)
        self._last = [(entry.positions, theirs[0][n], theirs[1][n]) for n, entry in enumerate(inputs)]
        for entry, shape in zip(inputs, self.judge.shapes, strict=True):
            size = int(np.prod(shape))
            self.checked += size if entry.positions is None else len(entry.positions)
            self.stepped += size

    def _input(
        self,
        before: _Before,
        values: tuple[list[np.ndarray], list[np.ndarray]],
        entries_after: list[dict[str, Any] | None] | None,
        number: int,
        index: int,
    ) -> Input:
        entry = None if before.entries is None else before.entries[number]
        gradient = before.gradients[number]
        positions = self.judge.fixed[number]
        if before.entries is not None:
            clocks = clocks_of(entry)
            buffer = None if entry is None else entry.get("momentum_buffer")
        else:  # the reference's own clocks and buffer, carried
            clocks, carried = self._clocks_then[number], self._buffers_then[number]
            buffer = None if carried is None else carried[1]
            if carried is not None:
                positions = carried[0]  # the positions the carried buffer was computed at
        if positions is not None and (before.entries is not None or self._buffers_then[number] is None):
            after = None if entries_after is None or entries_after[number] is None else entries_after[number]
            held = edges(
                [
                    values[0][number],
                    values[1][number],
                    None if after is None else after.get("momentum_buffer"),
                ]
            )
            earlier = self._held_edges[number]  # the state before is the state after the last step ...
            if earlier is None or index - 1 == self.judge.scenario.checkpoint_at:  # ... unless reloaded
                earlier = edges([before.parameters[number], before.averages[number], buffer])
            self._held_edges[number] = held
            positions = np.union1d(positions, np.concatenate([earlier, edges([gradient]), held]))
        if before.entries is not None and buffer is not None:
            buffer = _flat(buffer, positions)  # a carried one is already at these positions
        return Input(
            positions,
            _flat(before.parameters[number], positions),
            _flat(before.averages[number], positions),
            buffer,
            None if gradient is None else _flat(gradient, positions),
            clocks,
        )

    def _compare_state(
        self,
        index: int,
        inputs: Sequence[Input],
        outputs: Sequence[Output],
        entries_after: list[dict[str, Any] | None] | None,
        sampled: Sequence[Sampled],
    ) -> None:
        """The clocks, the state's averages and the momentum buffers, where the state can be read."""
        if entries_after is None:
            return
        ours, theirs, where, names = [], [], [], []
        for number, (entry, output) in enumerate(zip(entries_after, outputs, strict=True)):
            clocks, positions = clocks_of(entry), inputs[number].positions
            if output.clocks is None or clocks is None:
                if output.clocks != clocks:
                    self._mismatch(index, number, "state (present on one side only)")
            else:
                for clock, mine, its in zip(CLOCKS, output.clocks, clocks, strict=True):
                    if not same_clock(mine, its):
                        self._mismatch(index, number, clock, values=(_clock_shown(mine), _clock_shown(its)))
                differing = _differing(_flat(entry["ax"], positions), output.ax)  # type: ignore[index]
                if differing:
                    self._mismatch(index, number, "ax in the state", differing)
            buffer = None if entry is None else entry.get("momentum_buffer")
            if (buffer is None) != (output.buffer is None):
                self._mismatch(index, number, "momentum buffer (present on one side only)")
            elif buffer is not None and output.buffer is not None:
                ours.append(output.buffer)
                theirs.append(_flat(buffer, positions))
                where.append(sampled[number])
                names.append(self.names[number])
        if names:
            self.metrics.add_buffers(index, names, ours, theirs, where)

    def _remember(
        self,
        inputs: Sequence[Input],
        outputs: Sequence[Output],
        entries_after: list[dict[str, Any] | None] | None,
    ) -> None:
        """What the implementation's state holds after the step: what it shows where it can be
        read, else the reference's own clocks and buffers (carried to the next step)."""
        for number, (entry, output) in enumerate(zip(inputs, outputs, strict=True)):
            if entries_after is not None:
                held = entries_after[number]
                buffer = None if held is None else held.get("momentum_buffer")
                self._clocks_then[number] = clocks_of(held)
                self._buffers_then[number] = (
                    None if buffer is None else (entry.positions, _flat(buffer, entry.positions))
                )
            else:
                self._clocks_then[number] = output.clocks
                self._buffers_then[number] = (
                    None if output.buffer is None else (entry.positions, output.buffer)
                )


def _differing(a: np.ndarray, b: np.ndarray) -> int:
    """How many values of two arrays of one dtype and size differ in any bit."""
    if same_bits(a, b):
        return 0
    x, y = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
    if x.shape != y.shape or x.dtype != y.dtype:
        return max(x.size, y.size, 1)
    width = x.dtype.itemsize
    unsigned = x.view(np.uint8).reshape(-1, width) != y.view(np.uint8).reshape(-1, width)
    return int(unsigned.any(axis=1).sum())


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _clock_shown(clock: Any) -> str:
    """A clock's value as the failure line gives it: an integer count as it is, a float in decimal
    and as its bits in hex (in its own format: a float32 clock as float32)."""
    if isinstance(clock, (int, np.integer)) and not isinstance(clock, bool):
        return str(int(clock))
    value = np.asarray(clock)[()]
    return shown(value if isinstance(value, np.floating) else np.float64(clock))
