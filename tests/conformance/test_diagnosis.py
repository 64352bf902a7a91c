"""Diagnosis (conformance.diagnosis): a wrong implementation is named by the near miss that
reproduces it bit for bit, in the failure's reason and in results.json's ``diagnosis``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pytest

import optimized
from conformance.diagnosis import near_misses
from conformance.external import ExternalImplementation, pairs_for
from conformance.implementations import IMPLEMENTATIONS
from conformance.lockstep import Checking
from conformance.reference_judge import Input, ReferenceJudge
from conformance.runner import run_scenario
from conformance.scenarios import LATE_START, Scenario
from reference.asgd import step_parameter
from reference.numerics import numerics_named
from reference.rounding import BINARY64
from reference.state import initial_state


def without(name: str, value: Any, numerics: str = "torch") -> Any:
    """The ``numerics`` profile with the hyperparameter ``name`` always ``value``."""

    def make(params: Any, **hyper: Any) -> Any:
        return optimized.ASGD(params, numerics=numerics, **{**hyper, name: value})

    return make


def averaging_late(params: Any, t0: float, **hyper: Any) -> Any:
    return optimized.ASGD(params, numerics="torch", t0=t0 + 1, **hyper)


class RoundsDifferently:
    """A one-group ASGD that steps each array with the spec's box in a changed torch profile (eta
    and mu kept in binary64, or no fused multiply-adds): a port that got one rounding wrong."""

    def __init__(self, params: Any, changes: dict[str, Any], **hyper: Any) -> None:
        self.params, self.group = list(params), hyper
        self.numerics = dataclasses.replace(numerics_named("torch"), **changes)
        self.state = [initial_state(p, hyper["lr"], self.numerics) for p in self.params]

    def step(self, grads: Any) -> None:
        for array, gradient, state in zip(self.params, grads, self.state, strict=True):
            if gradient is not None:
                step_parameter(array, gradient, state, self.group, self.numerics)

    def averages(self) -> list[Any]:
        return [state.ax.copy() for state in self.state]


EVERYTHING = {"lr": 0.05, "t0": 5, "weight_decay": 0.01, "lambd": 0.01, "maximize": True}
SCENARIO = Scenario("diagnosed", "random-stream", "float64", EVERYTHING, 20, size=16, seed=2)
"""float64: where eta and mu kept in binary64 or binary32 tell apart (a float32 step rounds them anyway)."""

WRONG = [
    (without("weight_decay", 0.0), "the torch profile with weight_decay ignored"),
    (without("lambd", 0.0), "the torch profile with lambd ignored"),
    (without("maximize", False), "the torch profile with maximize ignored"),
    (averaging_late, "the torch profile with averaging starting one step late"),
    (functools.partial(optimized.ASGD, numerics="numpy"), "the numpy profile"),
    (functools.partial(optimized.ASGD, numerics="torch-foreach"), "the torch-foreach profile"),
    (functools.partial(RoundsDifferently, changes={"scalar_format": BINARY64}),
     "the torch profile with eta and mu kept in binary64"),
    (functools.partial(RoundsDifferently, changes={"fused_multiply_add": False}),
     "the torch profile without fused multiply-adds"),
]  # fmt: skip


@pytest.mark.parametrize(("factory", "named"), WRONG, ids=[named for _, named in WRONG])
def test_a_wrong_implementation_is_diagnosed_by_name_bit_for_bit(factory: Any, named: str) -> None:
    user = ExternalImplementation(factory, "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    result = run_scenario(SCENARIO, [judge, user], pairs_for(user)[:1])
    (comparison,) = result.comparisons
    assert comparison.status == "fails"
    assert comparison.diagnosis == f"matches {named}, bit for bit over all 20 steps"
    assert comparison.reason.endswith(f"; diagnosis: {comparison.diagnosis}")


def test_a_correct_implementation_gets_no_diagnosis() -> None:
    user = ExternalImplementation(functools.partial(optimized.ASGD, numerics="torch"), "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    (comparison,) = run_scenario(SCENARIO, [judge, user], pairs_for(user)[:1]).comparisons
    assert (comparison.status, comparison.diagnosis) == ("holds", None)


def test_the_near_misses_of_each_profile() -> None:
    for profile in ("numpy", "torch", "torch-foreach"):
        names = [variant.name for variant in near_misses(profile)]
        assert len(names) == len(set(names)) == 13
        assert f"the {profile} profile" not in names
        assert any("fused multiply-adds" in name for name in names)
        assert any("kept in binary" in name for name in names)
        assert any("step counter" in name for name in names)
        assert any("Nesterov" in name for name in names) and any("as an average" in name for name in names)


class OtherMomentum:
    """A port whose momentum is not torch SGD's: ``"average"`` keeps ``buf = m*buf + (1 - m)*g``
    from zero, ``"nesterov"`` steps with ``g + m*buf``; the rest is ``optimized.ASGD`` without
    momentum (the scenarios below have neither weight decay nor maximize, which come before it)."""

    def __init__(self, params: Any, convention: str, numerics: str, momentum: float, **hyper: Any) -> None:
        self.convention, self.m, self.buffers = convention, momentum, None
        self.inner = optimized.ASGD(params, numerics=numerics, momentum=0.0, **hyper)

    def step(self, grads: Any) -> None:
        m = self.m
        if self.convention == "average":
            before = self.buffers or [np.zeros_like(g) for g in grads]
            self.buffers = [m * b + (1 - m) * g for b, g in zip(before, grads, strict=True)]
            self.inner.step([b.copy() for b in self.buffers])
            return
        if self.buffers is None:
            self.buffers = [g.copy() for g in grads]
        else:
            self.buffers = [m * b + g for b, g in zip(self.buffers, grads, strict=True)]
        self.inner.step([g + m * b for g, b in zip(grads, self.buffers, strict=True)])

    def averages(self) -> list[Any]:
        return self.inner.averages()


MOMENTUM = {"lr": 0.05, "t0": 5, "lambd": 0.01, "momentum": 0.9}


@pytest.mark.parametrize(
    ("convention", "numerics", "named"),
    [("average", "torch", "the torch profile with momentum as an average (buf = m*buf + (1 - m)*g, from 0)"),
     ("nesterov", "numpy", "the numpy profile with Nesterov momentum (g + m*buf)")],
)  # fmt: skip
def test_another_momentum_convention_is_diagnosed_by_name(convention: str, numerics: str, named: str) -> None:
    """Nesterov's in the numpy profile: its ``g + m*buf`` is one rounding where a profile fuses, and
    NumPy cannot fuse."""
    factory = functools.partial(OtherMomentum, convention=convention, numerics=numerics)
    user = ExternalImplementation(factory, numerics, style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == f"reference-{numerics}")
    scenario = Scenario("diagnosed-momentum", "random-stream", "float64", MOMENTUM, 12, size=16, seed=3)
    (comparison,) = run_scenario(scenario, [judge, user], pairs_for(user)[:1]).comparisons
    assert comparison.status == "fails"
    assert comparison.diagnosis == f"matches {named}, bit for bit over all 12 steps"


class ExactCounter:
    """The torch profile with a step counter that does not stop at 2**24: eta and mu after each
    step from the exact count (torch's formulas in binary64, then float32), held in
    ``optimized.ASGD``'s state, whose own float32 counter is overridden."""

    def __init__(self, params: Any, **hyper: Any) -> None:
        self.hyper, self.count = hyper, 0
        self.inner = optimized.ASGD(params, numerics="torch", **hyper)

    def step(self, grads: Any) -> None:
        self.inner.step(grads)
        self.count += 1
        h, count = self.hyper, self.count
        saved = self.inner.state_dict()
        for entry in saved["state"].values():
            entry["eta"] = np.float32(h["lr"] / ((1 + h["lambd"] * h["lr"] * count) ** h["alpha"]))
            entry["mu"] = np.float32(1 / max(1, count - h["t0"]))
        self.inner.load_state_dict(saved)

    def averages(self) -> list[Any]:
        return self.inner.averages()

    def state_dict(self) -> dict[str, Any]:
        saved = self.inner.state_dict()
        for entry in saved["state"].values():
            entry["step"] = self.count
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.count = int(next(iter(saved["state"].values()))["step"])
        self.inner.load_state_dict(saved)


def test_a_step_counter_that_does_not_freeze_is_diagnosed_by_name() -> None:
    """Two steps before torch's float32 counter stops at 2**24, then six past it."""
    user = ExternalImplementation(ExactCounter, "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    hyper = {"lr": 0.01, "t0": LATE_START - 10}
    scenario = Scenario(
        "diagnosed-late", "random-stream", "float32", hyper, 8, size=16, seed=4, start_step=LATE_START
    )
    (comparison,) = run_scenario(scenario, [judge, user], pairs_for(user)[:1]).comparisons
    assert comparison.status == "fails"
    assert (
        comparison.diagnosis
        == "matches the torch profile with an exact step counter, bit for bit over all 8 steps"
    )


def test_a_clock_that_differs_is_shown_on_both_sides() -> None:
    """The failure line of a clock gives the two counts (a float32 one with its bits), no element
    and no ULP figure (a clock has neither)."""
    user = ExternalImplementation(ExactCounter, "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    hyper = {"lr": 0.01, "t0": LATE_START - 10}
    scenario = Scenario("late", "random-stream", "float32", hyper, 4, size=16, seed=4, start_step=LATE_START)
    (comparison,) = run_scenario(scenario, [judge, user], pairs_for(user)[:1], diagnose=False).comparisons
    assert (
        "first at step 3 in the step of theta: 16777216 (0x4b800000) vs 16777217;" in comparison.reason + ";"
    )
    assert comparison.first_divergence_values == ["16777216 (0x4b800000)", "16777217"]


def test_the_diagnosis_runs_in_trajectory_mode_too() -> None:
    """With --trajectory no reference judges in lockstep, but the diagnosis still does."""
    user = ExternalImplementation(without("weight_decay", 0.0), "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    (comparison,) = run_scenario(
        SCENARIO, [judge, user], pairs_for(user)[:1], checking=Checking(lockstep=False)
    ).comparisons
    assert (comparison.mode, comparison.status) == ("trajectory", "fails")
    assert (
        comparison.diagnosis
        == "matches the torch profile with weight_decay ignored, bit for bit over all 20 steps"
    )


def test_a_match_on_sampled_values_says_so() -> None:
    """A tensor of 40,000 values is sampled in lockstep: a match there is said to be on sampled values."""
    user = ExternalImplementation(without("lambd", 0.0), "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    scenario = Scenario(
        "sampled", "random-stream", "float32", {"lr": 0.05, "t0": 1, "lambd": 0.01}, 2, size=40_000, seed=5
    )
    (comparison,) = run_scenario(scenario, [judge, user], pairs_for(user)[:1]).comparisons
    assert comparison.diagnosis == (
        "matches the torch profile with lambd ignored, bit for bit over all 2 steps (on sampled values of its large tensors)"
    )


def test_a_near_miss_leaves_the_clocks_of_a_tensor_without_a_gradient_as_they_were() -> None:
    """No gradient, no step: the other counter's near miss does not rewrite a count the profile's
    format cannot hold (16777217 in float32)."""
    theta = np.linspace(-1, 1, 8, dtype=np.float32)
    scenario = Scenario("still", "random-stream", "float32", {"lr": 0.01}, 1, size=8, seed=0)
    variant = next(v for v in near_misses("torch") if v.counter == "exact" and v.numerics is None)
    judge = ReferenceJudge("torch", scenario, [theta], full_coverage=True, variant=variant)
    clocks = (16_777_217, np.float32(0.001), np.float32(0.5))
    held = Input(None, theta.copy(), theta.copy(), None, None, clocks)
    (output,) = judge.outputs(1, [0.01], [held])
    assert output.clocks == clocks and output.theta.tobytes() == theta.tobytes()
