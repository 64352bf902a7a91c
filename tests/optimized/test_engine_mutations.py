"""Faults planted in the optimized engine's own schedule and state are caught by the reference.

Before the reference stood alone, the two implementations shared the code that computes the
schedule, the state and ``load_state_dict``, so a fault there passed every reference-vs-optimized
comparison. Each row here is the optimized ASGD with one such fault; the comparison of
``tests/optimized/test_optimized_matches_reference.py`` (random runs, some resumed from a checkpoint) must
fail on it, and pass on the unmutated engine (the control).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import Phase, given, settings

from optimized.hyperparameters import Hyperparameters
from optimized.plan import StepScalars
from optimized.state import Clock
from tests.implementations import OPTIMIZED
from tests.optimized.test_optimized_matches_reference import assert_runs_agree
from tests.strategies import Run, runs

Engine = OPTIMIZED["numpy"]


class _Schedule(Engine):  # type: ignore[misc,valid-type]
    """The engine with each group's hyperparameters (and so its schedule) of ``hyperparameters``."""

    hyperparameters: type[Hyperparameters] = Hyperparameters

    def _group_hyperparameters(self, group_index: int) -> Hyperparameters:
        hyper = super()._group_hyperparameters(group_index)
        values = {f.name: getattr(hyper, f.name) for f in dataclasses.fields(hyper)}
        return self.hyperparameters(**values)


class _EtaWithoutAlpha(Hyperparameters):
    __slots__ = ()

    def schedule(self, step: int | float) -> tuple[float, float]:
        _, mu = super().schedule(step)
        eta, _ = self.numerics.schedule(step, lr=self.lr, lambd=self.lambd, alpha=1.0, t0=self.t0)
        return eta, mu


class EtaIgnoresAlpha(_Schedule):
    hyperparameters = _EtaWithoutAlpha


class _AveragingOneStepEarly(Hyperparameters):
    __slots__ = ()

    def schedule(self, step: int | float) -> tuple[float, float]:
        eta, _ = super().schedule(step)
        return eta, 1 / max(1, step - self.t0 + 1)


class AveragingStartsOneStepEarly(_Schedule):
    hyperparameters = _AveragingOneStepEarly


class DecayUsesLrForEta(Engine):  # type: ignore[misc,valid-type]
    """Line 5's ``1 - lambd * eta`` with the group's lr in place of the scheduled eta."""

    @staticmethod
    def _scalars(
        hyper: Hyperparameters, clock: Clock
    ) -> tuple[StepScalars, tuple[int | float, float, float]]:
        scalars, after = Engine._scalars(hyper, clock)
        if hyper.numerics.foreach:
            return scalars, after
        return dataclasses.replace(scalars, decay=1 - hyper.lambd * hyper.lr), after


class LoadKeepsTheLr(Engine):  # type: ignore[misc,valid-type]
    """``load_state_dict`` leaves each group's lr as it was instead of the checkpoint's."""

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        lrs = [group["lr"] for group in self.param_groups]
        super()._load_state_dict(state_dict)
        for group, lr in zip(self.param_groups, lrs, strict=True):
            group["lr"] = lr


class LoadResumesTheClockOneStepOn(Engine):  # type: ignore[misc,valid-type]
    """``load_state_dict`` resumes each parameter's step counter one step on."""

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super()._load_state_dict(state_dict)
        clocks = {id(state.clock): state.clock for state in self.state.values()}
        for clock in clocks.values():
            clock.step += 1


MUTANTS: list[tuple[str, type, str]] = [
    ("schedule: eta without alpha", EtaIgnoresAlpha, "torch"),
    ("lambda decay with lr for eta", DecayUsesLrForEta, "numpy"),
    ("averaging starts one step before t0 says", AveragingStartsOneStepEarly, "numpy"),
    ("load_state_dict keeps the lr", LoadKeepsTheLr, "torch-foreach"),
    ("a checkpoint resumes the clock one step on", LoadResumesTheClockOneStepOn, "torch"),
]

FIND_ONLY = settings(
    max_examples=300, phases=[Phase.generate], database=None, print_blob=False, report_multiple_bugs=False
)


def compare_with_the_reference(implementation: type, numerics: str) -> None:
    """The reference-vs-optimized property, on ``implementation``, generation only."""

    @FIND_ONLY
    @given(run=runs(numerics))
    def agrees(run: Run) -> None:
        assert_runs_agree(run, implementation)

    agrees()


@pytest.mark.parametrize(("fault", "mutant", "numerics"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_the_reference_comparison_catches_a_fault_in_the_engine(
    fault: str, mutant: type, numerics: str
) -> None:
    with pytest.raises(AssertionError):  # a failed comparison, not a crash
        compare_with_the_reference(mutant, numerics)


@pytest.mark.parametrize("numerics", sorted({m[2] for m in MUTANTS}))
def test_the_unmutated_engine_passes_the_same_comparison(numerics: str) -> None:
    compare_with_the_reference(Engine, numerics)
