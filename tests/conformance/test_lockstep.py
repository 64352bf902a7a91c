"""Lockstep checking with sampled coordinates (conformance.lockstep, conformance.sampling): what it
catches, at which step, and that it states its coverage honestly.

Each test plants one error in an otherwise exact implementation (``optimized.ASGD`` in the torch
profile) and judges it against the reference alone, so that no full-coverage pair can find it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import optimized
from conformance.external import ExternalImplementation
from conformance.implementations import IMPLEMENTATIONS
from conformance.lockstep import Checking
from conformance.objectives import RandomStream
from conformance.results import Comparison
from conformance.runner import run_scenario
from conformance.sampling import SEEDED, WHOLE_BELOW, edges, seeded
from conformance.scenarios import Scenario
from conformance.verdicts import BIT_EXACT, Pair
from conformance.workloads import SingleTensor

REFERENCE = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
SIZE = 100_000  # sampled: more than WHOLE_BELOW
LARGE = Scenario("large-f32", "random-stream", "float32", {"lr": 0.01, "t0": 1}, 4, size=SIZE, seed=3)


class Planted:
    """``optimized.ASGD`` (torch profile) whose parameter ``coordinate`` of the first tensor gets
    bit ``bit`` flipped right after step ``at``; ``hide_state``: no ``state_dict`` (a user's
    optimizer whose clocks and buffers the harness cannot read)."""

    def __init__(self, params: Any, *, at: int, coordinate: int, bit: int, **hyper: Any) -> None:
        self.inner = optimized.ASGD(params, numerics="torch", **hyper)
        first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
        self.first, self.at, self.coordinate, self.bit, self.steps = first, at, coordinate, bit, 0
        self.param_groups = self.inner.param_groups

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        self.inner.step(grads)
        self.steps += 1
        if self.steps == self.at:
            bits = self.first.reshape(-1).view(f"u{self.first.itemsize}")
            bits[self.coordinate] ^= bits.dtype.type(1 << self.bit)

    def averages(self) -> list[np.ndarray]:
        return self.inner.averages()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class PlantedHidingState(Planted):
    state_dict = None  # type: ignore[assignment]


def judged(
    scenario: Scenario,
    *,
    at: int,
    coordinate: int,
    bit: int,
    full_coverage: bool = False,
    cls: type = Planted,
) -> Comparison:
    planted = ExternalImplementation(
        functools.partial(cls, at=at, coordinate=coordinate, bit=bit), "torch", style="numpy"
    )
    pair = Pair(REFERENCE.name, planted.name, BIT_EXACT)
    result = run_scenario(  # what lockstep sees, not what a diagnosis makes of it
        scenario, [REFERENCE, planted], [pair], checking=Checking(full_coverage=full_coverage), diagnose=False
    )
    (comparison,) = result.comparisons
    assert comparison.mode == "lockstep"
    return comparison


def ordinary_coordinate(scenario: Scenario) -> int:
    """A coordinate of the large tensor that the seeded sample does not hold (nor the first or last)."""
    sample = set(seeded(scenario.size, scenario.seed, 0).tolist())
    return next(c for c in range(SIZE // 2, SIZE) if c not in sample)


def test_an_exact_implementation_holds_with_its_coverage_stated() -> None:
    comparison = judged(LARGE, at=0, coordinate=0, bit=0)  # at=0: never flips
    assert comparison.status == "holds", comparison.reason
    assert comparison.stepped_values == SIZE * LARGE.steps
    assert SEEDED * LARGE.steps <= comparison.checked_values < SIZE * LARGE.steps  # type: ignore[operator]
    assert "of the values held" in comparison.reason


def test_a_flip_outside_the_sample_is_not_promised_and_full_coverage_catches_it() -> None:
    coordinate = ordinary_coordinate(LARGE)
    sampled = judged(LARGE, at=2, coordinate=coordinate, bit=0)
    assert sampled.status == "holds"  # not covered, and the verdict says so
    assert sampled.checked_values < sampled.stepped_values  # type: ignore[operator]
    full = judged(LARGE, at=2, coordinate=coordinate, bit=0, full_coverage=True)
    assert full.status == "fails"
    assert full.checked_values == full.stepped_values == SIZE * LARGE.steps
    assert (full.first_divergence, full.first_divergence_quantity) == (2, "parameters")
    assert full.first_divergence_element == f"[{coordinate}]"
    assert full.differing_scalar_steps == 1  # found where it happens, nothing compounded


@pytest.mark.parametrize("coordinate", [0, SIZE - 1])
def test_a_flip_at_the_first_or_last_value_is_caught(coordinate: int) -> None:
    comparison = judged(LARGE, at=3, coordinate=coordinate, bit=0)
    assert comparison.status == "fails"
    assert (comparison.first_divergence, comparison.first_divergence_element) == (3, f"[{coordinate}]")


def test_a_flip_to_a_non_finite_value_is_caught_outside_the_sample() -> None:
    """Bit 30 of a float32 in [1, 2) raises its exponent field to all ones: inf or NaN."""
    start = SingleTensor(RandomStream(SIZE, "float32", LARGE.seed)).initial()[0]
    sample = set(seeded(SIZE, LARGE.seed, 0).tolist())
    coordinate = next(c for c in range(SIZE) if c not in sample and 1 <= abs(start[c]) < 1.5)
    comparison = judged(dataclasses.replace(LARGE, steps=1), at=1, coordinate=coordinate, bit=30)
    assert comparison.status == "fails"
    assert comparison.first_divergence_element == f"[{coordinate}]"


class EdgeStream(RandomStream):
    """A random stream whose starting point holds a subnormal, a NaN, an infinity and zeros at
    :data:`EDGE_AT`."""

    def initial(self) -> np.ndarray:
        values = super().initial()
        for coordinate, value in EDGE_AT.items():
            values[coordinate] = value
        return values


_OUTSIDE = [c for c in range(50_000, SIZE, 1_001) if c not in set(seeded(SIZE, LARGE.seed, 0).tolist())]
EDGE_AT = dict(zip(_OUTSIDE[:5], [np.float32(1e-40), np.nan, np.inf, -0.0, 0.0], strict=True))
"""Coordinates outside the seeded sample, and the edge value each starts from."""


@pytest.mark.parametrize("coordinate", sorted(EDGE_AT))
def test_a_flip_at_an_edge_value_is_caught_outside_the_sample(
    coordinate: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert coordinate not in set(seeded(SIZE, LARGE.seed, 0).tolist())
    workload = SingleTensor(EdgeStream(SIZE, "float32", LARGE.seed))
    monkeypatch.setattr("conformance.runner.make_workload", lambda scenario: workload)
    bit = 23 if np.isnan(EDGE_AT[coordinate]) else 0  # a NaN's payload bit makes a NaN: its exponent's lowest
    comparison = judged(dataclasses.replace(LARGE, steps=2), at=1, coordinate=coordinate, bit=bit)
    assert comparison.status == "fails", comparison.reason
    assert (comparison.first_divergence, comparison.first_divergence_element) == (1, f"[{coordinate}]")


def test_the_edges_of_an_array() -> None:
    values = np.ones(10, np.float32)
    values[[2, 4, 6, 8]] = [np.nan, 1e-40, -0.0, -7.0]
    assert edges([values]).tolist() == [2, 4, 6, 8]
    complex_values = np.ones(5, np.complex64)
    complex_values[3] = complex(1.0, np.inf)
    assert 3 in edges([complex_values]).tolist()


def test_small_tensors_are_checked_whole_and_large_ones_sampled() -> None:
    assert seeded(WHOLE_BELOW - 1, 0, 0).tolist() == list(range(WHOLE_BELOW - 1))
    sample = seeded(WHOLE_BELOW, 0, 0)
    assert len(sample) <= SEEDED + 2 and {0, WHOLE_BELOW - 1} <= set(sample.tolist())
    assert sample.tolist() == seeded(WHOLE_BELOW, 0, 0).tolist()  # the same at every step
    assert sample.tolist() != seeded(WHOLE_BELOW, 1, 0).tolist()  # another seed, another sample


def test_a_carried_state_still_judges_momentum() -> None:
    """A user's optimizer without ``state_dict``: its clocks and momentum buffers stay the
    reference's own, and a flip is still found at its step (on a small tensor, in full)."""
    scenario = Scenario(
        "momentum", "random-stream", "float32", {"lr": 0.01, "t0": 2, "momentum": 0.9}, 6, size=64
    )
    exact = judged(scenario, at=0, coordinate=0, bit=0, cls=PlantedHidingState)
    assert exact.status == "holds", exact.reason
    flipped = judged(scenario, at=4, coordinate=10, bit=3, cls=PlantedHidingState)
    assert (flipped.status, flipped.first_divergence, flipped.first_divergence_element) == (
        "fails",
        4,
        "[10]",
    )


class SkewsTheClockOnLoad(Planted):
    """Exact, except that a checkpoint it loads resumes its step count one step on."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for entry in state["state"].values():
            entry["step"] = type(entry["step"])(entry["step"] + 1)
        self.inner.load_state_dict(state)


class ReportsAnotherEta(Planted):
    """Exact, except that the eta its state shows after step 3 is one float32 ULP off."""

    def state_dict(self) -> dict[str, Any]:
        saved = self.inner.state_dict()
        if self.steps >= 3:
            for entry in saved["state"].values():
                entry["eta"] = np.nextafter(entry["eta"], np.float32(1))
        return saved


class StartsWithAnotherEta(Planted):
    """Exact, except that it starts from a state with twice the lr as eta (and steps with it)."""

    def __init__(self, params: Any, **options: Any) -> None:
        super().__init__(params, **options)
        saved = self.inner.state_dict()
        eta = np.float32(2 * saved["param_groups"][0]["lr"])
        saved["state"] = {
            0: {"step": np.float32(0), "eta": eta, "mu": np.float32(1), "ax": np.zeros_like(self.first)}
        }
        self.inner.load_state_dict(saved)


class IgnoresLoadedState(Planted):
    """Exact, except that ``load_state_dict`` keeps nothing (an injected late-run state included)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class DropsTheBufferOnLoad(Planted):
    """Exact, except that a checkpoint it loads loses the momentum buffers."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for entry in state["state"].values():
            entry.pop("momentum_buffer", None)
        self.inner.load_state_dict(state)


_LATE = 2**24 - 2
_MOMENTUM = {"lr": 0.01, "t0": 2, "momentum": 0.9}


@pytest.mark.parametrize(
    ("fault", "scenario", "step", "quantity"),
    [
        (SkewsTheClockOnLoad, Scenario("checkpointed", "random-stream", "float32", {"lr": 0.01, "t0": 2}, 6,
                                       size=32, checkpoint_at=3), 4, "clocks between steps"),
        (ReportsAnotherEta, Scenario("clocks", "random-stream", "float32", {"lr": 0.01, "t0": 2}, 5, size=32),
         3, "eta"),
        # the implementation's first step is exact from the state it holds, but that state is not the start
        (StartsWithAnotherEta, Scenario("start", "random-stream", "float32", {"lr": 0.01, "t0": 2}, 3, size=32),
         1, "state before the first step"),
        (IgnoresLoadedState, Scenario("late", "random-stream", "float32", {"lr": 0.01, "t0": _LATE - 10}, 3,
                                      size=16, start_step=_LATE),
         1, "state before the first step (the injected one is missing)"),
        (DropsTheBufferOnLoad, Scenario("buffers", "random-stream", "float32", _MOMENTUM, 6, size=32,
                                        checkpoint_at=3), 4, "momentum buffer between steps"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)  # fmt: skip
def test_state_the_reference_takes_as_given_is_held_to_account(
    fault: type, scenario: Scenario, step: int, quantity: str
) -> None:
    """The reference computes each step from the state it reads: a state that is wrong before the
    first step, changes between steps, or holds other clocks after a step is found where it arises."""
    comparison = judged(scenario, at=0, coordinate=0, bit=0, cls=fault)
    assert (comparison.status, comparison.first_divergence) == ("fails", step)
    assert comparison.first_divergence_quantity == quantity


def test_a_carried_buffer_of_a_large_tensor_keeps_its_positions() -> None:
    """Unreadable state with momentum on a sampled tensor: the carried buffer decides the sample."""
    scenario = Scenario("carried", "random-stream", "float32", _MOMENTUM, 4, size=40_000, seed=1)
    exact = judged(scenario, at=0, coordinate=0, bit=0, cls=PlantedHidingState)
    assert exact.status == "holds", exact.reason
    assert exact.checked_values < exact.stepped_values  # type: ignore[operator]
