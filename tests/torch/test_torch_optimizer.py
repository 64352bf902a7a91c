"""``optimized.torch.ASGD`` steps as ``torch.optim.ASGD`` does, bit for bit, on both of torch's CPU
paths (inputs from torch's own ``optim_db``, shipped in the wheel), and hands to torch's own step what
its kernel does not serve. The lock-step helpers here are shared with the other torch test modules:
the Optimizer API, hooks, checkpoints, pickling and refusals are in ``test_torch_optimizer_api.py``,
what changes between two steps in ``test_torch_optimizer_between_steps.py``."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
common_optimizers = pytest.importorskip("torch.testing._internal.common_optimizers")

from optimized.torch import ASGD, StepPath  # noqa: E402
from tests.assertions import assert_same_bits  # noqa: E402

PATHS = {"for-loop (foreach=None)": None, "for-loop (foreach=False)": False, "foreach": True}
DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
OPTIM_INFO = next(info for info in common_optimizers.optim_db if info.optim_cls.__name__ == "ASGD")


def optim_inputs(dtype: Any = torch.float32) -> list[Any]:
    return list(OPTIM_INFO.optim_inputs_func(device="cpu", dtype=dtype))


def make_params(
    seed: int, dtype: Any, shapes: tuple[tuple[int, ...], ...] = ((5, 3), (7,), (2, 3, 4, 4), ())
) -> list[Any]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, dtype=dtype, generator=generator).requires_grad_() for shape in shapes]


def set_gradients(params: list[Any], step: int) -> None:
    generator = torch.Generator().manual_seed(1000 + step)
    for p in params:
        p.grad = torch.randn(p.shape, dtype=p.dtype, generator=generator)


def assert_same_tensor(actual: Any, expected: Any, what: str) -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.dtype == torch.bfloat16:  # NumPy has no bfloat16: compare the encodings
        actual, expected = actual.detach().view(torch.int16), expected.detach().view(torch.int16)
        assert torch.equal(actual, expected), f"{what}: bfloat16 encodings differ"
        return
    assert (actual.is_neg(), actual.is_conj()) == (expected.is_neg(), expected.is_conj()), (
        f"{what}: lazy bits"
    )
    actual, expected = (
        actual.detach().resolve_neg().resolve_conj(),
        expected.detach().resolve_neg().resolve_conj(),
    )
    assert_same_bits(actual.numpy(), expected.numpy(), what)


def assert_same_run(ours: Any, theirs: Any, our_params: list[Any], their_params: list[Any]) -> None:
    """Parameters, and every state tensor (``step``, ``eta``, ``mu``, ``ax``), bit for bit."""
    for index, (a, b) in enumerate(zip(our_params, their_params, strict=True)):
        assert_same_tensor(a, b, f"parameter {index}")
        assert set(ours.state[a]) == set(theirs.state[b]), f"state keys of parameter {index}"
        for key, value in theirs.state[b].items():
            assert_same_tensor(ours.state[a][key], value, f"state[{index}][{key!r}]")


def lockstep(
    ours: Any, theirs: Any, our_params: list[Any], their_params: list[Any], steps: int,
    between: Callable[[int], None] = lambda step: None,
    gradients: Callable[[list[Any], int], None] = set_gradients,
) -> None:  # fmt: skip
    """Both classes step in lock step, with the same bits after every step; where torch's step
    refuses (raises), ours must raise the same error, having changed nothing torch did not, and
    the run ends there."""
    for step in range(steps):
        gradients(our_params, step)
        gradients(their_params, step)
        our_error, their_error = raised(ours.step), raised(theirs.step)
        assert (type(our_error), str(our_error)) == (type(their_error), str(their_error)), f"step {step}"
        assert_same_run(ours, theirs, our_params, their_params)
        if their_error is not None:
            return
        between(step)


def raised(call: Callable[[], object]) -> Exception | None:
    """The exception ``call`` raised, or ``None``."""
    try:
        call()
    except Exception as error:
        return error
    return None


def through_a_file(state_dict: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ------------------------------------------------------------------- bits, on optim_db's inputs


@pytest.mark.parametrize("path", PATHS.values(), ids=list(PATHS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("optim_input", optim_inputs(), ids=lambda i: i.desc)
def test_optim_db_inputs_give_torchs_bits(optim_input: Any, dtype: Any, path: bool | None) -> None:
    kwargs = {**optim_input.kwargs, "foreach": path}
    kwargs.setdefault("t0", 3)  # torch's inputs never average (t0 >= 100): make line 7 average here
    ours_params, their_params = make_params(0, dtype), make_params(0, dtype)
    ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
    lockstep(ours, theirs, ours_params, their_params, steps=8)
    assert ours.last_step_paths == [StepPath("kernel")]


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("path", [False, True], ids=["for-loop", "foreach"])
def test_every_kernel_gives_torchs_bits(kernel: str, path: bool) -> None:
    kwargs = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "lambd": 0.01, "alpha": 0.5, "foreach": path}
    ours_params, their_params = make_params(1, torch.float32), make_params(1, torch.float32)
    ours = ASGD(ours_params, kernel=kernel, **kwargs)
    lockstep(ours, torch.optim.ASGD(their_params, **kwargs), ours_params, their_params, steps=6)
    assert ours.backend == kernel


def test_groups_of_different_dtypes_and_hyperparameters() -> None:
    def groups(seed: int) -> list[dict[str, Any]]:
        return [
            {"params": make_params(seed, torch.float32), "lr": 0.03, "t0": 1},
            {"params": make_params(seed + 1, torch.complex128), "weight_decay": 0.2, "maximize": True},
            {"params": make_params(seed + 2, torch.float64)[0], "alpha": 2.0, "lambd": 0.5, "t0": 0},
        ]

    ours_groups, their_groups = groups(0), groups(0)
    ours, theirs = ASGD(ours_groups, lr=0.01), torch.optim.ASGD(their_groups, lr=0.01)
    our_params = [p for g in ours.param_groups for p in g["params"]]
    their_params = [p for g in theirs.param_groups for p in g["params"]]
    lockstep(ours, theirs, our_params, their_params, steps=6)


def test_parameters_without_gradients_keep_their_own_clocks() -> None:
    ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
    ours, theirs = ASGD(ours_params, t0=2), torch.optim.ASGD(their_params, t0=2)
    for step in range(7):
        for params in (ours_params, their_params):
            set_gradients(params, step)
            params[step % 4].grad = None
        ours.step()
        theirs.step()
        assert_same_run(ours, theirs, ours_params, their_params)


def test_default_dtype_float64_makes_float64_clocks_as_torch_does() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
        ours, theirs = ASGD(ours_params, t0=1, lr=0.1), torch.optim.ASGD(their_params, t0=1, lr=0.1)
        lockstep(ours, theirs, ours_params, their_params, steps=5)
        assert ours.state[ours_params[0]]["eta"].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_channels_last_parameters_are_stepped_by_the_kernel() -> None:
    def params() -> list[Any]:
        return [
            p.detach().to(memory_format=torch.channels_last).requires_grad_()
            for p in make_params(0, torch.float32, ((2, 3, 4, 5),))
        ]

    ours_params, their_params = params(), params()
    ours, theirs = ASGD(ours_params, t0=1), torch.optim.ASGD(their_params, t0=1)

    def gradients(params: list[Any], step: int) -> None:
        set_gradients(params, step)
        for p in params:
            p.grad = p.grad.contiguous(memory_format=torch.channels_last)

    lockstep(ours, theirs, ours_params, their_params, steps=4, gradients=gradients)
    assert ours.last_step_paths == [StepPath("kernel")]


# ----------------------------------------------------------------------- torch's path


def torch_path_cases() -> Iterator[tuple[str, Callable[[], list[Any]], dict[str, Any], str]]:
    yield "float16", lambda: make_params(0, torch.float16), {}, "float16"
    yield "bfloat16", lambda: make_params(0, torch.bfloat16), {}, "bfloat16"
    yield "tensor lr", lambda: make_params(0, torch.float32), {"lr": torch.tensor(0.01)}, "lr is a tensor"
    yield (
        "differentiable",
        lambda: [p.detach() for p in make_params(0, torch.float32)],
        {"differentiable": True},
        "differentiable",
    )
    yield (
        "transposed",
        lambda: [p.detach().t().requires_grad_() for p in make_params(0, torch.float32, ((4, 3),))],
        {},
        "layout",
    )
    yield "overlapping views", lambda: overlapping_views(), {}, "share memory"
    yield (
        "a Parameter subclass",
        lambda: [FlatParameterLike(p.detach()) for p in make_params(0, torch.float32)],
        {},
        "is a FlatParameterLike",
    )


class FlatParameterLike(torch.nn.Parameter):
    """A tensor subclass, as FSDP's ``FlatParameter`` (and ``DTensor``) are: stepped by torch's path."""


def overlapping_views() -> list[Any]:
    base = torch.randn(8, generator=torch.Generator().manual_seed(0))
    return [base[0:5].requires_grad_(), base[3:8].requires_grad_()]


@pytest.mark.parametrize("path", [None, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("case", list(torch_path_cases()), ids=lambda case: case[0])
def test_what_the_kernel_does_not_serve_runs_torchs_asgd(case: Any, path: bool | None) -> None:
    _, params, kwargs, reason = case
    if kwargs.get("differentiable") and path:
        pytest.skip("torch's foreach path refuses differentiable=True")
    ours_params, their_params = params(), params()
    kwargs = {"t0": 1, "weight_decay": 0.1, **kwargs, "foreach": path}
    ours, theirs = ASGD(ours_params, **kwargs), torch.optim.ASGD(their_params, **kwargs)
    for step in range(4):
        for group in (ours_params, their_params):
            generator = torch.Generator().manual_seed(step)
            for p in group:
                p.grad = torch.randn(p.shape, dtype=p.dtype, generator=generator)
        with torch.no_grad():
            ours.step()
            theirs.step()
        assert_same_run(ours, theirs, ours_params, their_params)
    (taken,) = ours.last_step_paths
    assert taken is not None and taken.path == "torch" and reason in (taken.reason or ""), taken


def test_duplicate_parameters_warn_as_in_torch_and_step_as_torch_does() -> None:
    (p,) = make_params(0, torch.float32, ((3,),))
    (q,) = make_params(0, torch.float32, ((3,),))
    with pytest.warns(UserWarning, match="duplicate parameters"):
        ours = ASGD([p, p], t0=0)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        theirs = torch.optim.ASGD([q, q], t0=0)
    for step in range(3):
        set_gradients([p], step)
        set_gradients([q], step)
        ours.step()
        theirs.step()
        assert_same_run(ours, theirs, [p], [q])
    assert ours.last_step_paths[0] is not None and ours.last_step_paths[0].path == "torch"


def test_momentum_is_the_same_on_both_paths_and_matches_the_numpy_api() -> None:
    import optimized

    kwargs = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "lambd": 0.01, "maximize": True}
    on_kernel = make_params(0, torch.complex64, ((3, 4),))
    on_torch = [
        p.detach().t().contiguous().t().requires_grad_() for p in make_params(0, torch.complex64, ((3, 4),))
    ]
    arrays = [p.detach().numpy().copy() for p in make_params(0, torch.complex64, ((3, 4),))]
    kernel_optimizer = ASGD(on_kernel, momentum=0.9, **kwargs)
    torch_optimizer = ASGD(on_torch, momentum=0.9, **kwargs)
    numpy_optimizer = optimized.ASGD(arrays, momentum=0.9, numerics="torch", **kwargs)
    for step in range(6):
        set_gradients(on_kernel, step)
        set_gradients(on_torch, step)
        kernel_optimizer.step()
        torch_optimizer.step()
        numpy_optimizer.step([on_kernel[0].grad.numpy()])
        assert_same_run(torch_optimizer, kernel_optimizer, on_torch, on_kernel)
        assert_same_bits(on_kernel[0].detach().numpy(), arrays[0], "vs optimized.ASGD")
        assert_same_bits(
            kernel_optimizer.state[on_kernel[0]]["ax"].numpy(),
            numpy_optimizer.averages()[0],
            "average vs optimized.ASGD",
        )
    assert kernel_optimizer.last_step_paths[0] == StepPath("kernel")
    assert (
        torch_optimizer.last_step_paths[0] is not None and torch_optimizer.last_step_paths[0].path == "torch"
    )


# ----------------------------------------------------------------------------- the check can fail


def test_the_bit_comparison_catches_a_one_ulp_difference() -> None:
    """Meta-test: the lock-step check fails when one value of one state tensor moves by one ULP."""
    ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
    ours, theirs = ASGD(ours_params, t0=1), torch.optim.ASGD(their_params, t0=1)
    lockstep(ours, theirs, ours_params, their_params, steps=2)
    average = ours.state[ours_params[1]]["ax"]
    average.view(-1)[3] = torch.tensor(np.nextafter(average.view(-1)[3].item(), np.inf, dtype=np.float32))
    with pytest.raises(AssertionError, match=r"state\[1\]\['ax'\]: 1 of 7 real scalars differ"):
        assert_same_run(ours, theirs, ours_params, their_params)
