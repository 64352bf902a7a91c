"""The step as plan → backend: the arrays resolved at every step (replaced, appended, reshaped and
read-only parameters), the clocks of packed runs cut apart, and optimizers stepped, copied and saved
from other threads. The kernels chosen by ``kernel=``, the compiled kernel's rounding (no contraction
in the numpy profile) and its on-disk cache are in ``test_numba_kernel.py``."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import optimized
import reference
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED

ROOT = Path(__file__).resolve().parents[2]
HYPER = {"lr": 0.1, "t0": 1, "momentum": 0.5, "weight_decay": 0.01}


def both(
    asgd_class: Any, make: Callable[[Any], list[np.ndarray]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run the same program (``make`` builds and drives an optimizer, returning the arrays to
    compare) on ``asgd_class`` and on the reference."""
    return make(asgd_class), make(reference.ASGD)


def step_while(optimizer: Any, grads: list[np.ndarray], sample: Callable[[], Any]) -> list[Any]:
    """Step ``optimizer`` through ``grads`` while another thread calls ``sample`` again and again;
    what ``sample`` returned, in order."""
    done, samples = threading.Event(), []

    def repeat() -> None:
        while not done.is_set():
            samples.append(sample())

    other = threading.Thread(target=repeat)
    other.start()
    try:
        for g in grads:
            optimizer.step([g])
    finally:
        done.set()
        other.join()
    return samples


def gradient(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# ----------------------------------------------------------------- parameters resolved at each step


def test_a_replaced_data_array_is_the_one_updated(asgd_class: Any) -> None:
    def program(cls: Any) -> list[np.ndarray]:
        old, new = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
        w = optimized.Parameter(old)
        optimizer = cls([w], **HYPER)
        w.grad = gradient(5, 0)
        optimizer.step()
        before = old.copy()
        w.data = new
        w.grad = gradient(5, 1)
        optimizer.step()
        assert_same_bits(old, before, "the replaced array is no longer touched")
        return [new, *optimizer.averages()]

    ours, spec = both(asgd_class, program)
    assert not (ours[0] == 2.0).all(), "the new array was not updated"
    for a, b in zip(ours, spec, strict=True):
        assert_same_bits(a, b)


def test_a_replaced_list_entry_and_an_appended_parameter_are_updated(asgd_class: Any) -> None:
    def program(cls: Any) -> list[np.ndarray]:
        a, b, c = np.ones(3, np.float32), np.full(3, 2.0, np.float32), np.full(4, 3.0, np.float32)
        optimizer = cls([a], **HYPER)
        optimizer.step([gradient(3, 0)])
        stepped_once = a.copy()
        optimizer.param_groups[0]["params"][0] = b
        optimizer.step([gradient(3, 1)])
        optimizer.param_groups[0]["params"].append(c)
        optimizer.step([gradient(3, 2), gradient(4, 3)])
        optimizer.step([gradient(3, 4), gradient(4, 5)])
        assert_same_bits(a, stepped_once, "the replaced array is no longer touched")
        return [b, c, *optimizer.averages()]

    ours, spec = both(asgd_class, program)
    assert not (ours[0] == 2.0).any() and not (ours[1] == 3.0).any()
    for x, y in zip(ours, spec, strict=True):
        assert_same_bits(x, y)


def test_a_replaced_array_of_another_shape_is_refused_before_anything_changes(asgd_class: Any) -> None:
    a, b = np.ones(3, np.float32), np.ones(4, np.float32)
    optimizer = asgd_class([a], **HYPER)
    optimizer.step([gradient(3, 0)])
    optimizer.param_groups[0]["params"][0] = b
    with pytest.raises(ValueError, match=r"params\[0\] has shape \(4,\).*state was made for shape \(3,\)"):
        optimizer.step([gradient(4, 1)])
    assert (b == 1).all() and optimizer.state[0].step == 1


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_a_read_only_packed_parameter_is_refused_on_the_packed_path(kernel: str) -> None:
    params = optimized.pack([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    grads = optimized.pack([np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    optimizer = OPTIMIZED[kernel](params, **HYPER)
    optimizer.step(grads)
    before = [p.copy() for p in params], optimizer.state_dict()
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\] is read-only"):
        optimizer.step(grads)
    for p, q in zip(params, before[0], strict=True):
        assert_same_bits(p, q)
    for index, entry in optimizer.state_dict()["state"].items():
        assert_same_bits(entry["ax"], before[1]["state"][index]["ax"])
        assert entry["step"] == 1


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_state_dict_from_another_thread_never_disturbs_a_step(kernel: str) -> None:
    """Averaging starts during the run; ``state_dict()`` is called in a loop from a second thread.
    Every snapshot is the state after some whole step, and the run ends as it would alone."""
    n, steps = 2_000_000, 6
    grads = [gradient(n, seed) for seed in range(steps)]
    alone = np.linspace(-1, 1, n, dtype=np.float32)
    sequential = OPTIMIZED[kernel]([alone], lr=0.01, t0=2)
    after_step = {0: None}
    for number, g in enumerate(grads, 1):
        sequential.step([g])
        after_step[number] = sequential.averages()[0]

    theta = np.linspace(-1, 1, n, dtype=np.float32)
    optimizer = OPTIMIZED[kernel]([theta], lr=0.01, t0=2)
    snapshots = step_while(optimizer, grads, optimizer.state_dict)
    assert_same_bits(theta, alone, "parameters")
    assert_same_bits(optimizer.averages()[0], sequential.averages()[0], "averages")
    assert snapshots
    for snapshot in snapshots:
        if snapshot["state"]:
            entry = snapshot["state"][0]
            assert_same_bits(entry["ax"], after_step[entry["step"]], f"snapshot at step {entry['step']}")


# ------------------------------------------------------------------ clocks of packed runs cut apart


def packed_program(cls: Any, actions: list[Any]) -> list[np.ndarray]:
    """Packed parameters driven by ``actions``: a gradient row to step with, or a callable that
    changes the optimizer (and returns it, maybe a copy)."""
    rng = np.random.default_rng(3)
    params = optimized.pack([rng.standard_normal(s).astype(np.float32) for s in ((3,), (2, 2), (5,))])
    optimizer = cls(list(params), lr=0.1, t0=1, momentum=0.5)
    for action in actions:
        if callable(action):
            optimizer = action(optimizer)
        else:
            optimizer.step([None if g is None else g.copy() for g in action])
    saved = optimizer.state_dict()
    steps = [np.array(saved["state"][i]["step"]) for i in sorted(saved["state"])]
    return [*optimizer.param_groups[0]["params"], *optimizer.averages(), *steps]


def rows(*present: str) -> list[list[np.ndarray | None]]:
    rng = np.random.default_rng(4)
    shapes = ((3,), (2, 2), (5,))
    return [[rng.standard_normal(s).astype(np.float32) if flag == "g" else None for s, flag in zip(shapes, row, strict=True)]
            for row in present]  # fmt: skip


def replace_second(optimizer: Any) -> Any:
    optimizer.param_groups[0]["params"][1] = optimizer.param_groups[0]["params"][1].copy()
    return optimizer


def round_trip(optimizer: Any) -> Any:
    return pickle.loads(pickle.dumps(optimizer))


@pytest.mark.parametrize(
    "program",
    [
        rows("ggg", "-g-", "g--", "ggg", "ggg"),  # cut apart twice
        [*rows("ggg"), replace_second, *rows("g--", "ggg")],  # a packed parameter replaced
        [*rows("ggg"), round_trip, *rows("g-g", "ggg")],  # a copy, then part of the run
        [*rows("ggg", "ggg"), lambda o: (o.state.clear(), o)[1], *rows("ggg")],  # state cleared
    ],
    ids=["cut twice", "replaced", "copied", "state cleared"],
)
def test_a_packed_run_cut_apart_keeps_one_clock_per_parameter(asgd_class: Any, program: list[Any]) -> None:
    for a, b in zip(
        packed_program(asgd_class, program), packed_program(reference.ASGD, program), strict=True
    ):
        assert_same_bits(a, b)


def test_a_parameter_changed_in_place_is_looked_at_afresh(asgd_class: Any) -> None:
    """A new dtype or shape given in place no longer fits the state: refused, nothing changed;
    a kernel never sees arrays of different lengths."""
    theta = np.arange(1.0, 5.0).astype(np.complex64)
    optimizer = asgd_class([theta], lr=0.1)
    optimizer.step([np.ones(4, np.complex64)])
    before = theta.copy()
    theta.dtype = np.float64  # the same 32 bytes, now 4 float64
    with pytest.raises(
        ValueError, match=r"params\[0\] has shape \(4,\) and dtype float64, but its state was made"
    ):
        optimizer.step([np.ones(4)])
    theta.dtype = np.complex64
    assert_same_bits(theta, before)
    theta.shape = (2, 2)
    with pytest.raises(
        ValueError, match=r"params\[0\] has shape \(2, 2\) and dtype complex64, but its state"
    ):
        optimizer.step([np.ones((2, 2), np.complex64)])
    assert_same_bits(theta.reshape(-1), before)


def test_the_fast_step_counter_is_exact_beyond_2_pow_53(asgd_class: Any) -> None:
    optimizer = asgd_class([np.ones(2)], lr=0.1)
    saved = optimizer.state_dict()
    saved["state"] = {0: {"step": 2**53 + 1, "eta": 0.1, "mu": 1.0, "ax": np.ones(2)}}
    optimizer.load_state_dict(saved)
    assert optimizer.state_dict()["state"][0]["step"] == 2**53 + 1
    optimizer.step([np.ones(2)])
    assert optimizer.state_dict()["state"][0]["step"] == 2**53 + 2
    saved["state"][0]["step"] = 2**63 + 7
    optimizer.load_state_dict(saved)
    assert optimizer.state_dict()["state"][0]["step"] == 2**63 + 7


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_two_optimizers_in_two_threads_give_the_sequential_bits(kernel: str) -> None:
    n = 1_500_000
    grads = [gradient(n, seed) for seed in range(4)]

    def run(theta: np.ndarray) -> Any:
        optimizer = OPTIMIZED[kernel]([theta], lr=0.01, t0=1, momentum=0.5)
        for g in grads:
            optimizer.step([g])
        return optimizer

    alone = [np.linspace(-1, 1, n, dtype=np.float32) for _ in range(2)]
    sequential = [run(theta) for theta in alone]
    together = [np.linspace(-1, 1, n, dtype=np.float32) for _ in range(2)]
    results: list[Any] = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, run(together[i]))) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(2):
        assert_same_bits(together[i], alone[i], f"optimizer {i}")
        assert_same_bits(results[i].averages()[0], sequential[i].averages()[0], f"averages {i}")


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
def test_a_copy_from_another_thread_never_holds_half_a_step(kernel: str) -> None:
    """``copy.deepcopy`` and pickling take the lock: a copy made during the steps of another thread
    is the state after some whole step."""
    n, steps = 2_000_000, 6
    grads = [gradient(n, seed) for seed in range(steps)]
    sequential = OPTIMIZED[kernel]([np.linspace(-1, 1, n, dtype=np.float32)], lr=0.01, t0=2)
    after_step: dict[int, np.ndarray] = {}
    for number, g in enumerate(grads + grads, 1):
        sequential.step([g])
        after_step[number] = sequential.averages()[0]
    optimizer = OPTIMIZED[kernel]([np.linspace(-1, 1, n, dtype=np.float32)], lr=0.01, t0=2)
    copies = step_while(optimizer, grads, lambda: copy.deepcopy(optimizer))  # steps 1 to 6
    copies += step_while(optimizer, grads, lambda: pickle.loads(pickle.dumps(optimizer)))  # 7 to 12
    assert copies
    for twin in copies:
        if twin.state:
            assert_same_bits(
                twin.averages()[0], after_step[twin.state[0].step], f"a copy at step {twin.state[0].step}"
            )


@pytest.mark.parametrize("replaced", ["ax", "momentum_buffer", "entry", "clock"])
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_state_part_replaced_between_steady_steps_is_the_one_updated(replaced: str, kernel: str) -> None:
    """After steady steps (the layout remembered, and the check that skips comparing every entry in
    force), an entry, its clock or one of its arrays replaced by an equal copy is the one stepped: the
    run goes on bit for bit as if nothing had been replaced, and the old object is no longer touched."""
    import dataclasses

    def run(replace: bool) -> tuple[list[np.ndarray], Any, Any]:
        params = [np.linspace(-1, 1, 100, dtype=np.float32) + k for k in range(3)]
        optimizer = optimized.ASGD(params, lr=0.1, t0=0, momentum=0.5, kernel=kernel)
        grads = [np.full(100, 0.25, np.float32) * (k + 1) for k in range(3)]
        for _ in range(4):
            optimizer.step(grads)
        entry = optimizer.state[1]
        old: Any = getattr(entry, replaced) if replaced != "entry" else entry
        new: Any = (
            copy.copy(old)
            if replaced == "clock"
            else copy.deepcopy(old)
            if replaced == "entry"
            else old.copy()
        )
        if replace and replaced == "entry":
            optimizer.state[1] = dataclasses.replace(
                entry, ax=entry.ax.copy(), momentum_buffer=entry.momentum_buffer.copy()
            )
            new = optimizer.state[1]
        elif replace:
            setattr(entry, replaced, new)
        frozen = copy.deepcopy(old)
        for _ in range(3):
            optimizer.step(grads)
        return [*params, *optimizer.averages()], (old, frozen), optimizer.state[1]

    replaced_run, (old, frozen), now = run(True)
    twin, _, twin_entry = run(False)
    for a, b in zip(replaced_run, twin, strict=True):
        assert_same_bits(a, b)
    for name in ("ax", "momentum_buffer"):
        assert_same_bits(getattr(now, name), getattr(twin_entry, name))
    if replaced in ("ax", "momentum_buffer"):
        assert_same_bits(old, frozen, "the replaced array is no longer touched")
    elif replaced == "clock":
        assert (old.step, old.eta, old.mu) == (frozen.step, frozen.eta, frozen.mu), (
            "the old clock stands still"
        )
        assert now.clock.step == twin_entry.clock.step
    else:
        assert_same_bits(old.ax, frozen.ax, "the replaced entry's average is no longer touched")
