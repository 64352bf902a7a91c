"""``optimized.torch.ASGD`` against ``torch.optim.ASGD``, bit for bit, when things change between two
steps: the parameters, the state or the gradients replaced, reshaped, shared or aliased; a step that
raises part-way; the views and the table of addresses the kernel keeps from one step to the next."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optimized.torch import ASGD, StepPath  # noqa: E402
from tests.torch.test_torch_optimizer import (  # noqa: E402
    assert_same_run,
    lockstep,
    make_params,
    set_gradients,
)

# ------------------------------------------------------------- what changes between two steps


def _share_memory(optimizer: Any, params: list[Any]) -> None:
    for entry in optimizer.state.values():  # as a torch.multiprocessing queue does to a state_dict
        for value in entry.values():
            value.share_memory_()


def _new_state_memory(optimizer: Any, params: list[Any]) -> None:
    for entry in optimizer.state.values():
        for value in entry.values():
            value.data = value.data.clone()


def _average_set_to_a_copy(optimizer: Any, params: list[Any]) -> None:
    average = optimizer.state[params[0]]["ax"]
    average.set_(average.clone())


def _parameter_transposed(optimizer: Any, params: list[Any]) -> None:
    params[0].data = params[0].data.t()  # the same memory, read in another order


def _parameter_negated(optimizer: Any, params: list[Any]) -> None:
    params[1].data = params[1].data._neg_view()  # the same memory, read with a pending negation


def _clocks_shared(optimizer: Any, params: list[Any]) -> None:
    for key in ("step", "eta", "mu"):
        optimizer.state[params[1]][key] = optimizer.state[params[0]][key]


def _clock_requiring_grad(optimizer: Any, params: list[Any]) -> None:
    optimizer.state[params[0]]["mu"].requires_grad_()


BETWEEN_STEPS: dict[str, Callable[[Any, list[Any]], None]] = {
    "the state's memory shared (share_memory_)": _share_memory,
    "the state tensors given new memory (.data =)": _new_state_memory,
    "an average set_ to a copy": _average_set_to_a_copy,
    "a square parameter transposed in place": _parameter_transposed,
    "a parameter given a negated view of its memory": _parameter_negated,
    "one clock shared by two parameters": _clocks_shared,
    "a clock that requires grad": _clock_requiring_grad,
}


@pytest.mark.parametrize("path", [None, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("change", list(BETWEEN_STEPS))
def test_what_changes_between_steps_is_seen_as_torch_sees_it(change: str, path: bool | None) -> None:
    """The views the kernel keeps between steps never outlive what they show: whatever is done to
    the parameters or the state between two steps, both classes go on with the same bits."""
    shapes = ((4, 4), (7,), (3,))
    ours_params, their_params = make_params(0, torch.float32, shapes), make_params(0, torch.float32, shapes)
    ours, theirs = ASGD(ours_params, t0=1, foreach=path), torch.optim.ASGD(their_params, t0=1, foreach=path)

    def between(step: int) -> None:
        if step == 1:
            BETWEEN_STEPS[change](ours, ours_params)
            BETWEEN_STEPS[change](theirs, their_params)

    lockstep(ours, theirs, ours_params, their_params, steps=5, between=between)


def test_a_gradient_reused_and_transposed_in_place_is_read_in_its_new_order() -> None:
    ours_params, their_params = (
        make_params(0, torch.float32, ((4, 4),)),
        make_params(0, torch.float32, ((4, 4),)),
    )
    ours, theirs = ASGD(ours_params, t0=1), torch.optim.ASGD(their_params, t0=1)
    for params in (ours_params, their_params):
        params[0].grad = torch.arange(16.0).reshape(4, 4)
    for _ in range(3):
        ours.step()
        theirs.step()
        assert_same_run(ours, theirs, ours_params, their_params)
        for params in (ours_params, their_params):
            params[0].grad.t_()


def test_a_gradient_aliasing_its_parameter_is_caught_after_a_refused_step() -> None:
    """A step that goes to torch's path (here for a strided gradient) forgets the kernel's views, so
    an aliasing gradient met during that step, and kept, is checked again at the next."""
    ours_params, their_params = (
        make_params(0, torch.float32, ((3,), (3,))),
        make_params(0, torch.float32, ((3,), (3,))),
    )
    ours, theirs = ASGD(ours_params, t0=1, kernel="numba"), torch.optim.ASGD(their_params, t0=1)
    for step in range(4):
        for params in (ours_params, their_params):
            if step == 0:
                set_gradients(params, step)
            if step == 1:
                params[0].grad = params[0].detach()  # the parameter's own memory, kept from now on
                params[1].grad = torch.arange(6.0)[::2]  # strided: this step goes to torch's path
            if step >= 2:
                params[1].grad = torch.full((3,), float(step))
        ours.step()
        theirs.step()
        assert_same_run(ours, theirs, ours_params, their_params)
    assert "shares memory" in (ours.last_step_paths[0].reason or "")


@pytest.mark.parametrize("path", [None, True], ids=["for-loop", "foreach"])
def test_0d_parameters_with_float64_clocks_multiply_as_torch_does(path: bool | None) -> None:
    """Two 0-d tensors promote one another, so torch multiplies a 0-d float32 parameter by a float64
    ``mu`` (or ``eta``) in float64; that goes to torch's path, and every seed gives torch's bits."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for seed in range(40):
            ours_params = make_params(seed, torch.float32, ((), (2,)))
            their_params = make_params(seed, torch.float32, ((), (2,)))
            kwargs = {"lr": 0.1, "t0": 0.5, "lambd": 0.01, "foreach": path}
            ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
            lockstep(ours, theirs, ours_params, their_params, steps=4)
    finally:
        torch.set_default_dtype(previous)


def test_inference_tensors_fail_as_in_torch() -> None:
    with torch.inference_mode():
        ours_params, their_params = [torch.ones(3)], [torch.ones(3)]
    errors = []
    for cls, params in ((ASGD, ours_params), (torch.optim.ASGD, their_params)):
        params[0].grad = torch.ones(3)
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor") as raised:
            cls(params).step()
        errors.append(str(raised.value))
    assert torch.equal(ours_params[0], their_params[0])


def test_numpy_scalar_hyperparameters_raise_no_overflow_warning() -> None:
    ours_params, their_params = make_params(0, torch.float64), make_params(0, torch.float64)
    kwargs = {"lambd": np.float32(1e-3), "weight_decay": np.float16(1e-2), "t0": 1}
    ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lockstep(ours, theirs, ours_params, their_params, steps=3)


def test_a_step_that_raises_midway_leaves_nothing_half_remembered() -> None:
    """A sparse gradient makes both classes raise after earlier parameters took new gradients; the
    next steps, with the gradients kept (accumulated in place), read those gradients, not the memory
    that the refused step let go of (junk is allocated to take it). A step that raises part-way
    forgets the group's remembered views."""
    ours_params = [torch.ones(256, requires_grad=True) for _ in range(2)]
    their_params = [torch.ones(256, requires_grad=True) for _ in range(2)]
    ours, theirs = ASGD(ours_params, kernel="numba"), torch.optim.ASGD(their_params)
    for _ in range(3):  # the compiled loops get made and used
        for params in (ours_params, their_params):
            for p in params:
                p.grad = torch.full_like(p, 0.5)
        ours.step()
        theirs.step()
        ours.wait_until_compiled()
    for optimizer, params in ((theirs, their_params), (ours, ours_params)):
        params[0].grad = torch.full_like(params[0], 1.0)  # a new gradient: ours lets the old one go
        params[1].grad = torch.full_like(params[1], 1.0).to_sparse()
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            optimizer.step()
        params[1].grad = torch.full_like(params[1], 1.0)
    junk = [torch.full((256,), 1e6) for _ in range(16)]
    for _ in range(3):
        ours.step()
        theirs.step()
        assert_same_run(ours, theirs, ours_params, their_params)
    del junk


def test_the_kernels_table_addresses_the_flat_views_of_every_layout_it_steps() -> None:
    """The compiled kernel steps small groups through a table of addresses taken from
    ``data_ptr()``; for every layout the kernel path takes, element 0 of the flat view it reads
    and writes lies there (a wrong address would step other memory, or nothing)."""
    big = torch.randn(40, requires_grad=True)
    params = [
        torch.randn(3, 4, requires_grad=True),
        torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last).requires_grad_(),
        torch.randn(2, 3, 2, 4, 5).to(memory_format=torch.channels_last_3d).requires_grad_(),
        torch.randn(4, dtype=torch.complex64, requires_grad=True),
        torch.randn((), requires_grad=True),
        torch.randn(0, requires_grad=True),
        torch.randn(5, 1).t().detach().requires_grad_(),  # contiguous, a size-1 dimension's odd stride
        big.detach()[7:19].view(3, 4).requires_grad_(),  # a storage offset
    ]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = ASGD(params, momentum=0.5, kernel="numba")
    optimizer.step()
    optimizer.step()
    assert optimizer.last_step_paths == [StepPath("kernel")]
    views = optimizer._views[0]
    assert len(views.members) == len(params)
    for member in views.members.values():
        task = member.task
        expected = [task.theta.ctypes.data, task.grad.ctypes.data, task.ax.ctypes.data]
        assert task.buf is not None
        expected += [task.buf.ctypes.data, 0, task.theta.size]
        if task.theta.size:  # an empty array's address means nothing
            assert views.table[member.row].tolist() == expected, member.shape
        else:
            assert views.table[member.row].tolist()[4:] == [0, 0]


def momentum_run(kernel: str, case: str) -> list[bytes]:
    """Parameters, averages and momentum buffers after a few steps with momentum where a
    parameter's first momentum step comes when the compiled loop for it is already made: a second
    group, a gradient that first appears at step 3, a group added later."""
    torch.manual_seed(0)
    params = [torch.randn(5, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    if case == "groups":
        optimizer = ASGD([{"params": [p]} for p in params], lr=0.1, momentum=0.9, t0=0, kernel=kernel)
    else:
        optimizer = ASGD(params[:2], lr=0.1, momentum=0.9, t0=0, kernel=kernel)
    for step in range(5):
        if case == "added" and step == 2:
            optimizer.add_param_group({"params": [params[2]]})
        for index, p in enumerate(params):
            late = case == "late gradient" and index == 2 and step < 2
            p.grad = None if late else torch.full_like(p, 1.0 + step + index)
        optimizer.step()
        if kernel == "numba":
            assert all(path is None or path.path == "kernel" for path in optimizer.last_step_paths)
    state = [optimizer.state[p] for p in params if p in optimizer.state]
    return [p.detach().numpy().tobytes() for p in params] + [
        s[key].numpy().tobytes() for s in state for key in ("ax", "momentum_buffer")
    ]


@pytest.mark.parametrize("case", ["groups", "late gradient", "added"])
def test_a_first_momentum_step_in_one_compiled_call_sets_the_buffer(case: str) -> None:
    """The compiled call over a group's table once wrote a new momentum buffer into the parameter
    (the table's buffer column still held the parameter's address): the NumPy kernel and the
    compiled one must agree bit for bit (torch's ASGD has no momentum to compare with)."""
    assert momentum_run("numba", case) == momentum_run("numpy", case)
