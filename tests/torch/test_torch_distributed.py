"""``optimized.torch.ASGD`` under ``torch.distributed`` on the CPU: two processes on loopback (gloo),
trained with DistributedDataParallel and with ZeroRedundancyOptimizer, end with torch.optim.ASGD's bits
on every rank, on both of torch's CPU paths.

Each test starts one pair of worker processes (``torch.multiprocessing.spawn``) with one process group;
the workers train with torch's class, then with ours, from the same seed and the same per-rank data, and
compare. An assertion in a worker fails the test: ``spawn`` re-raises it with the worker's traceback,
and every message names the rank, the variant, the parameter and what differs.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # each test spawns two processes with a process group

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)
if not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed has no gloo backend in this torch build", allow_module_level=True)

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

with warnings.catch_warnings():  # torch.distributed.optim scripts its functional optimizers on import
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
    from torch.distributed.optim import ZeroRedundancyOptimizer

import optimized.torch  # noqa: E402
from tests.assertions import assert_same_bits  # noqa: E402

WORLD_SIZE = 2
STEPS = 8
HANG_GUARD = timedelta(seconds=1800)
"""Only a guard against a hung collective; a healthy run takes a fraction of a second per collective."""
HYPERPARAMETERS: dict[str, Any] = {"lr": 0.05, "lambd": 1e-3, "alpha": 0.75, "t0": 2, "weight_decay": 1e-2}
"""Weight decay non-zero; μ = 1/max(1, step - t0) is below 1 from step 4, so by step 8 ``ax`` is a true
running average, not a copy of the parameter."""
TORCH_PATHS: dict[str, bool | None] = {
    "foreach=None (for-loop path)": None,
    "foreach=True (foreach path)": True,
}
REPO_ROOT = str(Path(__file__).resolve().parents[2])


def loopback_interface() -> str | None:
    """The name of the loopback interface (``lo`` on Linux, ``lo0`` on macOS), for gloo to bind to."""
    with contextlib.suppress(OSError, AttributeError):
        for _, name in socket.if_nameindex():
            if name in ("lo", "lo0"):
                return name
    return None


@contextlib.contextmanager
def loopback_process_group(rank: int, store: str) -> Iterator[None]:
    """A gloo process group of ``WORLD_SIZE`` processes on loopback, destroyed on the way out.

    The rendezvous is a file (``store``), so no process listens on a TCP port of every interface as
    the ``tcp://`` rendezvous server does; gloo's own sockets are bound to the loopback interface."""
    if REPO_ROOT not in sys.path:  # spawn hands the parent's sys.path on; this is a second guard
        sys.path.insert(0, REPO_ROOT)
    interface = loopback_interface()
    if interface is not None:  # gloo's own sockets on loopback, not the host name's address
        os.environ["GLOO_SOCKET_IFNAME"] = interface
    torch.set_num_threads(1)  # two processes on two cores; both runs of a comparison use the same
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE, timeout=HANG_GUARD
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_on_two_ranks(worker: Callable[..., None]) -> None:
    """``worker(rank, store)`` in two spawned processes; a failure in either fails the caller."""
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(worker, args=(str(Path(directory) / "store"),), nprocs=WORLD_SIZE, join=True)


# ------------------------------------------------------------------------------------------ training


def small_mlp() -> Any:
    """Linear 8→16, Tanh, Linear 16→4, from seed 0 (the same weights on every rank and every run)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def rank_batches(rank: int) -> list[tuple[Any, Any]]:
    """``STEPS`` batches of inputs and targets, different on each rank, the same for every run."""
    generator = torch.Generator().manual_seed(1000 + rank)
    return [
        (torch.randn(32, 8, generator=generator), torch.randn(32, 4, generator=generator))
        for _ in range(STEPS)
    ]


@dataclass
class Training:
    """A finished run: the model, its optimizer, the local losses and (for ours) each step's paths."""

    model: Any
    optimizer: Any
    losses: list[float] = field(default_factory=list)
    step_paths: list[Any] = field(default_factory=list)


def train(
    model: Any, ddp_model: Any, optimizer: Any, rank: int, paths_of: Callable[[], Any] | None = None
) -> Training:
    """``STEPS`` steps of mean squared error on this rank's batches through ``ddp_model``, the DDP
    wrapper of ``model`` (so the gradients are all-reduced); ``paths_of`` records each step's paths."""
    training = Training(model, optimizer)
    for inputs, targets in rank_batches(rank):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp_model(inputs), targets)
        loss.backward()
        optimizer.step()
        training.losses.append(loss.item())
        if paths_of is not None:
            training.step_paths.append(paths_of())
    return training


def train_with_ddp(
    optimizer_class: type, foreach: bool | None, gradient_as_bucket_view: bool, rank: int
) -> Training:
    """DDP training of the small MLP with ``optimizer_class`` on all of its parameters."""
    model = small_mlp()
    ddp_model = DistributedDataParallel(model, gradient_as_bucket_view=gradient_as_bucket_view)
    optimizer = optimizer_class(ddp_model.parameters(), **HYPERPARAMETERS, foreach=foreach)
    paths_of = (lambda: optimizer.last_step_paths) if optimizer_class is optimized.torch.ASGD else None
    return train(model, ddp_model, optimizer, rank, paths_of)


def train_with_zero(
    optimizer_class: type, foreach: bool | None, parameters_as_bucket_view: bool, rank: int
) -> Training:
    """DDP training of the small MLP with ZeroRedundancyOptimizer over ``optimizer_class``: each rank
    steps its shard of the parameters with a local ``optimizer_class`` and broadcasts it."""
    model = small_mlp()
    ddp_model = DistributedDataParallel(model)
    optimizer = ZeroRedundancyOptimizer(
        ddp_model.parameters(),
        optimizer_class=optimizer_class,
        parameters_as_bucket_view=parameters_as_bucket_view,
        **HYPERPARAMETERS,
        foreach=foreach,
    )
    paths_of = (lambda: optimizer.optim.last_step_paths) if optimizer_class is optimized.torch.ASGD else None
    return train(model, ddp_model, optimizer, rank, paths_of)


# --------------------------------------------------------------------------------------- comparisons


def assert_same_tensor_bits(actual: Any, expected: Any, what: str) -> None:
    """Same dtype, shape and every bit (via the IEEE encodings), with the first differing element named."""
    assert torch.is_tensor(actual), f"{what}: ours is a {type(actual).__name__}, not a tensor"
    assert torch.is_tensor(expected), f"{what}: torch's is a {type(expected).__name__}, not a tensor"
    assert_same_bits(actual.detach().cpu().numpy(), expected.detach().cpu().numpy(), what)


def assert_same_state_entry(ours: dict[str, Any], theirs: dict[str, Any], what: str) -> None:
    """One parameter's optimizer state: the same keys, every tensor (``step``, ``eta``, ``mu``, ``ax``)
    bit for bit, any other value equal."""
    assert sorted(ours) == sorted(theirs), f"{what}: state keys {sorted(ours)} != torch's {sorted(theirs)}"
    for key in sorted(theirs):
        if torch.is_tensor(theirs[key]):
            assert_same_tensor_bits(ours[key], theirs[key], f"{what} state[{key!r}]")
        else:
            assert ours[key] == theirs[key], (
                f"{what} state[{key!r}]: {ours[key]!r} != torch's {theirs[key]!r}"
            )


def assert_same_parameters(ours: Training, theirs: Training, where: str) -> None:
    """Every parameter of the two models bit for bit."""
    our_parameters = dict(ours.model.named_parameters())
    their_parameters = dict(theirs.model.named_parameters())
    assert list(our_parameters) == list(their_parameters), f"{where}: parameter names differ"
    for name, theirs_p in their_parameters.items():
        assert_same_tensor_bits(our_parameters[name], theirs_p, f"{where}: parameter {name!r}")


def assert_same_ddp_training(ours: Training, theirs: Training, where: str) -> None:
    """Every parameter, and its state in the optimizer (averages and clocks), bit for bit."""
    assert_same_parameters(ours, theirs, where)
    our_parameters = dict(ours.model.named_parameters())
    for name, theirs_p in theirs.model.named_parameters():
        our_p = our_parameters[name]
        assert our_p in ours.optimizer.state, f"{where}: parameter {name!r} has no state in our optimizer"
        assert_same_state_entry(
            ours.optimizer.state[our_p], theirs.optimizer.state[theirs_p], f"{where}: parameter {name!r}"
        )


def assert_kernel_stepped(ours: Training, where: str) -> None:
    """Every step of ours ran the compiled kernel, not torch's functional ASGD (which would make the
    comparison vacuous)."""
    assert len(ours.step_paths) == STEPS, f"{where}: {len(ours.step_paths)} steps recorded, expected {STEPS}"
    for step, paths in enumerate(ours.step_paths, start=1):
        assert paths, f"{where}: step {step} stepped no param group"
        for group, path in enumerate(paths):
            assert path is not None and path.path == "kernel", (
                f"{where}: step {step}, param group {group} took {path} instead of the kernel"
            )


def assert_same_on_every_rank(model: Any, where: str) -> None:
    """The parameters agree bit for bit across the ranks (the all-reduce and the broadcasts worked)."""
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
    dist.all_gather(gathered, flat)
    for other in range(1, WORLD_SIZE):
        assert_same_tensor_bits(
            gathered[other], gathered[0], f"{where}: parameters of rank {other} vs rank 0"
        )


def assert_ranks_saw_different_data(losses: list[float], where: str) -> None:
    """The first local loss differs between the ranks, so each rank's gradient alone differs and the
    all-reduce decides the step."""
    gathered: list[Any] = [None] * WORLD_SIZE
    dist.all_gather_object(gathered, losses[0])
    assert len(set(gathered)) == WORLD_SIZE, f"{where}: the ranks' first losses {gathered} coincide"


def assert_comparison_catches_one_ulp(ours: Training, theirs: Training, where: str) -> None:
    """The meta-check: one ULP in one element of one parameter, then of one average, fails the
    comparison (each restored afterwards)."""
    weight = ours.model[0].weight
    average = ours.optimizer.state[weight]["ax"]
    for name, tensor in (("parameter '0.weight'", weight), ("state['ax'] of '0.weight'", average)):
        with torch.no_grad():
            original = tensor[0, 0].clone()
            tensor[0, 0] = torch.nextafter(original, torch.tensor(math.inf, dtype=original.dtype))
        try:
            with pytest.raises(AssertionError, match=r"differ; first at flat component 0"):
                assert_same_ddp_training(ours, theirs, f"{where} (one ULP added to {name})")
        finally:
            with torch.no_grad():
                tensor[0, 0] = original
    assert_same_ddp_training(ours, theirs, f"{where} (after the meta-check)")


# ------------------------------------------------------------------------------------------- workers


def ddp_worker(rank: int, store: str) -> None:
    """One rank of the DDP comparison: each torch path, gradients in their own memory and as views of
    DDP's buckets; torch's class, then ours, in the same process group."""
    with loopback_process_group(rank, store):
        for path_name, foreach in TORCH_PATHS.items():
            for gradient_as_bucket_view in (False, True):
                where = f"rank {rank}, DDP, {path_name}, gradient_as_bucket_view={gradient_as_bucket_view}"
                theirs = train_with_ddp(torch.optim.ASGD, foreach, gradient_as_bucket_view, rank)
                ours = train_with_ddp(optimized.torch.ASGD, foreach, gradient_as_bucket_view, rank)
                assert_kernel_stepped(ours, where)
                assert_same_ddp_training(ours, theirs, where)
                assert ours.losses == theirs.losses, (
                    f"{where}: local losses {ours.losses} != torch's {theirs.losses}"
                )
                assert_ranks_saw_different_data(ours.losses, where)
                assert_same_on_every_rank(ours.model, where)
                if foreach is None and not gradient_as_bucket_view:
                    assert_comparison_catches_one_ulp(ours, theirs, where)


def consolidated_state(optimizer: Any) -> dict[str, Any] | None:
    """ZeroRedundancyOptimizer's full state dict gathered on rank 0 (``None`` on the other ranks);
    every rank must call this, as ``consolidate_state_dict`` is a collective."""
    optimizer.consolidate_state_dict(to=0)
    if dist.get_rank() != 0:
        return None
    state_dict: dict[str, Any] = optimizer.state_dict()
    return state_dict


def zero_worker(rank: int, store: str) -> None:
    """One rank of the ZeroRedundancyOptimizer comparison: each torch path, parameters in their own
    memory and as views of ZeRO's buckets; torch's class, then ours, in the same process group."""
    with loopback_process_group(rank, store):
        for path_name, foreach in TORCH_PATHS.items():
            for parameters_as_bucket_view in (False, True):
                where = (
                    f"rank {rank}, ZeRO, {path_name}, parameters_as_bucket_view={parameters_as_bucket_view}"
                )
                theirs = train_with_zero(torch.optim.ASGD, foreach, parameters_as_bucket_view, rank)
                ours = train_with_zero(optimized.torch.ASGD, foreach, parameters_as_bucket_view, rank)
                assert_kernel_stepped(ours, where)
                assert_same_parameters(ours, theirs, where)
                assert ours.losses == theirs.losses, (
                    f"{where}: local losses {ours.losses} != torch's {theirs.losses}"
                )
                assert_same_on_every_rank(ours.model, where)
                their_state, our_state = (
                    consolidated_state(theirs.optimizer),
                    consolidated_state(ours.optimizer),
                )
                if rank != 0:
                    continue
                assert their_state is not None and our_state is not None
                names = [name for name, _ in theirs.model.named_parameters()]
                assert sorted(their_state["state"]) == list(range(len(names))), (
                    f"{where}: torch's consolidated state has entries {sorted(their_state['state'])}"
                )
                assert sorted(our_state["state"]) == sorted(their_state["state"]), (
                    f"{where}: consolidated state entries {sorted(our_state['state'])} != torch's {sorted(their_state['state'])}"
                )
                for index, name in enumerate(names):
                    assert_same_state_entry(
                        our_state["state"][index],
                        their_state["state"][index],
                        f"{where}: consolidated state of parameter {index} ({name!r})",
                    )


# --------------------------------------------------------------------------------------------- tests


def test_ddp_training_gives_torchs_bits_on_every_rank() -> None:
    """DDP (gloo, two ranks, per-rank data) with optimized.torch.ASGD ends with torch.optim.ASGD's
    parameters, averages (``ax``) and clocks (``step``, ``eta``, ``mu``) bit for bit on every rank,
    on the for-loop and the foreach path, after averaging has started; the comparison is shown to
    catch a single ULP."""
    run_on_two_ranks(ddp_worker)


def test_zero_redundancy_optimizer_gives_torchs_bits_on_every_rank() -> None:
    """ZeroRedundancyOptimizer over optimized.torch.ASGD ends with the parameters of
    ZeroRedundancyOptimizer over torch.optim.ASGD bit for bit on every rank, and its state consolidated
    on rank 0 is torch's, tensor for tensor."""
    run_on_two_ranks(zero_worker)
