"""``optimized.torch.ASGD`` is a ``torch.optim.Optimizer`` with torch's object model: its signature,
closures, state keys and dtypes, hooks, checkpoints swapped with ``torch.optim.ASGD`` through
``torch.save``/``torch.load(weights_only=True)``, older state dicts, copies and pickles, and bad
values (``optim_db``'s error inputs among them) refused with nothing changed."""

from __future__ import annotations

import copy
import inspect
import pickle
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optimized.torch import ASGD, StepPath  # noqa: E402
from tests.torch.test_torch_optimizer import (  # noqa: E402
    DTYPES,
    OPTIM_INFO,
    assert_same_run,
    lockstep,
    make_params,
    set_gradients,
    through_a_file,
)

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


@pytest.mark.e2e  # runs a new interpreter
def test_import_optimized_does_not_import_torch() -> None:
    code = "import sys, optimized; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


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
