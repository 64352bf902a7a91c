"""The optimizer API shared by both implementations: groups, gradients, state and averages."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from reference import DEFAULTS, Parameter
from tests.assertions import assert_same_bits
from tests.streams import Problem

PROBLEM = Problem("api", "float32", ((4, 3), (5,)), steps=12)


def gradient_stream() -> list[list[np.ndarray | None]]:
    return PROBLEM.gradients()


@pytest.mark.parametrize("numerics", ["numpy", "torch", "torch-foreach"])
def test_state_dict_resume_reproduces_the_uninterrupted_run(numerics: str, asgd_class: Any) -> None:
    hyper = {"lr": 0.05, "t0": 3, "momentum": 0.9 if numerics == "numpy" else 0.0, "weight_decay": 0.01}
    grads = gradient_stream()

    straight = PROBLEM.initial_parameters()
    uninterrupted = asgd_class(straight, numerics=numerics, **hyper)
    for g in grads:
        uninterrupted.step(g)

    first_half = PROBLEM.initial_parameters()
    before = asgd_class(first_half, numerics=numerics, **hyper)
    for g in grads[:6]:
        before.step(g)
    saved = before.state_dict()
    resumed_parameters = [p.copy() for p in first_half]
    resumed = asgd_class(
        resumed_parameters, numerics=numerics, lr=123.0
    )  # hyperparameters come from the dict
    resumed.load_state_dict(saved)
    for g in grads[6:]:
        resumed.step(g)

    for a, b in zip(resumed_parameters, straight, strict=True):
        assert_same_bits(a, b, "parameter")
    for a, b in zip(resumed.averages(), uninterrupted.averages(), strict=True):
        assert_same_bits(a, b, "average")
    assert resumed.state_dict()["state"][0]["step"] == uninterrupted.state_dict()["state"][0]["step"] == 12


def test_state_dict_and_load_state_dict_copy_arrays(asgd_class: Any) -> None:
    parameter = np.ones(3, np.float32)
    optimizer = asgd_class([parameter], momentum=0.5, t0=0)
    optimizer.step([np.ones(3, np.float32)])
    saved = optimizer.state_dict()
    saved["state"][0]["ax"][...] = 99
    saved["state"][0]["momentum_buffer"][...] = 99
    assert not (optimizer.state[0].ax == 99).any()
    optimizer.load_state_dict(saved)
    saved["state"][0]["ax"][...] = 7
    assert (optimizer.state[0].ax == 99).all()


def test_state_dict_layout_is_torchs(asgd_class: Any) -> None:
    a, b = np.zeros(2, np.float32), np.zeros(3, np.float64)
    optimizer = asgd_class([{"params": [a]}, {"params": [b], "lr": 0.5}], momentum=0.1)
    optimizer.step([None, np.ones(3)])
    saved = optimizer.state_dict()
    assert list(saved["state"]) == [1]
    assert set(saved["state"][1]) == {"step", "eta", "mu", "ax", "momentum_buffer"}
    assert saved["state"][1]["step"] == 1 and isinstance(saved["state"][1]["step"], int)
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1]]
    assert saved["param_groups"][1] == {**DEFAULTS, "lr": 0.5, "momentum": 0.1, "params": [1]}


def test_none_gradient_leaves_parameter_and_state_untouched(asgd_class: Any) -> None:
    a, b = np.ones(3, np.float32), np.ones(2, np.float32)
    optimizer = asgd_class([a, b], lr=0.1, t0=0, momentum=0.9)
    optimizer.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    before = optimizer.state_dict()["state"][1]
    b_before = b.copy()
    for _ in range(3):
        optimizer.step([np.ones(3, np.float32), None])
    after = optimizer.state_dict()["state"][1]
    assert_same_bits(b, b_before)
    assert (
        after["step"] == before["step"] == 1 and after["eta"] == before["eta"] and after["mu"] == before["mu"]
    )
    assert_same_bits(after["ax"], before["ax"])
    assert_same_bits(after["momentum_buffer"], before["momentum_buffer"])
    assert optimizer.state[0].step == 4


def test_param_groups_equal_separate_optimizers(asgd_class: Any) -> None:
    hyper_a = {"lr": 0.05, "t0": 2, "weight_decay": 0.1}
    hyper_b = {"lr": 0.01, "lambd": 0.3, "maximize": True, "momentum": 0.5}
    grads = gradient_stream()
    a, b = PROBLEM.initial_parameters()
    grouped = asgd_class([{"params": [a], **hyper_a}, {"params": [b], **hyper_b}])
    a2, b2 = PROBLEM.initial_parameters()
    alone_a, alone_b = asgd_class([a2], **hyper_a), asgd_class([b2], **hyper_b)
    for g in grads:
        grouped.step(g)
        alone_a.step([g[0]])
        alone_b.step([g[1]])
    assert_same_bits(a, a2)
    assert_same_bits(b, b2)


def test_add_param_group_steps_the_new_group_with_its_hyperparameters(asgd_class: Any) -> None:
    a, b = np.ones(2, np.float32), np.ones(2, np.float32)
    optimizer = asgd_class([a], lr=0.1)
    optimizer.add_param_group({"params": b, "lr": 0.0, "lambd": 0.0})
    assert optimizer.param_groups[1]["alpha"] == DEFAULTS["alpha"]
    optimizer.step([np.ones(2, np.float32), np.ones(2, np.float32)])
    assert (a < 1).all()
    assert (b == 1).all()  # lr = 0 and lambd = 0 leave it unchanged


def test_parameter_objects_closure_and_zero_grad(asgd_class: Any) -> None:
    parameter = Parameter(np.array([1.0, -2.0], np.float64))
    optimizer = asgd_class([parameter], lr=0.5, lambd=0.0)
    calls = []

    def closure() -> float:
        calls.append(1)
        parameter.grad = 2 * parameter.data  # gradient of |x|^2
        return float(parameter.data @ parameter.data)

    assert optimizer.step(closure=closure) == 5.0
    assert calls == [1]
    assert_same_bits(parameter.data, np.array([0.0, 0.0]))  # x - 0.5 * 2x; -2 + 2 is +0
    optimizer.zero_grad(set_to_none=False)
    assert parameter.grad is not None and (parameter.grad == 0).all()
    optimizer.zero_grad()
    assert parameter.grad is None
    optimizer.step()  # no gradient: skipped
    assert optimizer.state[0].step == 1


def test_averages_before_and_after_averaging_starts(asgd_class: Any) -> None:
    parameter = np.array([1.0, 2.0], np.float64)
    optimizer = asgd_class([parameter], lr=0.1, t0=1, lambd=0.0)
    assert_same_bits(optimizer.averages()[0], parameter)  # not stepped: its own average
    iterates = []
    for _ in range(5):
        optimizer.step([np.ones(2)])
        iterates.append(parameter.copy())
    # torch's schedule: averaging starts with iterate t0 + 2 = 3, so ax is the mean of iterates 3..5.
    np.testing.assert_allclose(optimizer.averages()[0], np.mean(iterates[2:], axis=0), rtol=1e-15)
    assert optimizer.averages()[0] is not optimizer.state[0].ax


def test_t0_inf_keeps_averages_equal_to_parameters(asgd_class: Any) -> None:
    parameter = np.linspace(-1, 1, 7).astype(np.float32)
    optimizer = asgd_class([parameter], lr=0.1, t0=float("inf"))
    for g in Problem("g", "float32", ((7,),), steps=20).gradients():
        optimizer.step(g)
        assert_same_bits(optimizer.averages()[0], parameter)


def test_momentum_zero_keeps_no_buffer(asgd_class: Any) -> None:
    optimizer = asgd_class([np.ones(2, np.float32)])
    optimizer.step([np.ones(2, np.float32)])
    assert optimizer.state[0].momentum_buffer is None
    assert "momentum_buffer" not in optimizer.state_dict()["state"][0]


def test_deepcopy_continues_identically(asgd_class: Any) -> None:
    parameter = np.ones(4, np.float32)
    optimizer = asgd_class([parameter], lr=0.1, t0=1, momentum=0.9)
    grads = Problem("g", "float32", ((4,),), steps=8).gradients()
    for g in grads[:4]:
        optimizer.step(g)
    twin = copy.deepcopy(optimizer)
    for g in grads[4:]:
        optimizer.step(g)
        twin.step(g)
    assert_same_bits(twin.param_groups[0]["params"][0], parameter)
    assert_same_bits(twin.averages()[0], optimizer.averages()[0])


def test_defaults_are_the_api_pages(asgd_class: Any) -> None:
    optimizer = asgd_class([np.zeros(1, np.float32)])
    assert optimizer.defaults == {
        "lr": 1e-3,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "alpha": 0.75,
        "t0": 1e6,
        "lambd": 1e-4,
        "maximize": False,
        "numerics": "numpy",
    }


def test_first_momentum_step_uses_the_gradient_itself(asgd_class: Any) -> None:
    """``buf = g`` at the first step (torch SGD's rule), not ``(1 + momentum) * g`` as in lucid."""
    parameter = np.zeros(1, np.float64)
    optimizer = asgd_class([parameter], lr=1.0, lambd=0.0, momentum=0.9)
    optimizer.step([np.ones(1)])
    assert parameter[0] == -1.0
    optimizer.step([np.ones(1)])
    assert optimizer.state[0].momentum_buffer is not None
    assert optimizer.state[0].momentum_buffer[0] == 0.9 * 1.0 + 1.0


def test_averaged_parameters_swaps_in_the_averages_and_restores_exact_bits(asgd_class: Any) -> None:
    a = np.array([1.0, -0.0, np.nan], np.float32)
    b = np.array([0.25], np.float64)
    optimizer = asgd_class([a, b], lr=0.1, t0=0)
    optimizer.step([np.array([1.0, 2.0, 3.0], np.float32), None])
    optimizer.step([np.array([-1.0, 0.5, 1.0], np.float32), None])
    originals = [a.tobytes(), b.tobytes()]
    averages = optimizer.averages()
    with optimizer.averaged_parameters():
        assert_same_bits(a, averages[0])
        assert_same_bits(b, averages[1])  # never stepped: its own average
    assert [a.tobytes(), b.tobytes()] == originals

    with pytest.raises(RuntimeError, match="evaluation failed"), optimizer.averaged_parameters():
        a[...] = 7
        raise RuntimeError("evaluation failed")
    assert [a.tobytes(), b.tobytes()] == originals


def test_a_step_inside_averaged_parameters_is_refused_and_changes_nothing(asgd_class: Any) -> None:
    """Inside the block the parameters hold the averages and are restored on exit, so a step there
    would be thrown away while the clocks and averages advanced: it is refused, and works after."""
    a = np.array([1.0, 2.0], np.float32)
    optimizer = asgd_class([a], lr=0.1, t0=0)
    optimizer.step([np.ones(2, np.float32)])
    before = copy.deepcopy(optimizer.state_dict())
    with optimizer.averaged_parameters():
        inside = a.tobytes()
        with pytest.raises(RuntimeError, match=r"step\(\) inside averaged_parameters\(\)"):
            optimizer.step([np.ones(2, np.float32)])
        assert a.tobytes() == inside
    after = optimizer.state_dict()
    assert after["state"][0]["step"] == before["state"][0]["step"]
    assert after["state"][0]["ax"].tobytes() == before["state"][0]["ax"].tobytes()
    optimizer.step([np.ones(2, np.float32)])
    assert optimizer.state_dict()["state"][0]["step"] == before["state"][0]["step"] + 1


def test_parameter_objects_keep_their_arrays(asgd_class: Any) -> None:
    w = Parameter(np.zeros(3))
    data = w.data
    optimizer = asgd_class([w], lr=0.5)
    w.grad = np.ones(3)
    optimizer.step()
    assert w.data is data and (data < 0).all()


def test_overlapping_averaged_parameters_blocks_give_the_weights_back(asgd_class: Any) -> None:
    """Blocks that overlap, of two threads or nested, exit in any order: the parameters hold the
    averages while one is open and the weights after the last closes. (Each block used to save what
    the parameters held when it opened, the averages if another was open.) A block object cannot
    be entered twice, and after blocks of two optimizers closed out of order the SIGINT handler is
    the one that was in place."""
    import signal
    import threading

    p = np.ones(4, np.float32)
    optimizer = asgd_class([p], lr=0.1, t0=0)
    for step in range(3):
        optimizer.step([np.full(4, step + 1.0, np.float32)])
    weights, averages = p.tobytes(), optimizer.averages()[0].tobytes()
    assert weights != averages
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bytes] = []

    def first() -> None:
        with optimizer.averaged_parameters():
            first_in.set()
            second_in.wait(timeout=1800)
        first_out.set()

    def second() -> None:
        first_in.wait(timeout=1800)
        with optimizer.averaged_parameters():
            second_in.set()
            first_out.wait(timeout=1800)
            seen.append(p.tobytes())  # the first block has closed, this one is open

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    assert seen == [averages]
    assert p.tobytes() == weights

    block = optimizer.averaged_parameters()
    with block:
        with pytest.raises(RuntimeError, match="already open"), block:
            pass
        assert p.tobytes() == averages
    assert p.tobytes() == weights

    handler = signal.getsignal(signal.SIGINT)
    q = np.ones(3, np.float32)
    other = asgd_class([q], lr=0.1)
    other.step([np.ones(3, np.float32)])
    a, b = optimizer.averaged_parameters(), other.averaged_parameters()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGINT) is handler
    assert p.tobytes() == weights


@pytest.mark.parametrize("where", ["constructor", "param group", "checkpoint"])
def test_the_old_name_of_the_numpy_profile_is_accepted_with_a_deprecation_warning(
    asgd_class: Any, where: str
) -> None:
    """``numerics="fast"`` was renamed ``"numpy"`` (it is not faster than the torch profile): an old
    script, group or checkpoint still runs, as the numpy profile, and is told the new name."""
    parameter = np.ones(3, np.float32)
    with pytest.warns(DeprecationWarning, match="numerics='fast' is now called 'numpy'"):
        if where == "constructor":
            optimizer = asgd_class([parameter], numerics="fast")
        elif where == "param group":
            optimizer = asgd_class([{"params": [parameter], "numerics": "fast"}])
        else:
            optimizer = asgd_class([parameter])
            saved = optimizer.state_dict()
            saved["param_groups"][0]["numerics"] = "fast"
            optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["numerics"] == "numpy"
    twin_parameter = parameter.copy()
    twin = asgd_class([twin_parameter], numerics="numpy")
    for opt in (optimizer, twin):
        opt.step([np.full(3, 0.5, np.float32)])
    assert parameter.tobytes() == twin_parameter.tobytes()
