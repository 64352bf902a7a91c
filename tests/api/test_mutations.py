"""Mutation meta-test: each property must fail on an implementation broken in the way it guards.

A mutant is the optimized ASGD (NumPy kernel) with one deliberate fault in its engine. Each property test is run against its mutant
(generation only, no shrinking) and must fail; run against the real implementations, the same
tests pass elsewhere in the suite.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings

from optimized.fma import fused_multiply_add
from optimized.hyperparameters import Hyperparameters
from optimized.plan import Task
from tests.api import test_api, test_properties
from tests.implementations import OPTIMIZED

_calls = itertools.count()

Engine = OPTIMIZED["numpy"]


class TaskMutant(Engine):
    """The optimized ASGD whose backend receives tasks changed by ``mutate`` (one fault per subclass)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        backend, mutate = self._backend, self.mutate

        class Mutated:
            name, packs = backend.name, backend.packs

            def run(self, tasks: Sequence[Task]) -> None:
                backend.run([mutate(task) for task in tasks])

        self._backend = Mutated()

    def mutate(self, task: Task) -> Task:
        raise NotImplementedError


def with_scalars(task: Task, **changes: Any) -> Task:
    return dataclasses.replace(task, scalars=dataclasses.replace(task.scalars, **changes))


class IgnoresMaximize(TaskMutant):
    def mutate(self, task: Task) -> Task:
        return with_scalars(task, maximize=False)


class FusesWeightDecay(TaskMutant):
    """Rounds line 3 once in the numpy profile, as the torch profile does."""

    def mutate(self, task: Task) -> Task:
        s = task.scalars
        if not s.weight_decay or s.fused:
            return task
        real = task.theta.dtype
        wd = real.type(s.weight_decay)
        if real == np.float16:  # a float16 product and sum are exact in float64: one rounding back
            with np.errstate(all="ignore"):
                fused = (task.grad.astype(np.float64) + float(wd) * task.theta.astype(np.float64)).astype(
                    real
                )
        else:  # float32 and float64: an exact fused multiply-add
            fused = fused_multiply_add(float(wd), task.theta, task.grad, np.empty_like(task.grad))
        return dataclasses.replace(with_scalars(task, weight_decay=0.0), grad=fused)


class UpdatesWithZeroLr(TaskMutant):
    def mutate(self, task: Task) -> Task:
        return with_scalars(task, eta=1e-3) if task.scalars.eta == 0 else task


class DecaysWithoutLambd(TaskMutant):
    def mutate(self, task: Task) -> Task:
        return with_scalars(task, decay=1 - 0.5 * task.scalars.eta) if task.scalars.decay == 1 else task


class Nondeterministic(TaskMutant):
    def mutate(self, task: Task) -> Task:
        if next(_calls) % 2 and task.theta.size:
            task.theta.view(np.uint8)[0] ^= 1
        return task


class ScheduleMutant(Engine):
    """The optimized ASGD with each group's hyperparameters replaced by ``schedule_class``'s."""

    schedule_class: type[Hyperparameters] = Hyperparameters

    def _group_hyperparameters(self, group_index: int) -> Hyperparameters:
        hyper = super()._group_hyperparameters(group_index)
        fields = {f.name: getattr(hyper, f.name) for f in dataclasses.fields(hyper)}
        return self.schedule_class(**{**fields, **self.changes(hyper)})

    def changes(self, hyper: Hyperparameters) -> dict[str, Any]:
        return {}


class AveragesFromTheStart(ScheduleMutant):
    def changes(self, hyper: Hyperparameters) -> dict[str, Any]:
        return {"t0": min(hyper.t0, 0.0)}


class MuOffByOneSchedule(Hyperparameters):
    __slots__ = ()

    def schedule(self, step: int | float) -> tuple[float, float]:
        eta, _ = super().schedule(step)
        return eta, 1 / max(1, step - self.t0 + 1)


class MuOffByOne(ScheduleMutant):
    schedule_class = MuOffByOneSchedule


class EtaWithoutAlphaSchedule(Hyperparameters):
    __slots__ = ()

    def schedule(self, step: int | float) -> tuple[float, float]:
        _, mu = super().schedule(step)
        return self.lr / (1 + self.lambd * self.lr * step), mu


class EtaIgnoresAlpha(ScheduleMutant):
    schedule_class = EtaWithoutAlphaSchedule


class AveragesInFloat64(Engine):
    def averages(self) -> list[np.ndarray]:
        return [a.astype(np.complex128 if np.iscomplexobj(a) else np.float64) for a in super().averages()]


class KeepsABuffer(Engine):
    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        loss = super().step(grads, closure=closure)
        for state in self.state.values():
            if state.momentum_buffer is None:
                state.momentum_buffer = np.zeros_like(state.ax)
        return loss


class ForgetsAveragesOnSave(Engine):
    def state_dict(self) -> dict[str, Any]:
        saved = super().state_dict()
        for entry in saved["state"].values():
            entry["ax"] = np.zeros_like(entry["ax"])
        return saved


class TouchesSkippedParameters(Engine):
    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        if grads is not None:
            grads = [
                np.zeros_like(p) if g is None else g for g, p in zip(grads, self._parameters(), strict=True)
            ]
        return super().step(grads, closure=closure)


MUTATIONS: list[tuple[Callable[..., None], type, str, dict[str, Any]]] = [
    (test_properties.test_maximize_equals_minimizing_the_negated_gradient, IgnoresMaximize, "maximize ignored", {}),
    (test_properties.test_weight_decay_equals_adding_it_to_the_gradient_by_hand, FusesWeightDecay, "line 3 fused in the numpy profile", {}),
    (test_properties.test_zero_lr_leaves_theta_unchanged, UpdatesWithZeroLr, "a step taken with lr = 0", {}),
    (test_properties.test_zero_lambd_and_zero_gradients_leave_theta_unchanged, DecaysWithoutLambd, "decay applied with lambd = 0", {}),
    (test_properties.test_t0_inf_keeps_averages_equal_to_parameters, AveragesFromTheStart, "t0 ignored", {}),
    (test_properties.test_averages_are_the_mean_of_iterates_t0_plus_2_on, MuOffByOne, "mu off by one step", {}),
    (test_properties.test_eta_and_mu_follow_their_closed_forms, EtaIgnoresAlpha, "eta without alpha", {"numerics": "numpy"}),
    (test_properties.test_determinism, Nondeterministic, "a bit flips on every other call", {}),
    (test_properties.test_dtype_and_shape_are_preserved, AveragesInFloat64, "averages widened to float64", {}),
    (test_api.test_momentum_zero_keeps_no_buffer, KeepsABuffer, "a buffer kept without momentum", {}),
    (test_api.test_state_dict_resume_reproduces_the_uninterrupted_run, ForgetsAveragesOnSave, "ax dropped from state_dict", {"numerics": "numpy"}),
    (test_api.test_none_gradient_leaves_parameter_and_state_untouched, TouchesSkippedParameters, "None treated as zero", {}),
]  # fmt: skip

FIND_ONLY = settings(
    max_examples=200, phases=[Phase.generate], database=None, print_blob=False, report_multiple_bugs=False
)


def run_property(prop: Callable[..., None], asgd_class: type, arguments: dict[str, Any]) -> None:
    """``prop`` on ``asgd_class``; a Hypothesis property is built afresh from its own function and
    strategies under :data:`FIND_ONLY` (generation only), the suite's property left as it is."""
    strategies = getattr(prop, "given_strategies", None)
    if strategies is not None:
        prop = FIND_ONLY(given(**strategies)(prop.hypothesis.inner_test))  # type: ignore[attr-defined]
    prop(asgd_class=asgd_class, **arguments)


IDS = [m[2] for m in MUTATIONS]


@pytest.mark.parametrize(("prop", "mutant", "fault", "arguments"), MUTATIONS, ids=IDS)
def test_the_property_catches_its_mutant(
    prop: Callable[..., None], mutant: type, fault: str, arguments: dict[str, Any]
) -> None:
    with pytest.raises(AssertionError):  # a failed check, not a crash of the test itself
        run_property(prop, mutant, arguments)


@pytest.mark.parametrize(("prop", "mutant", "fault", "arguments"), MUTATIONS, ids=IDS)
def test_the_property_passes_on_the_engine_it_guards(
    prop: Callable[..., None], mutant: type, fault: str, arguments: dict[str, Any]
) -> None:
    """The control: the same call on the unmutated engine passes, so the mutant's failure is its fault."""
    run_property(prop, Engine, arguments)
