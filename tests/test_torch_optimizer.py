"""``optimized.torch.ASGD`` is a ``torch.optim.Optimizer`` that steps as ``torch.optim.ASGD`` does,
bit for bit, on both of torch's CPU paths, with torch's object model (inputs and error inputs from
torch's own ``optim_db``, shipped in the wheel)."""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import subprocess
import sys
import warnings
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


# ------------------------------------------------------------------------------- the class


def test_signature_is_torchs_plus_keyword_only_extensions() -> None:
    ours = inspect.signature(ASGD).parameters
    theirs = inspect.signature(torch.optim.ASGD).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    extensions = {name: p for name, p in ours.items() if name not in theirs}
    assert {name: p.kind for name, p in extensions.items()} == {
        "momentum": inspect.Parameter.KEYWORD_ONLY,
        "kernel": inspect.Parameter.KEYWORD_ONLY,
    }
    assert extensions["momentum"].default == 0 and extensions["kernel"].default == "auto"


def test_is_a_torch_optimizer_named_asgd() -> None:
    optimizer = ASGD(make_params(0, torch.float32))
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert type(optimizer).__name__ == "ASGD"
    assert optimizer.defaults["lr"] == 1e-2  # torch's default, not the NumPy API's 1e-3


def test_positional_arguments_mean_what_they_mean_in_torch() -> None:
    params = make_params(0, torch.float32)
    optimizer = ASGD(params, 0.05, 1e-3, 0.6, 4.0, 0.1, False, True)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["lambd"], group["alpha"], group["t0"], group["weight_decay"]) == (
        0.05,
        1e-3,
        0.6,
        4.0,
        0.1,
    )
    assert (group["foreach"], group["maximize"], group["momentum"]) == (False, True, 0.0)


def test_import_optimized_does_not_import_torch() -> None:
    code = "import sys, optimized; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


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


# -------------------------------------------------------------------------- object model


def test_step_takes_a_positional_closure_and_returns_its_loss() -> None:
    params = make_params(0, torch.float32, ((3,),))
    optimizer = ASGD(params)

    def closure() -> Any:
        optimizer.zero_grad()
        loss = (params[0] ** 2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0


def test_state_is_keyed_by_parameter_with_torchs_keys_and_dtypes() -> None:
    ours_params, their_params = make_params(0, torch.float64), make_params(0, torch.float64)
    ours, theirs = ASGD(ours_params), torch.optim.ASGD(their_params)
    lockstep(ours, theirs, ours_params, their_params, steps=1)
    for a, b in zip(ours_params, their_params, strict=True):
        assert set(ours.state[a]) == {"step", "eta", "mu", "ax"}
        for key in ("step", "eta", "mu", "ax"):
            assert ours.state[a][key].dtype == theirs.state[b][key].dtype
            assert ours.state[a][key].shape == theirs.state[b][key].shape


def test_bare_tensor_groups_named_parameters_and_extra_keys() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = ASGD([{"params": model.weight, "name": "weights"}, {"params": [model.bias], "lr": 0.5}])
    before = model.weight.detach().clone()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight.detach()), "a bare tensor group was not stepped"
    state_dict = optimizer.state_dict()
    assert state_dict["param_groups"][0]["name"] == "weights"
    named = ASGD(model.named_parameters())
    assert named.param_groups[0]["param_names"] == ["weight", "bias"]
    named.load_state_dict(copy.deepcopy(named.state_dict()))


def test_state_dicts_through_torch_save_and_weights_only_load() -> None:
    ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
    ours, theirs = ASGD(ours_params, t0=1), torch.optim.ASGD(their_params, t0=1)
    lockstep(ours, theirs, ours_params, their_params, steps=3)
    for optimizer in (ours, theirs):
        loaded = through_a_file(optimizer.state_dict())
        assert loaded["param_groups"] == optimizer.state_dict()["param_groups"]


def through_a_file(state_dict: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("path", [None, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_checkpoints_swap_between_the_two_classes_mid_run(dtype: Any, path: bool | None) -> None:
    """torch 3 steps → ours 3 → torch 3, against torch throughout, with the same hand-overs
    through ``torch.save``/``torch.load(weights_only=True)`` (loading casts a float64 parameter's
    ``eta`` and ``mu`` to float64 in torch, so the comparison run checkpoints too)."""
    kwargs = {"lr": 0.05, "t0": 2, "weight_decay": 0.01, "lambd": 0.02, "foreach": path}
    torch_params, swapped_params = make_params(0, dtype), make_params(0, dtype)
    runs = {
        "torch only": (torch_params, [torch.optim.ASGD] * 3),
        "swapped": (swapped_params, [torch.optim.ASGD, ASGD, torch.optim.ASGD]),
    }
    current = {name: classes[0](params, **kwargs) for name, (params, classes) in runs.items()}
    for step in range(9):
        for name, (params, classes) in runs.items():
            if step and step % 3 == 0:
                checkpoint = through_a_file(current[name].state_dict())
                current[name] = classes[step // 3](params, lr=1.0)  # the checkpoint sets every value
                current[name].load_state_dict(checkpoint)
            set_gradients(params, step)
            current[name].step()
        assert_same_run(current["swapped"], current["torch only"], swapped_params, torch_params)


def test_an_older_state_dict_without_the_newer_flags_loads_with_torchs_defaults() -> None:
    ours_params = make_params(0, torch.float32)
    their_params = make_params(0, torch.float32)
    theirs = torch.optim.ASGD(their_params, t0=1)
    set_gradients(their_params, 0)
    theirs.step()
    state_dict = copy.deepcopy(theirs.state_dict())
    for group in state_dict["param_groups"]:
        for key in ("maximize", "foreach", "differentiable", "capturable"):
            del group[key]
    for entry in state_dict["state"].values():
        entry["step"] = entry["step"].item()  # torch's oldest states kept a number
    with torch.no_grad():
        for a, b in zip(ours_params, their_params, strict=True):
            a.copy_(b)
    ours = ASGD(ours_params)
    ours.load_state_dict(state_dict)
    group = ours.param_groups[0]
    assert (
        group["maximize"],
        group["foreach"],
        group["differentiable"],
        group["capturable"],
        group["momentum"],
    ) == (False, None, False, False, 0.0)
    lockstep(ours, theirs, ours_params, their_params, steps=3)


def test_repeated_groups_are_numbered_as_torch_numbers_them() -> None:
    def state_dict_of(cls: Any) -> Any:
        return cls(
            [{"params": make_params(0, torch.float32)[:2]}, {"params": make_params(1, torch.float32)[:2]}]
        ).state_dict()

    assert [g["params"] for g in state_dict_of(ASGD)["param_groups"]] == [
        g["params"] for g in state_dict_of(torch.optim.ASGD)["param_groups"]
    ]


def test_all_hooks_run_including_torchs_global_step_hooks() -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    params = make_params(0, torch.float32, ((3,),))
    optimizer = ASGD(params)
    calls: list[str] = []
    handles = [
        optimizer.register_step_pre_hook(lambda *_: calls.append("pre")),
        optimizer.register_step_post_hook(lambda *_: calls.append("post")),
        optimizer.register_state_dict_pre_hook(lambda *_: calls.append("sd-pre")),
        optimizer.register_state_dict_post_hook(lambda _, sd: calls.append("sd-post")),
        optimizer.register_load_state_dict_pre_hook(lambda *_: calls.append("load-pre")),
        optimizer.register_load_state_dict_post_hook(lambda *_: calls.append("load-post")),
        register_optimizer_step_pre_hook(lambda *_: calls.append("global-pre")),
        register_optimizer_step_post_hook(lambda *_: calls.append("global-post")),
    ]
    try:
        set_gradients(params, 0)
        optimizer.step()
        optimizer.load_state_dict(optimizer.state_dict())
    finally:
        for handle in handles:
            handle.remove()
    assert calls == ["global-pre", "pre", "post", "global-post", "sd-pre", "sd-post", "load-pre", "load-post"]


def test_copies_and_pickles_keep_the_kernel_and_the_bits() -> None:
    params = make_params(0, torch.float32)
    optimizer = ASGD(params, t0=1, kernel="numpy")
    set_gradients(params, 0)
    optimizer.step()
    for twin in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        assert twin.kernel == "numpy" and twin.backend == "numpy"
        assert {k for k in vars(twin) if not k.startswith("_")} == {
            k for k in vars(optimizer) if not k.startswith("_")
        }
        twin_params = [p for g in twin.param_groups for p in g["params"]]
        set_gradients(twin_params, 1)
        twin.step()
        assert twin.last_step_paths == [StepPath("kernel")]


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "error_input",
    list(OPTIM_INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32)),
    ids=lambda e: e.optimizer_error_input.desc,
)
def test_optim_db_error_inputs_fail_as_in_torch(error_input: Any) -> None:
    given = error_input.optimizer_error_input
    if issubclass(error_input.error_type, Warning):
        with pytest.warns(error_input.error_type, match=error_input.error_regex):
            ASGD(given.params, **given.kwargs)
        return
    with pytest.raises(error_input.error_type, match=error_input.error_regex):
        ASGD(given.params, **given.kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": -0.1}, ValueError, "Invalid learning rate: -0.1"),
        ({"lambd": -1e-4}, ValueError, "Invalid lambd value: -0.0001"),
        ({"alpha": -0.75}, ValueError, "Invalid alpha value: -0.75"),
        ({"alpha": float("inf")}, ValueError, "Invalid alpha value: inf"),
        ({"t0": float("nan")}, ValueError, "Invalid t0 value: nan"),
        ({"momentum": -0.5}, ValueError, "Invalid momentum value: -0.5"),
        ({"kernel": "gpu"}, ValueError, "Invalid kernel: 'gpu'"),
        ({"lr": "0.1"}, TypeError, "lr must be a real number"),
        ({"maximize": 1}, TypeError, "maximize must be a bool"),
        ({"foreach": "yes"}, TypeError, "foreach must be None or a bool"),
        ({"foreach": 1}, TypeError, "foreach must be None or a bool"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_value(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        ASGD(make_params(0, torch.float32), **kwargs)


def test_a_bad_value_set_between_steps_is_refused_before_anything_changes() -> None:
    params = make_params(0, torch.float32)
    optimizer = ASGD(params, t0=1)
    set_gradients(params, 0)
    optimizer.step()
    before = [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())
    optimizer.param_groups[0]["lambd"] = -1.0
    with pytest.raises(ValueError, match=r"Invalid lambd value: -1\.0"):
        optimizer.step()
    for p, saved in zip(params, before[0], strict=True):
        assert torch.equal(p.detach(), saved)
    state = optimizer.state_dict()["state"]
    for index, entry in before[1]["state"].items():
        for key, value in entry.items():
            assert torch.equal(state[index][key], value)
    with pytest.raises(ValueError, match="Invalid alpha value"):
        optimizer.add_param_group({"params": make_params(1, torch.float32), "alpha": -1})
    assert len(optimizer.param_groups) == 1


def test_a_bad_state_dict_is_refused_before_anything_changes() -> None:
    params = make_params(0, torch.float32)
    optimizer = ASGD(params, t0=1)
    set_gradients(params, 0)
    optimizer.step()
    state_dict = copy.deepcopy(optimizer.state_dict())
    state_dict["param_groups"][0]["alpha"] = -2.0
    with pytest.raises(ValueError, match=r"Invalid alpha value: -2\.0"):
        optimizer.load_state_dict(state_dict)
    assert optimizer.param_groups[0]["alpha"] == 0.75


def test_the_bit_comparison_catches_a_one_ulp_difference() -> None:
    """Meta-test: the lock-step check fails when one value of one state tensor moves by one ULP."""
    ours_params, their_params = make_params(0, torch.float32), make_params(0, torch.float32)
    ours, theirs = ASGD(ours_params, t0=1), torch.optim.ASGD(their_params, t0=1)
    lockstep(ours, theirs, ours_params, their_params, steps=2)
    average = ours.state[ours_params[1]]["ax"]
    average.view(-1)[3] = torch.tensor(np.nextafter(average.view(-1)[3].item(), np.inf, dtype=np.float32))
    with pytest.raises(AssertionError, match=r"state\[1\]\['ax'\]: 1 of 7 real scalars differ"):
        assert_same_run(ours, theirs, ours_params, their_params)


def test_warnings_are_not_raised_on_the_kernel_path() -> None:
    params = make_params(0, torch.float32)
    optimizer = ASGD(params, t0=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(3):
            set_gradients(params, step)
            optimizer.step()


def test_the_numpy_api_points_torch_users_to_this_class() -> None:
    import optimized

    with pytest.warns(FutureWarning, match=r"for torch tensors use optimized\.torch\.ASGD"):
        optimized.ASGD(make_params(0, torch.float32))
    numpy_optimizer = optimized.ASGD([np.zeros(3)])
    with pytest.warns(FutureWarning, match=r"optimized\.torch\.ASGD"):
        numpy_optimizer.add_param_group({"params": make_params(1, torch.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimized.ASGD([np.zeros(3)]).add_param_group({"params": [np.zeros(2)]})


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
        ours._backend.wait_until_loaded()
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
