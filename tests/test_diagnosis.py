"""Diagnosis (conformance.diagnosis): a wrong implementation is named by the near miss that
reproduces it bit for bit, in the failure's reason and in results.json's ``diagnosis``."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

import optimized
from conformance.diagnosis import near_misses
from conformance.external import ExternalImplementation, pairs_for
from conformance.implementations import IMPLEMENTATIONS
from conformance.runner import run_scenario
from conformance.scenarios import Scenario
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
     "the torch profile with eta and mu kept in binary64 (an exact step counter)"),
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
        assert len(names) == len(set(names)) == 10
        assert f"the {profile} profile" not in names
        assert any("fused multiply-adds" in name for name in names)
        assert any("kept in binary" in name for name in names)
