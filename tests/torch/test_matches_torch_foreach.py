"""``ASGD(numerics="torch-foreach")`` reproduces ``torch.optim.ASGD(foreach=True)`` on the CPU bit
for bit.

Both implementations, the reference (short runs of small tensors: it computes one scalar at a time)
and the optimized one on each kernel (long runs that reach the averaging phase, with a tensor large
enough for the vectorized body and its tail), are stepped in lockstep with torch and compared as bit
patterns after every step: parameters, averages, and the scalar state ``step``, ``eta`` and ``mu``.
The comparison is shown to tell torch's two CPU paths apart, and Hypothesis draws runs for both
kernels. η's schedule model, the refused ``alpha=0.5`` and ``rounding.div`` are checked in
``test_foreach_schedule.py``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given

from optimized.hyperparameters import DEFAULTS
from reference import ASGD
from tests.assertions import assert_same_bits
from tests.drivers import TORCH_HYPERPARAMETERS
from tests.implementations import OPTIMIZED
from tests.strategies import runs
from tests.streams import Problem

torch = pytest.importorskip("torch")


@dataclasses.dataclass(frozen=True)
class MixedProblem(Problem):
    """A problem whose parameter ``i`` has dtype ``dtypes[i % len(dtypes)]``: several dtypes in one
    group, which torch's foreach path splits into one batch per dtype."""

    dtypes: tuple[str, ...] = ()

    def dtype_of(self, index: int) -> str:
        return self.dtypes[index % len(self.dtypes)]


AVERAGING = {"lr": 0.05, "t0": 10, "lambd": 1e-3}  # mu < 1 from step 12 on
MIXED = ("float32", "float64", "complex64", "complex128")

FOREACH_CASES = [
    Problem("float32-averaging", "float32", ((7, 5), (3,)), (AVERAGING,)),
    Problem("float64-wd-alpha-1", "float64", ((13,),), ({"lr": 0.05, "t0": 3, "weight_decay": 0.1, "alpha": 1.0},)),
    Problem("float32-maximize-alpha-0", "float32", ((6,), (2, 2)), ({"lr": 0.03, "t0": 0, "maximize": True, "lambd": 0.01, "alpha": 0.0},)),
    Problem("float64-wd-maximize-alpha-2", "float64", ((9,),), ({"lr": 0.05, "t0": 3, "weight_decay": 0.1, "maximize": True, "lambd": 0.02, "alpha": 2.0},)),
    Problem("complex64-wd-lambd-alpha-3", "complex64", ((3, 3),), ({"lr": 0.02, "t0": 5, "weight_decay": 0.1, "lambd": 0.1, "alpha": 3.0},)),
    Problem("complex128-maximize-alpha-1.5", "complex128", ((4,), (2, 3)), ({"lr": 0.03, "t0": 3, "maximize": True, "lambd": 0.05, "alpha": 1.5},)),
    Problem("float32-lambd-zero-alpha-0.3", "float32", ((11,),), ({"lr": 0.05, "t0": 10, "lambd": 0.0, "alpha": 0.3},)),
    Problem("float64-alpha-0.3-t0-zero", "float64", ((5, 2),), ({"lr": 0.05, "t0": 0, "lambd": 0.01, "alpha": 0.3},)),
    Problem("float32-large-lambd-alpha-2", "float32", ((9, 2),), ({"lr": 0.3, "t0": 3, "lambd": 2.0, "alpha": 2.0},)),
    Problem("float32-lambd-alpha-0.75", "float32", ((8,),), ({"lr": 0.1, "t0": 3, "lambd": 0.5, "alpha": 0.75},)),
    Problem("float32-t0-inf", "float32", ((6,),), ({"lr": 0.1, "t0": math.inf, "lambd": 0.01},)),
    Problem("complex128-t0-inf-wd", "complex128", ((4,),), ({"lr": 0.05, "t0": math.inf, "weight_decay": 0.05},)),
    Problem("float32-wd-rounds-to-zero", "float32", ((10,),), ({**AVERAGING, "weight_decay": 1e-46},), non_finite=True),
    Problem("float64-wd-1e-46", "float64", ((10,),), ({**AVERAGING, "weight_decay": 1e-46},)),
    Problem("float32-non-finite", "float32", ((10,),), (AVERAGING,), non_finite=True),
    Problem("complex64-non-finite-lambd-zero", "complex64", ((5,),), ({"lr": 0.05, "t0": 3, "lambd": 0.0},), non_finite=True),
    Problem("float64-large-gradients", "float64", ((12,),), (AVERAGING,), gradient_scale=1e300),
    Problem("float32-0d", "float32", ((),), ({"lr": 0.02, "t0": 0, "lambd": 0.01},)),
    Problem("complex128-0d", "complex128", ((), ()), ({"lr": 0.02, "t0": 3, "weight_decay": 0.1},)),
    Problem("float32-strided", "float32", ((4, 9), (11,)), ({"lr": 0.03, "t0": 3.5, "weight_decay": 0.01, "lambd": 0.01},), strided=True),
    Problem("complex64-strided-maximize", "complex64", ((5, 3),), ({"lr": 0.01, "t0": 1, "maximize": True},), strided=True),
    Problem("float32-none-gradients", "float32", ((8,), (3,)), (AVERAGING,), skip_every=3),
    Problem(
        "two-groups", "float32", ((4, 4), (5,), (3,)),
        ({"lr": 0.05, "t0": 8, "weight_decay": 0.2, "alpha": 1.0}, {"lr": 0.01, "t0": 3, "lambd": 0.02, "maximize": True, "alpha": 3.0}),
    ),
    Problem(
        "two-groups-float64-none-gradients", "float64", ((6,), (2, 2)),
        ({"lr": 0.05, "t0": 2, "lambd": 0.1, "alpha": 0.3}, {"lr": 0.2, "t0": 5, "weight_decay": 0.01, "alpha": 1.5}),
        skip_every=2,
    ),
    MixedProblem("mixed-dtypes-one-group", "mixed", ((3,), (2, 2), (4,), (), (5,), (3,), (2,), (1,)), ({"lr": 0.05, "t0": 3, "lambd": 0.01, "weight_decay": 0.1},), skip_every=4, dtypes=MIXED),
    MixedProblem(
        "mixed-dtypes-two-groups", "mixed", ((3,), (2, 2), (4,), (), (5,), (2,), (6,), (3,)),
        ({"lr": 0.05, "t0": 3, "maximize": True, "alpha": 2.0}, {"lr": 0.02, "t0": 1, "lambd": 0.1, "alpha": 1.0}),
        strided=True, dtypes=MIXED,
    ),
    # torch's own ASGD test configurations (common_optimizers.optim_inputs_func_asgd).
    Problem("torch-default", "float32", ((6, 3),), ({"lr": 1e-2},)),
    Problem("torch-lambd", "float64", ((6, 3),), ({"lr": 1e-2, "lambd": 0.1},)),
    Problem("torch-t0", "float32", ((6, 3),), ({"lr": 1e-2, "t0": 100},)),
    Problem("torch-wd-maximize", "complex64", ((6, 3),), ({"lr": 1e-2, "weight_decay": 0.1, "maximize": True},)),
]  # fmt: skip

REFERENCE_STEPS = 25
OPTIMIZED_STEPS = 120
LARGE = (1027,)
"""Added to every case for the optimized runs: the vectorized body and a scalar tail both run."""


def for_implementation(asgd_class: Any, problem: Problem) -> Problem:
    """The reference runs a short problem; the optimized ASGD a long one with a large tensor too."""
    if asgd_class is ASGD:
        return dataclasses.replace(problem, steps=REFERENCE_STEPS)
    return dataclasses.replace(problem, steps=OPTIMIZED_STEPS, shapes=(*problem.shapes, LARGE))


def assert_lockstep_with_torch(
    asgd_class: Any, problem: Problem, *, numerics: str = "torch-foreach", foreach: bool = True
) -> None:
    """Step ``asgd_class(numerics=numerics)`` and ``torch.optim.ASGD(foreach=foreach)`` through
    ``problem`` together; after every step their parameters, averages and scalar state (as
    float32 bit patterns) must be identical, and a parameter has state in one exactly when it has in
    the other. Each side gets its own copy of the gradients."""
    ours_params = problem.initial_parameters()
    torch_params = [torch.from_numpy(p).requires_grad_() for p in problem.initial_parameters()]
    members = problem.group_members()
    order = [i for m in members for i in m]  # both optimizers' parameter order
    ours = asgd_class(
        [{"params": [ours_params[i] for i in m], **h} for m, h in zip(members, problem.groups, strict=True)],
        numerics=numerics,
    )
    torch_groups = []
    for member, hyper in zip(members, problem.groups, strict=True):
        merged = {**DEFAULTS, **hyper}
        torch_groups.append(
            {"params": [torch_params[i] for i in member], **{k: merged[k] for k in TORCH_HYPERPARAMETERS}}
        )
    theirs = torch.optim.ASGD(torch_groups, foreach=foreach)

    for step, (gradients, torch_gradients) in enumerate(
        zip(problem.gradients(), problem.gradients(), strict=True), 1
    ):
        ours.step([gradients[i] for i in order])
        for parameter, gradient in zip(torch_params, torch_gradients, strict=True):
            parameter.grad = None if gradient is None else torch.from_numpy(gradient)
        theirs.step()

        where = f"{problem.name}, {numerics} vs foreach={foreach}, step {step}"
        for index, (p, tp) in enumerate(zip(ours_params, torch_params, strict=True)):
            assert_same_bits(p, tp.detach().numpy(), f"{where}: parameter {index}")
        ours_state, torch_state = ours.state_dict()["state"], theirs.state_dict()["state"]
        assert ours_state.keys() == torch_state.keys(), f"{where}: parameters with state"
        for position, entry in ours_state.items():
            index, expected = order[position], torch_state[position]
            assert entry.keys() == expected.keys(), f"{where}: state keys of parameter {index}"
            assert_same_bits(entry["ax"], expected["ax"].numpy(), f"{where}: ax {index}")
            for key in ("step", "eta", "mu"):
                assert isinstance(entry[key], np.float32), f"{where}: {key} {index} is {type(entry[key])}"
                assert_same_bits(np.asarray(entry[key]), expected[key].numpy(), f"{where}: {key} {index}")


@pytest.mark.parametrize("problem", FOREACH_CASES, ids=lambda p: p.name)
def test_torch_foreach_profile_matches_torch_foreach_at_every_step(problem: Problem, asgd_class: Any) -> None:
    """Every case, on the reference and both kernels, equals torch's foreach path after every step."""
    assert_lockstep_with_torch(asgd_class, for_implementation(asgd_class, problem))


NUMPY_SCALARS = [
    ("float32", {"lr": np.float32(0.05), "lambd": np.float32(1e-3), "alpha": np.float64(0.75), "t0": 3}),
    ("float64", {"lr": 0.05, "lambd": np.float32(1e-2), "alpha": np.float32(1.5), "t0": np.float32(2.0)}),
    ("complex64", {"lr": np.float64(0.05), "t0": 2, "weight_decay": np.float32(0.01), "alpha": np.float64(2.0)}),
    ("float32", {"lr": np.float16(0.05), "lambd": 0.01, "t0": 2, "maximize": True}),
]  # fmt: skip


@pytest.mark.parametrize(("dtype", "hyper"), NUMPY_SCALARS, ids=lambda v: str(v))
def test_numpy_scalar_hyperparameters_follow_torch_foreach(
    dtype: str, hyper: dict[str, Any], asgd_class: Any
) -> None:
    """In torch's foreach η a NumPy scalar hyperparameter meets a float32 tensor and is rounded to
    float32 like a Python number, where its own type rules only ``lambd * lr``; ``mu`` is still
    Python's (or NumPy's) arithmetic. The profile follows both."""
    problem = Problem("numpy-scalars", dtype, ((7,), (2, 3)), (hyper,))
    assert_lockstep_with_torch(asgd_class, for_implementation(asgd_class, problem))


def test_momentum_joins_the_gradient_after_weight_decay_and_before_lambd(asgd_class: Any) -> None:
    """Momentum, our extension, is torch's foreach step run on the momentum buffer: ``g`` negated
    if maximizing, plus ``weight_decay * theta`` (one rounding, ATen's ``add(alpha=)``), then
    ``buf = momentum * buf + g`` (two roundings), and torch folds λ into that buffer as it would
    into a gradient."""
    hyper = {"lr": 0.05, "t0": 3, "lambd": 0.02, "alpha": 0.75, "weight_decay": 0.1, "maximize": True}
    momentum = 0.9
    for dtype in ("float32", "float64"):
        problem = for_implementation(asgd_class, Problem(f"momentum-{dtype}", dtype, ((7,), (3, 2))))
        ours_params = problem.initial_parameters()
        ours = asgd_class(ours_params, numerics="torch-foreach", momentum=momentum, **hyper)
        torch_params = [torch.from_numpy(p).requires_grad_() for p in problem.initial_parameters()]
        theirs = torch.optim.ASGD(
            torch_params, foreach=True, **{**hyper, "weight_decay": 0.0, "maximize": False}
        )
        buffers: list[Any] = [None] * len(torch_params)
        for step, gradients in enumerate(problem.gradients(), 1):
            ours.step([None if g is None else g.copy() for g in gradients])
            with torch.no_grad():
                for index, (parameter, g) in enumerate(zip(torch_params, gradients, strict=True)):
                    assert g is not None
                    decayed = torch.add(-torch.from_numpy(g), parameter, alpha=hyper["weight_decay"])
                    previous = buffers[index]
                    buffers[index] = decayed if previous is None else previous.mul(momentum).add(decayed)
                    parameter.grad = buffers[index].clone()
            theirs.step()
            state, where = ours.state_dict()["state"], f"{problem.name}, step {step}"
            for index, (p, tp) in enumerate(zip(ours_params, torch_params, strict=True)):
                assert_same_bits(p, tp.detach().numpy(), f"{where}: parameter {index}")
                assert_same_bits(state[index]["momentum_buffer"], buffers[index].numpy(), f"{where}: buf")
                assert_same_bits(state[index]["ax"], theirs.state[tp]["ax"].numpy(), f"{where}: ax {index}")


def test_a_weight_decay_that_rounds_to_zero_still_adds_zero_times_theta(asgd_class: Any) -> None:
    """torch decides ``weight_decay != 0`` on the hyperparameter: 1e-46 is 0 in float32, and
    ``g + 0 * inf`` is NaN where a skipped weight decay would leave ``g + lambd * inf = inf``."""
    values = np.array([np.inf, 1.0, -2.0, 0.0], np.float32)
    gradient = np.array([1.0, -0.0, 0.5, -0.0], np.float32)
    hyper = {"lr": 0.1, "weight_decay": 1e-46, "t0": 0}
    tensor = torch.from_numpy(values.copy()).requires_grad_()
    theirs = torch.optim.ASGD([tensor], foreach=True, **hyper)
    parameter = values.copy()
    ours = asgd_class([parameter], numerics="torch-foreach", **hyper)
    for _ in range(2):
        tensor.grad = torch.from_numpy(gradient.copy())
        theirs.step()
        ours.step([gradient.copy()])
        assert np.isnan(parameter[0])
        assert_same_bits(parameter, tensor.detach().numpy(), "parameter")
        assert_same_bits(ours.averages()[0], theirs.state[tensor]["ax"].numpy(), "ax")


def test_lambd_zero_still_adds_zero_times_theta(asgd_class: Any) -> None:
    """torch's foreach path always adds ``lambd * theta`` to the gradient, even for ``lambd == 0``:
    an infinite parameter becomes NaN, where the for-loop path's decay by 1 keeps it infinite."""
    values = np.array([np.inf, -np.inf, 1.0], np.float64)
    gradient = np.array([0.5, -0.5, 0.25], np.float64)
    tensor = torch.from_numpy(values.copy()).requires_grad_()
    theirs = torch.optim.ASGD([tensor], foreach=True, lr=0.1, lambd=0.0)
    tensor.grad = torch.from_numpy(gradient.copy())
    theirs.step()
    parameter = values.copy()
    asgd_class([parameter], numerics="torch-foreach", lr=0.1, lambd=0.0).step([gradient.copy()])
    assert np.isnan(parameter[:2]).all()
    assert_same_bits(parameter, tensor.detach().numpy())


def test_step_counter_freezes_at_2_pow_24_like_torch_foreach(asgd_class: Any) -> None:
    """torch's foreach path adds 1 to its float32 step tensor, which stops at 2**24; eta is then
    evaluated from that frozen step in float32 tensor arithmetic. Resumed from a late state, the
    profile freezes with it, and its eta and mu stay torch's."""
    hyper = {"lr": 0.1, "t0": 2**24 - 10, "lambd": 1e-4, "alpha": 0.3}
    values = np.array([1.0, -2.0, 3.0], np.float32)
    gradient = np.array([0.5, 0.25, -1.0], np.float32)
    late = {"step": 2.0**24 - 2, "eta": 0.01, "mu": 0.125}

    tensor = torch.from_numpy(values.copy()).requires_grad_()
    theirs = torch.optim.ASGD([tensor], foreach=True, **hyper)
    theirs.state[tensor] = {
        **{key: torch.tensor(value, dtype=torch.float32) for key, value in late.items()},
        "ax": torch.from_numpy(values.copy()),
    }
    parameter = values.copy()
    ours = asgd_class([parameter], numerics="torch-foreach", **hyper)
    ours.load_state_dict(
        {
            "state": {0: {**{k: np.float32(v) for k, v in late.items()}, "ax": values.copy()}},
            "param_groups": ours.state_dict()["param_groups"],
        }
    )
    for step in range(4):
        tensor.grad = torch.from_numpy(gradient.copy())
        theirs.step()
        ours.step([gradient.copy()])
        assert_same_bits(parameter, tensor.detach().numpy(), f"step {step}: parameter")
        exported, torch_state = ours.state_dict()["state"][0], theirs.state[tensor]
        for key in ("ax", "step", "eta", "mu"):
            assert_same_bits(np.asarray(exported[key]), torch_state[key].numpy(), f"step {step}: {key}")
    assert float(ours.state_dict()["state"][0]["step"]) == 2**24


def test_a_lambd_that_overflows_the_step_matches_torch_without_a_warning(asgd_class: Any) -> None:
    """``lr * lambd`` beyond float32 sends θ to -inf in torch's foreach path, silently; so here,
    with no warning about the for-loop formulation's decay ``1 - lambd * eta``, which is not used."""
    import warnings

    hyper = {"lr": 10.0, "lambd": 1e38, "t0": 0.0}
    theirs = torch.ones(3, requires_grad=True)
    torch_optimizer = torch.optim.ASGD([theirs], foreach=True, **hyper)
    ours = np.ones(3, np.float32)
    optimizer = asgd_class([ours], numerics="torch-foreach", **hyper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            theirs.grad = torch.ones(3)
            torch_optimizer.step()
            optimizer.step([np.ones(3, np.float32)])
    assert_same_bits(ours, theirs.detach().numpy(), "parameters")
    assert_same_bits(optimizer.averages()[0], torch_optimizer.state[theirs]["ax"].numpy(), "averages")


# ------------------------------------------------------------- the check tells the two paths apart


def test_the_comparison_tells_torchs_foreach_path_from_its_for_loop_path(asgd_class: Any) -> None:
    """On one case the torch-foreach profile equals the foreach path and not the for-loop path, and
    the torch profile the other way round: the lockstep check can fail, and tells them apart."""
    problem = dataclasses.replace(FOREACH_CASES[0], steps=12)
    assert_lockstep_with_torch(asgd_class, problem, numerics="torch-foreach", foreach=True)
    assert_lockstep_with_torch(asgd_class, problem, numerics="torch", foreach=False)
    with pytest.raises(AssertionError, match=r"torch-foreach vs foreach=False, step \d+: parameter"):
        assert_lockstep_with_torch(asgd_class, problem, numerics="torch-foreach", foreach=False)
    with pytest.raises(AssertionError, match=r"torch vs foreach=True, step \d+: parameter"):
        assert_lockstep_with_torch(asgd_class, problem, numerics="torch", foreach=True)


# ------------------------------------------------------------------------------------ random runs


def torch_foreach_of(run: Any) -> tuple[Any, list[Any]]:
    """``torch.optim.ASGD(foreach=True)`` over contiguous copies of ``run``'s parameters, grouped
    as ``run.build`` groups them, and the tensors in the optimizer's parameter order."""
    tensors = [torch.from_numpy(np.array(a, order="C")).requires_grad_() for a in run.initial]
    groups = [
        {"params": [t for t, g in zip(tensors, run.membership, strict=True) if g == index],
         **{k: v for k, v in hyper.items() if k != "momentum"}}
        for index, hyper in enumerate(run.groups)
    ]  # fmt: skip
    optimizer = torch.optim.ASGD([g for g in groups if g["params"]], foreach=True)
    order = sorted(range(len(tensors)), key=lambda i: run.membership[i])
    return optimizer, [tensors[i] for i in order]


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@given(run=runs("torch-foreach"))
def test_random_runs_match_torch_foreach_bit_for_bit(kernel: str, run: Any) -> None:
    """Any run Hypothesis draws (several groups, 0-d and empty tensors, strided and Fortran layouts,
    ``None`` gradients, tiny, huge and subnormal values), momentum aside, which torch lacks: the
    optimized ASGD equals torch's foreach path after every step, parameters and averages."""
    run = dataclasses.replace(run, groups=tuple({**g, "momentum": 0.0} for g in run.groups))
    parameters = run.parameters()
    ours = run.build(OPTIMIZED[kernel], parameters)
    theirs, tensors = torch_foreach_of(run)
    ordered = sorted(range(len(parameters)), key=lambda i: run.membership[i])
    with np.errstate(all="ignore"):
        for step in range(len(run.gradients)):
            gradients = run.gradients_in_optimizer_order(step)
            for tensor, gradient in zip(tensors, gradients, strict=True):
                tensor.grad = None if gradient is None else torch.from_numpy(np.array(gradient, order="C"))
            theirs.step()
            ours.step(gradients)
            for position, (index, tensor) in enumerate(zip(ordered, tensors, strict=True)):
                where = f"step {step + 1}, parameter {position}"
                assert_same_bits(parameters[index], tensor.detach().numpy(), where)
                average = theirs.state[tensor]["ax"] if tensor in theirs.state else tensor.detach()
                assert_same_bits(ours.averages()[position], average.numpy(), f"{where}, average")
