"""A stateful test: ``optimized.ASGD`` and ``reference.ASGD``, two implementations that share no code,
receive the same random program of API calls and must agree bit for bit after every one; in the
torch profiles ``torch.optim.ASGD`` on the path the profile models takes part too, for as long as
the program stays within torch's API (no momentum, no parameter replaced in a group)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import optimized
import reference
from reference import DEFAULTS
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED
from tests.optimized.test_optimized_matches_reference import assert_same_state
from tests.strategies import arrays, dtypes, hyperparameters_for, shapes

try:
    import torch
except ImportError:  # the torch profiles are then checked against the reference alone
    torch = None  # type: ignore[assignment]
TORCH_PATH = {"torch": "for-loop", "torch-foreach": "foreach"}


def snapshot(params: list[np.ndarray], optimizer: Any) -> tuple[Any, ...]:
    """Every bit of the parameters and the state, and the groups' values."""
    saved = optimizer.state_dict()
    state = sorted(
        (index, key, value.tobytes() if isinstance(value, np.ndarray) else repr(value))
        for index, entry in saved["state"].items()
        for key, value in entry.items()
    )
    return [p.tobytes() for p in params], state, repr(saved["param_groups"])


def bad_call(fault: str, params: list[np.ndarray], optimizer: Any, index: int) -> None:
    """One refused call of kind ``fault`` on ``params[index]`` (or its state)."""
    grads: list[Any] = [np.zeros_like(p) for p in params]
    if fault == "shape" or (fault == "overlap" and params[index].size == 0):
        grads[index] = np.zeros((*params[index].shape, 2), params[index].dtype)
    elif fault == "dtype":
        other = np.float32 if params[index].dtype != np.float32 else np.float64
        grads[index] = np.zeros(params[index].shape, other)
    elif fault == "overlap":
        grads[index] = params[index]  # the parameter itself
    elif fault == "length":
        grads.append(None)
    else:  # a checkpoint with a negative eta (or, before any state, a group with a negative lr)
        saved = optimizer.state_dict()
        if saved["state"]:
            next(iter(saved["state"].values()))["eta"] = -1.0
        else:
            saved["param_groups"][0]["lr"] = -1.0
        optimizer.load_state_dict(saved)
        return
    optimizer.step(grads)


def torch_hyper(hyper: dict[str, Any]) -> dict[str, Any]:
    """This API's hyperparameters as ``torch.optim.ASGD`` takes them (it has no momentum)."""
    return {k: v for k, v in hyper.items() if k not in ("momentum", "numerics")}


def rebuilt(asgd_class: Any, optimizer: Any) -> Any:
    """A fresh optimizer over the same parameters and groups, loaded from ``optimizer``'s state_dict."""
    groups = [{"params": list(g["params"]), **{k: g[k] for k in DEFAULTS}} for g in optimizer.param_groups]
    fresh = asgd_class(groups, **optimizer.defaults)  # a group added later takes the same defaults
    fresh.load_state_dict(optimizer.state_dict())
    return fresh


class OptimizedMatchesReference(RuleBasedStateMachine):
    implementation: Any = OPTIMIZED["numba"]

    @initialize(numerics=st.sampled_from(["numpy", "torch", "torch-foreach"]), data=st.data())
    def build(self, numerics: str, data: st.DataObject) -> None:
        self.numerics = numerics
        self.dtype = data.draw(dtypes(numerics), label="dtype")
        values = data.draw(
            st.lists(arrays(self.dtype, data.draw(shapes(2, 3))), min_size=1, max_size=3), label="params"
        )
        hyper = data.draw(hyperparameters_for(numerics), label="hyperparameters")
        self.fast_params = [v.copy() for v in values]
        self.spec_params = [v.copy() for v in values]
        self.fast = self.implementation(self.fast_params, numerics=numerics, **hyper)
        self.spec = reference.ASGD(self.spec_params, numerics=numerics, **hyper)
        self.torch: Any = None
        if numerics in TORCH_PATH and hyper["momentum"] == 0 and torch is not None:
            self.tensors = [torch.tensor(v.copy()) for v in values]
            self.torch = torch.optim.ASGD(
                self.tensors, foreach=numerics == "torch-foreach", **torch_hyper(hyper)
            )

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        grads = [
            data.draw(st.one_of(st.none(), arrays(self.dtype, p.shape)), label="grad")
            for p in self.spec_params
        ]
        self.fast.step([None if g is None else g.copy() for g in grads])
        self.spec.step(grads)
        if self.torch is not None:
            for tensor, grad in zip(self.tensors, grads, strict=True):
                tensor.grad = None if grad is None else torch.tensor(grad.copy())
            self.torch.step()

    @rule(set_to_none=st.booleans())
    def zero_grad(self, set_to_none: bool) -> None:
        self.fast.zero_grad(set_to_none)
        self.spec.zero_grad(set_to_none)

    @rule()
    def save_and_load_into_fresh_optimizers(self) -> None:
        self.fast = rebuilt(self.implementation, self.fast)
        self.spec = rebuilt(reference.ASGD, self.spec)
        if self.torch is not None:
            fresh = torch.optim.ASGD([dict(g) for g in self.torch.param_groups], **self.torch.defaults)
            fresh.load_state_dict(self.torch.state_dict())
            self.torch = fresh

    @precondition(lambda self: len(self.spec_params) < 5)
    @rule(data=st.data())
    def add_param_group(self, data: st.DataObject) -> None:
        value = data.draw(arrays(self.dtype, data.draw(shapes(2, 3))), label="new param")
        hyper = data.draw(hyperparameters_for(self.numerics), label="group hyperparameters")
        self.fast_params.append(value.copy())
        self.spec_params.append(value.copy())
        self.fast.add_param_group({"params": [self.fast_params[-1]], **hyper})
        self.spec.add_param_group({"params": [self.spec_params[-1]], **hyper})
        if self.torch is not None and hyper["momentum"] == 0:
            self.tensors.append(torch.tensor(value.copy()))
            self.torch.add_param_group({"params": [self.tensors[-1]], **torch_hyper(hyper)})
        else:
            self.torch = None  # momentum: beyond torch's ASGD

    @rule(data=st.data())
    def replace_a_parameter(self, data: st.DataObject) -> None:
        """``param_groups[g]["params"][i] = new``: the new array is what the next step updates."""
        index = data.draw(st.integers(0, len(self.spec_params) - 1), label="replaced parameter")
        value = self.spec_params[index].copy()
        value += 1
        self.torch = None  # torch keys state by tensor, this API by position: they part here
        for params, optimizer in ((self.fast_params, self.fast), (self.spec_params, self.spec)):
            old = params[index]
            params[index] = value.copy()
            for group in optimizer.param_groups:
                for position, parameter in enumerate(group["params"]):
                    if parameter is old:
                        group["params"][position] = params[index]

    @rule(data=st.data(), fault=st.sampled_from(["shape", "dtype", "overlap", "length", "negative eta"]))
    def refused_call(self, data: st.DataObject, fault: str) -> None:
        """A call both implementations must refuse: the same exception type, and nothing changed."""
        index = data.draw(st.integers(0, len(self.spec_params) - 1), label="bad entry")
        refusals = []
        for params, optimizer in ((self.fast_params, self.fast), (self.spec_params, self.spec)):
            before = snapshot(params, optimizer)
            with pytest.raises((ValueError, TypeError)) as refused:
                bad_call(fault, params, optimizer, index)
            refusals.append(refused.type)
            assert snapshot(params, optimizer) == before, f"{fault}: refused, but something changed"
        assert refusals[0] is refusals[1], f"{fault}: {refusals[0].__name__} != {refusals[1].__name__}"

    @rule(lr=st.one_of(st.just(0.0), st.floats(1e-4, 1.0)), data=st.data())
    def change_lr(self, lr: float, data: st.DataObject) -> None:
        group = data.draw(st.integers(0, len(self.spec.param_groups) - 1), label="group")
        self.fast.param_groups[group]["lr"] = lr
        self.spec.param_groups[group]["lr"] = lr
        if self.torch is not None:
            self.torch.param_groups[group]["lr"] = lr

    @precondition(lambda self: hasattr(self, "spec"))  # from the initialization on
    @invariant()
    def agree_bit_for_bit(self) -> None:
        for index, (a, b) in enumerate(zip(self.fast_params, self.spec_params, strict=True)):
            assert_same_bits(a, b, f"parameter {index}")
        for index, (a, b) in enumerate(zip(self.fast.averages(), self.spec.averages(), strict=True)):
            assert_same_bits(a, b, f"average {index}")
        assert_same_state(self.fast.state_dict(), self.spec.state_dict(), "state_dict")
        if self.torch is not None:
            for index, (tensor, b) in enumerate(zip(self.tensors, self.spec_params, strict=True)):
                assert_same_bits(tensor.numpy(), b, f"torch: parameter {index}")
                state = self.torch.state.get(tensor, {})
                if "ax" in state:
                    assert_same_bits(
                        state["ax"].numpy(), self.spec.averages()[index], f"torch: average {index}"
                    )


STATEFUL = settings(stateful_step_count=12)  # example counts come from the ci / thorough profile
TestNumbaMatchesReference = OptimizedMatchesReference.TestCase
TestNumbaMatchesReference.settings = STATEFUL


class NumpyMatchesReference(OptimizedMatchesReference):
    implementation = OPTIMIZED["numpy"]


TestNumpyMatchesReference = NumpyMatchesReference.TestCase
TestNumpyMatchesReference.settings = STATEFUL


class PlantedDivergence(optimized.ASGD):
    """Wrong on purpose: from the third step on, the first parameter's first bit flips."""

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        loss = super().step(grads, closure=closure)
        self.planted_steps = getattr(self, "planted_steps", 0) + 1
        first = self.param_groups[0]["params"][0]
        if self.planted_steps >= 3 and first.size:
            first.reshape(-1).view(np.uint8)[0] ^= 1
        return loss


class PlantedMachine(OptimizedMatchesReference):
    implementation = PlantedDivergence


def test_the_machine_finds_a_planted_divergence() -> None:
    with pytest.raises(AssertionError, match="parameter 0"):
        # Generation only: the point is that the machine finds it, not how far Hypothesis shrinks it.
        found = settings(STATEFUL, max_examples=200, print_blob=False, database=None, phases=[Phase.generate])
        run_state_machine_as_test(PlantedMachine, settings=found)


class TorchMaximizesInstead(OptimizedMatchesReference):
    """Wrong on purpose: torch is given the opposite ``maximize``."""

    @initialize(numerics=st.sampled_from(["torch", "torch-foreach"]), data=st.data())
    def build(self, numerics: str, data: st.DataObject) -> None:
        super().build(numerics, data)
        if self.torch is not None:
            for group in self.torch.param_groups:
                group["maximize"] = not group["maximize"]


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_the_machine_holds_torch_to_the_same_bits() -> None:
    with pytest.raises(AssertionError, match="torch: "):
        found = settings(STATEFUL, max_examples=300, print_blob=False, database=None, phases=[Phase.generate])
        run_state_machine_as_test(TorchMaximizesInstead, settings=found)
