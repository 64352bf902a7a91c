"""``optimized.torch.ASGD`` in the training machinery of torch: LR schedulers, ``swa_utils``, a
``torch.compile``d training step, and random configurations with a scheduler running and a
checkpoint swapped between the two classes mid-run, all bit for bit against ``torch.optim.ASGD``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from optimized.torch import ASGD, StepPath  # noqa: E402
from tests.torch.test_torch_optimizer import (  # noqa: E402
    DTYPES,
    assert_same_run,
    make_params,
    set_gradients,
    through_a_file,
)

SCHEDULERS: dict[str, Callable[[Any], Any]] = {
    "StepLR": lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5),
    # torch's ASGD has no momentum for OneCycleLR to cycle: it is refused without cycle_momentum=False
    "OneCycleLR": lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=10, cycle_momentum=False
    ),
    "ReduceLROnPlateau": lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, patience=0, factor=0.3
    ),
    "SequentialLR": lambda optimizer: torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.2, total_iters=3),
            torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8),
        ],
        milestones=[3],
    ),
}


def advance(scheduler: Any) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(1.0)  # a loss that never improves: the rate falls every step
    else:
        scheduler.step()


def step_both(
    ours: Any, theirs: Any, ours_params: list[Any], their_params: list[Any], schedulers: Any, step: int
) -> None:
    """One training step of each class under its scheduler, then every state tensor compared."""
    set_gradients(ours_params, step)
    set_gradients(their_params, step)
    ours.step()
    theirs.step()
    for scheduler in schedulers:
        advance(scheduler)
    assert_same_run(ours, theirs, ours_params, their_params)


@pytest.mark.parametrize("path", [None, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_lr_schedulers_drive_both_classes_to_the_same_bits(name: str, path: bool | None) -> None:
    ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
    kwargs = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "foreach": path}
    ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
    schedulers = SCHEDULERS[name](ours), SCHEDULERS[name](theirs)
    rates = []
    for step in range(10):
        step_both(ours, theirs, ours_params, their_params, schedulers, step)
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        rates.append(ours.param_groups[0]["lr"])
    assert len(set(rates)) > 1, "the scheduler never changed the rate"
    assert ours.last_step_paths == [StepPath("kernel")]


def test_swa_utils_average_and_anneal_as_with_torchs_class() -> None:
    from torch.optim.swa_utils import SWALR, AveragedModel

    def run(cls: Any) -> tuple[Any, Any]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        optimizer = cls(model.parameters(), lr=0.05, t0=3)
        swa_model, swa_scheduler = AveragedModel(model), SWALR(optimizer, swa_lr=0.01, anneal_epochs=2)
        data = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
        for _ in range(6):
            optimizer.zero_grad()
            model(data).pow(2).mean().backward()
            optimizer.step()
            swa_model.update_parameters(model)
            swa_scheduler.step()
        return model, swa_model

    ours, theirs = run(ASGD), run(torch.optim.ASGD)
    for a, b in zip(
        [*ours[0].parameters(), *ours[1].parameters()],
        [*theirs[0].parameters(), *theirs[1].parameters()],
        strict=True,
    ):
        assert torch.equal(a.detach().view(torch.int32), b.detach().view(torch.int32))


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="inductor needs a C compiler"
)
@pytest.mark.e2e  # torch.compile of a whole training step
def test_a_compiled_training_step_keeps_the_eager_bits() -> None:
    """``torch.compile`` of a step that calls ``optimizer.step()``: the step runs outside the graph,
    so with the same (compiled) gradients the parameters and averages are those of eager torch."""
    torch._dynamo.reset()

    def model_pair() -> tuple[Any, Any]:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        twin = torch.nn.Linear(6, 3)
        twin.load_state_dict(model.state_dict())
        return model, twin

    model, twin = model_pair()
    ours, theirs = ASGD(model.parameters(), lr=0.1, t0=2), torch.optim.ASGD(twin.parameters(), lr=0.1, t0=2)
    data = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))

    @torch.compile
    def train_step(module: Any, optimizer: Any) -> Any:
        optimizer.zero_grad()
        loss = module(data).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss

    @torch.compile
    def gradients_only(module: Any) -> Any:
        loss = module(data).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(5):
        train_step(model, ours)
        theirs.zero_grad()
        gradients_only(twin)
        theirs.step()
        assert_same_run(ours, theirs, list(model.parameters()), list(twin.parameters()))
    assert ours.last_step_paths == [StepPath("kernel")]


hyperparameters = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([1e-3, 0.01, 0.05, 0.3]),
        "lambd": st.sampled_from([0.0, 1e-4, 0.01, 0.2]),
        "alpha": st.sampled_from([0.0, 0.5, 0.75, 1.0, 2.0, 3.0]),
        "t0": st.sampled_from([0.0, 1.0, 3.0, 1e6]),
        "weight_decay": st.sampled_from([0.0, 1e-3, 0.1]),
        "maximize": st.booleans(),
        "foreach": st.sampled_from([None, False, True]),
    }
)


@given(
    kwargs=hyperparameters,
    dtype=st.sampled_from(DTYPES),
    scheduler=st.sampled_from(["StepLR", "OneCycleLR", "SequentialLR"]),
    swap_at=st.integers(1, 5),
    steps=st.integers(2, 8),
)
def test_random_configurations_with_a_scheduler_and_a_checkpoint_swap(
    kwargs: dict[str, Any], dtype: Any, scheduler: str, swap_at: int, steps: int
) -> None:
    """Ours against torch's class under the same scheduler; at ``swap_at`` each run's checkpoint goes
    through a file into the other class (ours into torch's, torch's into ours) and both go on; every
    state tensor is compared at every step."""
    ours_params, their_params = make_params(0, dtype), make_params(0, dtype)
    ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
    schedulers = [SCHEDULERS[scheduler](ours), SCHEDULERS[scheduler](theirs)]
    for step in range(min(steps + swap_at, 10)):
        if step == swap_at:
            checkpoints = [through_a_file(o.state_dict()) for o in (ours, theirs)]
            scheduler_states = [s.state_dict() for s in schedulers]
            ours, theirs = torch.optim.ASGD(ours_params), ASGD(their_params)
            for optimizer, checkpoint in zip((ours, theirs), checkpoints, strict=True):
                optimizer.load_state_dict(checkpoint)
            schedulers = [SCHEDULERS[scheduler](ours), SCHEDULERS[scheduler](theirs)]
            for s, state in zip(schedulers, scheduler_states, strict=True):
                s.load_state_dict(state)
        step_both(ours, theirs, ours_params, their_params, schedulers, step)
