"""``ASGD(numerics="torch")`` reproduces ``torch.optim.ASGD(foreach=False)`` bit for bit.

Both implementations, the reference (each case's own length, at least 25 steps) and the optimized
one (at least 200 steps), are compared with torch as bit patterns after every step: parameters and
averages, and the scalar state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from reference import ASGD
from tests.assertions import assert_same_bits
from tests.drivers import run_numpy_optimizer, run_torch
from tests.streams import Problem

torch = pytest.importorskip("torch")

AVERAGING = {"lr": 0.05, "t0": 10}  # averaging starts with iterate 12 of 60

TORCH_CASES = [
    Problem("float32-averaging", "float32", ((7, 5),), ({**AVERAGING, "lambd": 1e-3, "alpha": 0.6},)),
    Problem("float64-averaging-wd-maximize", "float64", ((13,),), ({**AVERAGING, "weight_decay": 0.1, "maximize": True},)),
    Problem("complex64-averaging-wd-lambd", "complex64", ((3, 3),), ({"lr": 0.02, "t0": 5, "weight_decay": 0.1, "lambd": 0.1},)),
    Problem("float32-0d-t0-zero", "float32", ((),), ({"lr": 0.02, "t0": 0},)),
    Problem("float32-odd-shapes", "float32", ((3, 1, 5), (1,), (17,)), ({**AVERAGING, "alpha": 1.5, "lambd": 0.5},)),
    Problem("float32-strided", "float32", ((4, 9), (11,)), ({"lr": 0.03, "t0": 3.5, "weight_decay": 0.01},), strided=True),
    Problem("complex64-strided-maximize", "complex64", ((5, 3),), ({"lr": 0.01, "t0": 1, "maximize": True},), strided=True),
    Problem("float64-large-lambd-alpha", "float64", ((9, 2),), ({"lr": 0.3, "t0": 20, "lambd": 2.0, "alpha": 2.0},)),
    Problem("float32-t0-inf", "float32", ((6,),), ({"lr": 0.1, "t0": float("inf")},)),
    Problem(
        "two-groups", "float32", ((4, 4), (5,), (3,)),
        ({"lr": 0.05, "t0": 8, "weight_decay": 0.2}, {"lr": 0.01, "t0": 30, "lambd": 0.02, "maximize": True}),
    ),
    Problem("float32-none-gradients", "float32", ((8,), (3,)), (AVERAGING,), skip_every=3),
    Problem("float32-non-finite", "float32", ((10,),), (AVERAGING,), non_finite=True),
    Problem("float64-large-gradients", "float64", ((12,),), (AVERAGING,), gradient_scale=1e300),
    # torch's own ASGD test configurations (common_optimizers.optim_inputs_func_asgd).
    Problem("torch-default", "float32", ((6, 3),), ({"lr": 1e-2},), steps=25),
    Problem("torch-lambd", "float64", ((6, 3),), ({"lr": 1e-2, "lambd": 0.1},), steps=25),
    Problem("torch-lr", "float32", ((6, 3),), ({"lr": 0.02},), steps=25),
    Problem("torch-t0", "float32", ((6, 3),), ({"lr": 1e-2, "t0": 100},), steps=25),
    Problem("torch-maximize", "float64", ((6, 3),), ({"lr": 1e-2, "maximize": True},), steps=25),
    Problem("torch-weight-decay", "float32", ((6, 3),), ({"lr": 1e-2, "weight_decay": 0.1},), steps=25),
    Problem("torch-wd-maximize", "complex64", ((6, 3),), ({"lr": 1e-2, "weight_decay": 0.1, "maximize": True},)),
]  # fmt: skip


OPTIMIZED_STEPS = 200


def assert_matches_torch_at_every_step(asgd_class: Any, problem: Problem) -> None:
    """The torch profile's parameters and averages equal torch's for-loop path's after every step."""
    ours = run_numpy_optimizer(asgd_class, problem, numerics="torch")
    theirs = run_torch(problem, foreach=False)
    for step, ((params, averages), (torch_params, torch_averages)) in enumerate(
        zip(ours, theirs, strict=True), 1
    ):
        for index, (p, tp, a, ta) in enumerate(
            zip(params, torch_params, averages, torch_averages, strict=True)
        ):
            assert_same_bits(p, tp, f"{problem.name}: step {step}, parameter {index}")
            assert_same_bits(a, ta, f"{problem.name}: step {step}, ax {index}")


@pytest.mark.parametrize("problem", TORCH_CASES, ids=lambda p: p.name)
def test_torch_profile_matches_torch_forloop_at_every_step(problem: Problem, asgd_class: Any) -> None:
    if asgd_class is not ASGD:
        problem = dataclasses.replace(problem, steps=max(problem.steps, OPTIMIZED_STEPS))
    assert_matches_torch_at_every_step(asgd_class, problem)


def test_scalar_state_matches_torch(asgd_class: Any) -> None:
    """``step``, ``eta`` and ``mu`` are torch's float32 values, exported as ``numpy.float32``."""
    problem = TORCH_CASES[0]
    parameters = problem.initial_parameters()
    ours = asgd_class(parameters, numerics="torch", **problem.groups[0])
    tensor = torch.from_numpy(problem.initial_parameters()[0]).requires_grad_()
    theirs = torch.optim.ASGD([tensor], foreach=False, **problem.groups[0])
    for gradients in problem.gradients():
        ours.step(gradients)
        tensor.grad = torch.from_numpy(gradients[0])
        theirs.step()
        exported, torch_state = ours.state_dict()["state"][0], theirs.state[tensor]
        for key in ("step", "eta", "mu"):
            assert isinstance(exported[key], np.float32)
            assert exported[key].tobytes() == torch_state[key].numpy().tobytes(), key


def test_step_counter_freezes_at_2_pow_24_like_torch(asgd_class: Any) -> None:
    """torch's float32 step stops at 2**24, and with it eta and mu; the torch profile does the same."""
    start = 2**24 - 2
    hyper = {"lr": 0.1, "t0": 2**24 - 10, "lambd": 1e-4}
    values = np.array([1.0, -2.0, 3.0], np.float32)
    gradient = np.array([0.5, 0.25, -1.0], np.float32)

    tensor = torch.from_numpy(values.copy()).requires_grad_()
    theirs = torch.optim.ASGD([tensor], foreach=False, **hyper)
    tensor.grad = torch.zeros(3)
    theirs.step()  # creates the state, which is then replaced by the late one
    late = {
        "step": torch.tensor(float(start)),
        "eta": torch.tensor(0.01),
        "mu": torch.tensor(0.125),
        "ax": torch.from_numpy(values.copy()),
    }
    theirs.state[tensor] = {k: v.clone() for k, v in late.items()}
    tensor.data.copy_(torch.from_numpy(values))

    parameter = values.copy()
    ours = asgd_class([parameter], numerics="torch", **hyper)
    ours.load_state_dict(
        {
            "state": {
                0: {k: v.numpy().copy() if k == "ax" else np.float32(v.item()) for k, v in late.items()}
            },
            "param_groups": [{**ours.state_dict()["param_groups"][0]}],
        }
    )

    for _ in range(4):
        tensor.grad = torch.from_numpy(gradient.copy())
        theirs.step()
        ours.step([gradient.copy()])
        assert_same_bits(parameter, tensor.detach().numpy(), "parameter")
        assert_same_bits(ours.state[0].ax, theirs.state[tensor]["ax"].numpy(), "ax")
    assert ours.state[0].step == theirs.state[tensor]["step"].item() == 2**24
    assert ours.state[0].eta == theirs.state[tensor]["eta"].item()


def test_torch_profile_refuses_float16(asgd_class: Any) -> None:
    with pytest.raises(TypeError, match=r"params\[0\] has dtype float16; supported dtypes: float32"):
        asgd_class([np.zeros(3, np.float16)], numerics="torch")


def test_a_weight_decay_that_rounds_to_zero_still_adds_zero_times_theta(asgd_class: Any) -> None:
    """torch decides ``weight_decay != 0`` on the hyperparameter: 1e-46 rounds to 0 in float32, and
    0 * inf is NaN where a skipped line 3 would leave inf."""
    values = np.array([np.inf, 1.0, -2.0, 0.0], np.float32)
    gradient = np.array([1.0, -0.0, 0.5, -0.0], np.float32)
    tensor = torch.from_numpy(values.copy()).requires_grad_()
    theirs = torch.optim.ASGD([tensor], lr=0.1, weight_decay=1e-46, foreach=False)
    tensor.grad = torch.from_numpy(gradient.copy())
    theirs.step()
    parameter = values.copy()
    asgd_class([parameter], lr=0.1, weight_decay=1e-46, numerics="torch").step([gradient.copy()])
    assert np.isnan(parameter[0])
    assert_same_bits(parameter, tensor.detach().numpy())


@pytest.mark.parametrize("shape", [(), (1,), (3, 2)])
def test_a_hand_over_of_any_shape_continues_torch_bit_for_bit(shape: tuple[int, ...]) -> None:
    import optimized

    rng = np.random.default_rng(5)
    start = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(12)]
    straight = torch.from_numpy(start.copy()).requires_grad_()
    uninterrupted = torch.optim.ASGD([straight], lr=0.05, t0=2, foreach=False)
    handed = torch.from_numpy(start.copy()).requires_grad_()
    first = torch.optim.ASGD([handed], lr=0.05, t0=2, foreach=False)
    for step, g in enumerate(grads):
        straight.grad = torch.from_numpy(g.copy())
        uninterrupted.step()
        if step < 6:
            handed.grad = torch.from_numpy(g.copy())
            first.step()
    theta = handed.detach().numpy().copy()
    ours = optimized.ASGD([theta], numerics="torch")
    ours.load_state_dict(optimized.state_dict_from_torch(first.state_dict()))
    for g in grads[6:]:
        ours.step([g.copy()])
    assert_same_bits(theta, straight.detach().numpy(), "parameter")
    assert_same_bits(ours.averages()[0], uninterrupted.state[straight]["ax"].numpy(), "average")


def test_a_float64_torch_state_is_refused_by_the_hand_over() -> None:
    import optimized

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        tensor = torch.zeros(3, requires_grad=True)
        theirs = torch.optim.ASGD([tensor], foreach=False)
        tensor.grad = torch.ones(3)
        theirs.step()
    finally:
        torch.set_default_dtype(previous)
    with pytest.raises(ValueError, match=r"torch state 0\['step'\] is torch.float64 \(torch's default dtype"):
        optimized.state_dict_from_torch(theirs.state_dict())


NUMPY_SCALARS = [
    ("float32", {"lr": np.float32(0.05), "t0": 3}),
    ("float64", {"lr": 0.05, "lambd": np.float32(1e-3), "t0": 4}),
    ("float32", {"lr": 0.05, "lambd": 0.1, "alpha": np.float32(0.6), "t0": 2}),
    ("complex64", {"lr": 0.05, "t0": np.float32(2.0), "weight_decay": np.float32(0.01)}),
    ("float64", {"lr": np.float16(0.05), "lambd": 0.01, "t0": 2}),
    ("float32", {"lr": np.float64(0.05), "t0": 2, "maximize": True}),
]


@pytest.mark.parametrize(("dtype", "hyper"), NUMPY_SCALARS, ids=lambda v: str(v))
def test_numpy_scalar_hyperparameters_follow_torchs_arithmetic(
    dtype: str, hyper: dict[str, Any], asgd_class: Any
) -> None:
    """torch's Python schedule computes with a NumPy scalar hyperparameter in NumPy's arithmetic
    (a float32 ``lr`` makes eta a float32 computation); the torch profile does the same."""
    assert_matches_torch_at_every_step(
        asgd_class, Problem("numpy-scalars", dtype, ((7,), (2, 3)), (hyper,), steps=30)
    )
