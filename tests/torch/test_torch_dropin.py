"""``optimized.ASGD(model.parameters(), numerics="torch")``, the NumPy API's deprecated tensor path:
CPU tensors are stepped in place through zero-copy NumPy views, with torch's bits."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import optimized
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED

torch = pytest.importorskip("torch")

# The NumPy API's tensor path is deprecated (torch users take optimized.torch.ASGD); it is tested
# here as long as it exists.
pytestmark = pytest.mark.filterwarnings("ignore:optimized.ASGD steps NumPy arrays:FutureWarning")


def mlp(seed: int, widths: tuple[int, ...] = (20, 64, 32, 3)) -> Any:
    torch.manual_seed(seed)
    layers: list[Any] = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1])


def train(model: Any, optimizer: Any, steps: int) -> None:
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(256, model[0].in_features, generator=generator)
    labels = torch.randint(0, model[-1].out_features, (256,), generator=generator)
    for step in range(steps):
        batch = slice(step * 32 % 224, step * 32 % 224 + 32)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_a_training_loop_gives_torchs_bits(kernel: str) -> None:
    """(The reference takes NumPy arrays only: it depends on nothing but NumPy.)"""
    widths = (20, 64, 32, 3)
    hyper = {"lr": 0.05, "t0": 5, "weight_decay": 1e-3, "lambd": 1e-3}
    theirs, ours = mlp(0, widths), mlp(0, widths)
    torch_optimizer = torch.optim.ASGD(theirs.parameters(), foreach=False, **hyper)
    optimizer = OPTIMIZED[kernel](ours.parameters(), numerics="torch", **hyper)
    train(theirs, torch_optimizer, 25)
    train(ours, optimizer, 25)
    for index, (a, b, average) in enumerate(
        zip(ours.parameters(), theirs.parameters(), optimizer.averages(), strict=True)
    ):
        assert_same_bits(a.detach().numpy(), b.detach().numpy(), f"parameter {index}")
        assert_same_bits(average, torch_optimizer.state[b]["ax"].numpy(), f"average {index}")


def test_tensors_with_momentum_match_numpy_arrays() -> None:
    model = mlp(1, (5, 4, 2))
    arrays = [p.detach().numpy().copy() for p in model.parameters()]
    on_tensors = optimized.ASGD(model.parameters(), lr=0.1, momentum=0.9, t0=2)
    on_arrays = optimized.ASGD(arrays, lr=0.1, momentum=0.9, t0=2)
    rng = np.random.default_rng(0)
    for _ in range(6):
        grads = [rng.standard_normal(a.shape).astype(np.float32) for a in arrays]
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        on_tensors.step()
        on_arrays.step(grads)
    for p, a in zip(model.parameters(), arrays, strict=True):
        assert_same_bits(p.detach().numpy(), a)


def test_a_replaced_tensor_data_is_the_one_updated() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimized.ASGD([weight], lr=0.1)
    weight.grad = torch.ones(3)
    optimizer.step()
    old = weight.data
    weight.data = torch.full((3,), 2.0)
    optimizer.step()
    assert (old == old[0]).all() and old[0].item() != 1.0
    assert weight.detach()[0].item() != 2.0


def test_a_step_marks_the_tensors_modified_for_autograd() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimized.ASGD([weight], lr=0.1)
    loss = (weight * weight).sum()  # saves weight for the backward pass
    weight.grad = torch.ones(3)
    optimizer.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_zero_grad_on_tensors() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimized.ASGD([weight])
    weight.grad = torch.ones(3)
    optimizer.zero_grad(set_to_none=False)
    assert weight.grad is not None and (weight.grad == 0).all()
    optimizer.zero_grad()
    assert weight.grad is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: torch.empty(3, device="meta"),
            r"params\[0\] is a torch tensor on device meta; optimized.ASGD steps CPU memory",
        ),
        (
            lambda: torch.ones(3, dtype=torch.complex64).conj(),
            r"params\[0\] is a torch tensor with a pending conjugation",
        ),
        (
            lambda: torch.ones(3, dtype=torch.bfloat16),
            r"params\[0\] is a torch tensor of dtype torch.bfloat16",
        ),
        (lambda: torch.ones(3, dtype=torch.int64), r"params\[0\] is a torch tensor of dtype torch.int64"),
    ],
)
def test_tensors_a_view_cannot_show_are_refused(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        optimized.ASGD([make()])


def test_a_gradient_a_view_cannot_show_is_refused_and_nothing_changes() -> None:
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    optimizer = optimized.ASGD([weight], lr=0.1)
    weight.grad = torch.ones(3, dtype=torch.complex64).conj()
    with pytest.raises(TypeError, match=r"grads\[0\] is a torch tensor with a pending conjugation"):
        optimizer.step()
    assert (weight.detach() == 1).all() and not optimizer.state


def test_tensors_sharing_memory_are_refused() -> None:
    base = torch.zeros(6)
    with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\]"):
        optimized.ASGD([torch.nn.Parameter(base[:4]), torch.nn.Parameter(base[2:])])
    weight = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\]"):
        optimized.ASGD([weight, torch.nn.Parameter(weight.data)])
    with pytest.raises(ValueError, match=r"params\[0\] has several elements in one memory location"):
        optimized.ASGD([torch.nn.Parameter(torch.ones(1).expand(4))])


def test_a_gradient_that_is_the_parameter_is_refused_and_nothing_changes() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimized.ASGD([weight], lr=0.1)
    weight.grad = weight.detach()
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory with params\[0\]"):
        optimizer.step()
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory with params\[0\]"):
        optimizer.step([weight.detach().numpy()])
    assert (weight.detach() == 1).all() and not optimizer.state


def test_evaluating_with_the_averages_marks_the_tensors_modified() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = optimized.ASGD([weight], lr=0.1, t0=0)
    for _ in range(3):
        weight.grad = torch.ones(3)
        optimizer.step()
    with optimizer.averaged_parameters():
        loss = (weight * weight).sum()  # saves the averages
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()  # the parameters were swapped back in place


def test_a_numpy_lr_survives_the_hand_over_from_torch() -> None:
    weight = torch.zeros(4, requires_grad=True)
    theirs = torch.optim.ASGD([weight], lr=np.float32(0.05), lambd=0.01, t0=2, foreach=False)
    weight.grad = torch.ones(4)
    theirs.step()
    handed = optimized.state_dict_from_torch(theirs.state_dict())
    assert type(handed["param_groups"][0]["lr"]) is np.float32
