"""A run handed between torch and ``optimized.ASGD`` mid-way ends exactly where torch's would."""

from __future__ import annotations

import numpy as np
import pytest

import optimized
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED
from tests.streams import Problem

torch = pytest.importorskip("torch")

HANDOVER = Problem(
    "handover",
    "float32",
    ((6, 4), (5,), (3, 3)),
    ({"lr": 0.05, "t0": 20, "weight_decay": 0.01, "lambd": 1e-3}, {"lr": 0.02, "t0": 5, "maximize": True}),
    steps=120,
)
HALF = 60


def torch_optimizer(problem: Problem, tensors: list[torch.Tensor], foreach: bool = False) -> torch.optim.ASGD:
    members = problem.group_members()
    groups = [{"params": [tensors[i] for i in m], **h} for m, h in zip(members, problem.groups, strict=True)]
    return torch.optim.ASGD(groups, foreach=foreach)


def optimizer_order(problem: Problem) -> list[int]:
    return [i for m in problem.group_members() for i in m]


def torch_steps(
    optimizer: torch.optim.ASGD, tensors: list[torch.Tensor], gradients: list[list[np.ndarray]]
) -> None:
    for row in gradients:
        for tensor, gradient in zip(tensors, row, strict=True):
            tensor.grad = torch.from_numpy(gradient)
        optimizer.step()


@pytest.mark.parametrize("foreach", [False, True], ids=["forloop", "foreach"])
@pytest.mark.parametrize("kernel", list(OPTIMIZED))
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64"])
def test_torch_to_optimized_to_torch_reproduces_the_uninterrupted_run(
    dtype: str, kernel: str, foreach: bool
) -> None:
    """Either torch path hands over to the profile that models it (named by the group's
    ``foreach``) and back, and the run ends where torch's uninterrupted run does."""
    problem = Problem(HANDOVER.name, dtype, HANDOVER.shapes, HANDOVER.groups, steps=HANDOVER.steps)
    gradients = problem.gradients()
    order = optimizer_order(problem)

    straight = [torch.from_numpy(p).requires_grad_() for p in problem.initial_parameters()]
    uninterrupted = torch_optimizer(problem, straight, foreach)
    torch_steps(uninterrupted, straight, gradients)

    # torch runs the first third, optimized the second, torch again the last.
    tensors = [torch.from_numpy(p).requires_grad_() for p in problem.initial_parameters()]
    first = torch_optimizer(problem, tensors, foreach)
    torch_steps(first, tensors, gradients[:40])

    arrays = [t.detach().numpy().copy() for t in tensors]
    middle = OPTIMIZED[kernel]([{"params": [arrays[i] for i in m]} for m in problem.group_members()])
    converted = optimized.state_dict_from_torch(first.state_dict())
    profile = "torch-foreach" if foreach else "torch"
    assert [group["numerics"] for group in converted["param_groups"]] == [profile, profile]
    middle.load_state_dict(converted)
    for row in gradients[40:80]:
        middle.step([row[i] for i in order])

    resumed_tensors = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
    last = torch_optimizer(problem, resumed_tensors, not foreach)  # the saved groups name the path
    handed_back = optimized.state_dict_to_torch(middle.state_dict())
    assert [group["foreach"] for group in handed_back["param_groups"]] == [foreach, foreach]
    last.load_state_dict(handed_back)
    torch_steps(last, resumed_tensors, gradients[80:])

    for index, (a, b) in enumerate(zip(resumed_tensors, straight, strict=True)):
        assert_same_bits(a.detach().numpy(), b.detach().numpy(), f"parameter {index}")
        assert_same_bits(last.state[a]["ax"].numpy(), uninterrupted.state[b]["ax"].numpy(), f"ax {index}")
        for key in ("step", "eta", "mu"):
            assert last.state[a][key].item() == uninterrupted.state[b][key].item(), key


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_optimized_state_dict_resume_reproduces_the_uninterrupted_run(kernel: str) -> None:
    problem = Problem(
        "resume", "float32", ((7, 3), (4,)), ({"lr": 0.05, "t0": 10, "momentum": 0.9},), steps=80
    )
    gradients = problem.gradients()
    straight = problem.initial_parameters()
    uninterrupted = OPTIMIZED[kernel](straight, numerics="numpy", **problem.groups[0])
    for row in gradients:
        uninterrupted.step(row)

    parameters = problem.initial_parameters()
    first = OPTIMIZED[kernel](parameters, numerics="numpy", **problem.groups[0])
    for row in gradients[:HALF]:
        first.step(row)
    saved = first.state_dict()
    resumed = OPTIMIZED[kernel]([p.copy() for p in parameters])
    resumed.load_state_dict(saved)
    for row in gradients[HALF:]:
        resumed.step(row)

    for a, b in zip(resumed.param_groups[0]["params"], straight, strict=True):
        assert_same_bits(a, b, "parameter")
    for a, b in zip(resumed.averages(), uninterrupted.averages(), strict=True):
        assert_same_bits(a, b, "average")
    assert resumed.state_dict()["state"][1]["step"] == 80


def test_the_profile_of_a_torch_state_can_be_named() -> None:
    """A state made where torch chose its path (``foreach=None``) continues in the profile named."""
    tensor = torch.zeros(3, requires_grad=True)
    chosen_by_torch = torch.optim.ASGD([tensor], lr=0.1)
    tensor.grad = torch.ones(3)
    chosen_by_torch.step()
    saved = chosen_by_torch.state_dict()
    assert optimized.state_dict_from_torch(saved)["param_groups"][0]["numerics"] == "torch"
    named = optimized.state_dict_from_torch(saved, numerics="torch-foreach")
    assert named["param_groups"][0]["numerics"] == "torch-foreach"
    with pytest.raises(ValueError, match=r"Invalid numerics: 'numpy' \(a torch state continues in one of"):
        optimized.state_dict_from_torch(saved, numerics="numpy")
    fast = optimized.ASGD([np.zeros(3, np.float32)], numerics="numpy")
    assert optimized.state_dict_to_torch(fast.state_dict())["param_groups"][0]["foreach"] is None


def test_state_dict_to_torch_refuses_momentum() -> None:
    optimizer = optimized.ASGD([np.zeros(2, np.float32)], momentum=0.5)
    with pytest.raises(
        ValueError, match=r"param_groups\[0\] has momentum=0.5; torch.optim.ASGD has no momentum"
    ):
        optimized.state_dict_to_torch(optimizer.state_dict())


def test_a_tensor_lr_is_refused() -> None:
    """torch computes eta in the arithmetic of a tensor lr (float32 or float64 tensor operations),
    which neither torch profile models: the hand-over refuses it rather than drift."""
    tensor = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.ASGD([tensor], lr=torch.tensor(0.05), foreach=True)
    tensor.grad = torch.ones(3)
    optimizer.step()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\] is a tensor \(torch.float32\)"):
        optimized.state_dict_from_torch(optimizer.state_dict())
    with pytest.raises(TypeError, match=r"numerics must be a str or None, got 1 \(int\)"):
        optimized.state_dict_from_torch(optimizer.state_dict(), numerics=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("optimizer_class", ["SGD", "Adam"])
def test_another_optimizers_state_is_refused_naming_what_it_lacks(optimizer_class: str) -> None:
    tensor = torch.zeros(3, requires_grad=True)
    optimizer = getattr(torch.optim, optimizer_class)([tensor], lr=0.1)
    tensor.grad = torch.ones(3)
    optimizer.step()
    with pytest.raises(
        ValueError, match=r"param_groups\[0\] lacks \[.*'lambd'.*\]: not a torch.optim.ASGD state dict"
    ):
        optimized.state_dict_from_torch(optimizer.state_dict())
