"""Mutation meta-test: each property must fail on an implementation broken in the way it guards.

A mutant is the reference with one deliberate fault. Each property test is run against its mutant
(generation only, no shrinking) and must fail; run against the real implementations, the same
tests pass elsewhere in the suite.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings

import reference
from tests import test_api, test_properties

_calls = itertools.count()


class IgnoresMaximize(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, {**hyper, "maximize": False}, numerics)


class FusesWeightDecay(reference.ASGD):
    """Rounds line 3 once in the fast profile, as the torch profile does."""

    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        if hyper["weight_decay"] and not numerics.fused_multiply_add:
            wd = hyper["weight_decay"]
            real = parameter.real.dtype
            with np.errstate(all="ignore"):
                fused = (gradient.reshape(-1).view(real).astype(np.float64) + real.type(wd).astype(np.float64)
                         * parameter.reshape(-1).view(real).astype(np.float64)).astype(real)  # fmt: skip
            gradient, hyper = (
                fused.view(gradient.dtype).reshape(gradient.shape),
                {**hyper, "weight_decay": 0.0},
            )
        super()._update(parameter, gradient, state, hyper, numerics)


class UpdatesWithZeroLr(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        if state.eta == 0:
            state.eta = 1e-3
        super()._update(parameter, gradient, state, hyper, numerics)


class DecaysWithoutLambd(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, {**hyper, "lambd": hyper["lambd"] or 0.5}, numerics)


class AveragesFromTheStart(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, {**hyper, "t0": min(hyper["t0"], 0.0)}, numerics)


class MuOffByOne(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, hyper, numerics)
        state.mu = 1 / max(1, state.step - hyper["t0"] + 1)


class EtaIgnoresAlpha(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, hyper, numerics)
        state.eta = hyper["lr"] / (1 + hyper["lambd"] * hyper["lr"] * state.step)


class Nondeterministic(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, hyper, numerics)
        if next(_calls) % 2 and parameter.size:
            parameter.reshape(-1).view(np.uint8)[0] ^= 1


class AveragesInFloat64(reference.ASGD):
    def averages(self) -> list[np.ndarray]:
        return [a.astype(np.complex128 if np.iscomplexobj(a) else np.float64) for a in super().averages()]


class KeepsABuffer(reference.ASGD):
    def _update(self, parameter: Any, gradient: Any, state: Any, hyper: Any, numerics: Any) -> None:
        super()._update(parameter, gradient, state, hyper, numerics)
        if state.momentum_buffer is None:
            state.momentum_buffer = np.zeros_like(parameter)


class ForgetsAveragesOnSave(reference.ASGD):
    def state_dict(self) -> dict[str, Any]:
        saved = super().state_dict()
        for entry in saved["state"].values():
            entry["ax"] = np.zeros_like(entry["ax"])
        return saved


class TouchesSkippedParameters(reference.ASGD):
    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        if grads is not None:
            grads = [
                np.zeros_like(p) if g is None else g for g, p in zip(grads, self._parameters(), strict=True)
            ]
        return super().step(grads, closure=closure)


MUTATIONS: list[tuple[Callable[..., None], type, str]] = [
    (test_properties.test_maximize_equals_minimizing_the_negated_gradient, IgnoresMaximize, "maximize ignored"),
    (test_properties.test_weight_decay_equals_adding_it_to_the_gradient_by_hand, FusesWeightDecay, "line 3 fused in the fast profile"),
    (test_properties.test_zero_lr_leaves_theta_unchanged, UpdatesWithZeroLr, "a step taken with lr = 0"),
    (test_properties.test_zero_lambd_and_zero_gradients_leave_theta_unchanged, DecaysWithoutLambd, "decay applied with lambd = 0"),
    (test_properties.test_t0_inf_keeps_averages_equal_to_parameters, AveragesFromTheStart, "t0 ignored"),
    (test_properties.test_averages_are_the_mean_of_iterates_t0_plus_2_on, MuOffByOne, "mu off by one step"),
    (test_properties.test_eta_and_mu_follow_their_closed_forms, EtaIgnoresAlpha, "eta without alpha"),
    (test_properties.test_determinism, Nondeterministic, "a bit flips on every other call"),
    (test_properties.test_dtype_and_shape_are_preserved, AveragesInFloat64, "averages widened to float64"),
    (test_api.test_momentum_zero_keeps_no_buffer, KeepsABuffer, "a buffer kept without momentum"),
    (test_api.test_state_dict_resume_reproduces_the_uninterrupted_run, ForgetsAveragesOnSave, "ax dropped from state_dict"),
    (test_api.test_none_gradient_leaves_parameter_and_state_untouched, TouchesSkippedParameters, "None treated as zero"),
]  # fmt: skip

FIND_ONLY = settings(max_examples=200, phases=[Phase.generate], database=None, print_blob=False)


@pytest.mark.parametrize(("prop", "mutant", "fault"), MUTATIONS, ids=[m[2] for m in MUTATIONS])
def test_the_property_catches_its_mutant(prop: Callable[..., None], mutant: type, fault: str) -> None:
    arguments: dict[str, Any] = {"asgd_class": mutant}
    if prop is test_properties.test_eta_and_mu_follow_their_closed_forms:
        arguments["numerics"] = "fast"
    # Hypothesis keeps settings on the test function: swap ours in, and the property's back after.
    own = getattr(prop, "_hypothesis_internal_use_settings", None)
    test = FIND_ONLY(prop) if own is not None else prop
    try:
        with pytest.raises(Exception):  # noqa: B017 - any failure of the property counts
            test(**arguments)
    finally:
        if own is not None:
            prop._hypothesis_internal_use_settings = own  # type: ignore[attr-defined]
