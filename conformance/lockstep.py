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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from conformance.metrics import PairMetrics, Sampled
from conformance.reference_judge import CLOCKS, Input, Output, ReferenceJudge, clocks_of, same_clock
from conformance.sampling import edges
from conformance.sessions import Session, hyperparameters, late_state
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
    """One implementation judged by a :class:`ReferenceJudge`: the pair's metrics and coverage."""

    def __init__(self, judge: ReferenceJudge, names: Sequence[str], metrics: PairMetrics) -> None:
        self.judge, self.names, self.metrics = judge, list(names), metrics
        self.checked = self.stepped = 0
        """Values the reference computed and values the implementation stepped, over all steps."""
        self.failure: str | None = None
        """Why the reference could not go on (it refused the implementation's state)."""
        scenario = judge.scenario
        self._carried_clocks: list[tuple[Any, Any, Any] | None] = [None] * len(names)
        if scenario.start_step:
            for number, shape in enumerate(judge.shapes):
                late = late_state(scenario, judge.numerics, np.zeros(shape))
                self._carried_clocks[number] = (late["step"], late["eta"], late["mu"])
        self._carried_buffers: list[np.ndarray | None] = [None] * len(names)
        hyper = hyperparameters(scenario)
        self._momentum = any(
            overrides.get("momentum", hyper["momentum"]) != 0 for _, overrides in scenario.groups
        ) or (not scenario.groups and hyper["momentum"] != 0)
        self._before: _Before | None = None
        self._held_edges: list[np.ndarray | None] = [None] * len(names)
        """The edges of each tensor's state after the last step (its state before this one)."""
        self._last: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] | None = None
        """Where the last step was checked (positions), and the implementation's parameters and
        averages there."""
        self._last_clocks: list[tuple[Any, Any, Any] | None] | None = None

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
        self._between_steps(before, index)
        self._before = before

    def _at_the_start(self, before: _Before, index: int) -> None:
        """Before its first step the implementation must stand at the scenario's start: the shared
        parameters, and either no state or the state the reference starts from (the injected one of a
        late run), since the reference takes whatever state it reads as given."""
        judge = self.judge
        for number, (now, start) in enumerate(zip(before.parameters, judge.initial, strict=True)):
            if now.tobytes() != start.tobytes():
                self.metrics.add_mismatch(index, self.names[number], "parameters before the first step")
        if before.entries is None:
            return
        profile = numerics_named(judge.numerics)
        for number, entry in enumerate(before.entries):
            if entry is None:
                continue
            start = judge.initial[number]
            if judge.scenario.start_step:
                late = late_state(judge.scenario, judge.numerics, start)
                clocks, ax = (late["step"], late["eta"], late["mu"]), late["ax"]
            else:
                fresh = initial_state(start, before.lrs[judge.group_of[number]], profile)
                clocks, ax = (fresh.step, fresh.eta, fresh.mu), fresh.ax
            held = clocks_of(entry)
            assert held is not None
            if not all(map(same_clock, held, clocks)) or entry["ax"].tobytes() != ax.tobytes():
                self.metrics.add_mismatch(index, self.names[number], "state before the first step")

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
                changed = _flat(now, positions).view(np.uint8) != then.view(np.uint8)
                if changed.any():
                    self.metrics.add_mismatch(index, self.names[number], f"{what} between steps")
        if before.entries is not None and self._last_clocks is not None:
            for number, (entry, clocks) in enumerate(zip(before.entries, self._last_clocks, strict=True)):
                held = clocks_of(entry)
                if clocks is not None and (held is None or not all(map(same_clock, held, clocks))):
                    self.metrics.add_mismatch(index, self.names[number], "clocks between steps")

    def after(self, session: Session, values: tuple[list[np.ndarray], list[np.ndarray]], index: int) -> None:
        """Judge step ``index`` from the state read before it and the implementation's ``values`` now."""
        before, self._before = self._before, None
        if self.failure is not None or before is None:
            return
        entries_after = session.state()
        inputs = [
            self._input(before, values, entries_after, number, index) for number in range(len(self.names))
        ]
        try:
            outputs = self.judge.outputs(index, before.lrs, inputs)
        except (ValueError, TypeError) as refused:
            self.failure = f"the reference refused the state before step {index}: {refused}"
            return
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
        self._carry(outputs, entries_after)
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
        readable = before.entries is not None
        if readable:
            clocks = clocks_of(entry)
            buffer = None if entry is None else entry.get("momentum_buffer")
        else:
            clocks, buffer = self._carried_clocks[number], self._carried_buffers[number]
        positions = self.judge.fixed[number]
        if positions is not None and (readable or not self._momentum):  # a carried buffer: the seeded sample
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
        if readable and buffer is not None:
            buffer = _flat(buffer, positions)  # a carried one is already the sample's
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
        """The clocks and momentum buffers, where the implementation's state can be read."""
        if entries_after is None:
            return
        ours, theirs, where, names = [], [], [], []
        for number, (entry, output) in enumerate(zip(entries_after, outputs, strict=True)):
            name = self.names[number]
            clocks = clocks_of(entry)
            if output.clocks is None or clocks is None:
                if output.clocks != clocks:
                    self.metrics.add_mismatch(index, name, "state (present on one side only)")
            else:
                for clock, mine, its in zip(CLOCKS, output.clocks, clocks, strict=True):
                    if not same_clock(mine, its):
                        self.metrics.add_mismatch(index, name, clock, f"{mine!r} expected, {its!r} held")
            buffer = None if entry is None else entry.get("momentum_buffer")
            if (buffer is None) != (output.buffer is None):
                self.metrics.add_mismatch(index, name, "momentum buffer (present on one side only)")
            elif buffer is not None and output.buffer is not None:
                ours.append(output.buffer)
                theirs.append(_flat(buffer, inputs[number].positions))
                where.append(sampled[number])
                names.append(name)
        if names:
            self.metrics.add_buffers(index, names, ours, theirs, where)

    def _carry(self, outputs: Sequence[Output], entries_after: list[dict[str, Any] | None] | None) -> None:
        """Keep what the implementation's state does not show: the reference's own clocks and buffers."""
        self._last_clocks = None
        if entries_after is not None:
            self._last_clocks = [clocks_of(entry) for entry in entries_after]
            return
        for number, output in enumerate(outputs):
            self._carried_clocks[number] = output.clocks
            self._carried_buffers[number] = output.buffer
