"""``reference.ASGD(numerics="numpy")`` against a direct NumPy evaluation of the eight lines.

The oracle below is the algorithm written as natural NumPy code: whole-array expressions, scalars
as Python floats cast to the array's dtype, complex arrays through their real views. The reference
must produce its bits exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import ASGD, DEFAULTS
from tests.assertions import assert_same_bits
from tests.streams import Problem


def real_view(array: np.ndarray) -> np.ndarray:
    return array.view(array.real.dtype) if np.iscomplexobj(array) else array


def numpy_asgd(
    problem: Problem, hyper: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """The trajectory of one parameter, ``(theta, ax, buf)`` after each step, in plain NumPy."""
    h = {**DEFAULTS, **hyper}
    (theta,) = (np.ascontiguousarray(p) for p in problem.initial_parameters())
    theta = real_view(theta.copy())
    cast = theta.dtype.type
    ax, buf = np.zeros_like(theta), None
    step, eta, mu = 0, h["lr"], 1.0
    trajectory = []
    for (gradient,) in problem.gradients():
        g = real_view(np.ascontiguousarray(gradient).copy())
        step += 1  # 1  # noqa: SIM113 (line 1 of the algorithm, kept as written)
        if h["maximize"]:
            g = -g  # 2
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite gradients are tested too
            if h["weight_decay"] != 0:
                g = g + cast(h["weight_decay"]) * theta  # 3
            if h["momentum"] != 0:
                buf = g.copy() if buf is None else cast(h["momentum"]) * buf + g  # 4
                g = buf
            theta = theta * cast(1 - h["lambd"] * eta)  # 5
            theta = theta - cast(eta) * g  # 6
            ax = theta.copy() if mu == 1 else ax + cast(mu) * (theta - ax)  # 7
        eta = h["lr"] / (1 + h["lambd"] * h["lr"] * step) ** h["alpha"]  # 8
        mu = 1 / max(1, step - h["t0"])
        trajectory.append((theta.copy(), ax.copy(), None if buf is None else buf.copy()))
    return trajectory


def assert_reference_matches_numpy(problem: Problem, hyper: dict[str, Any]) -> None:
    (parameter,) = problem.initial_parameters()
    optimizer = ASGD([parameter], numerics="numpy", **hyper)
    for step, ((gradient,), (theta, ax, buf)) in enumerate(
        zip(problem.gradients(), numpy_asgd(problem, hyper), strict=True), 1
    ):
        optimizer.step([gradient])
        state = optimizer.state[0]
        assert_same_bits(
            real_view(np.ascontiguousarray(parameter)), theta, f"{problem.name}: theta at step {step}"
        )
        assert_same_bits(real_view(np.ascontiguousarray(state.ax)), ax, f"{problem.name}: ax at step {step}")
        if buf is None:
            assert state.momentum_buffer is None
        else:
            assert state.momentum_buffer is not None
            assert_same_bits(
                real_view(np.ascontiguousarray(state.momentum_buffer)), buf, f"buf at step {step}"
            )


FAST_CASES = [
    ("float16", {"lr": 0.05, "t0": 10, "momentum": 0.9}),
    ("float16", {"lr": 0.01, "t0": 3, "weight_decay": 0.1, "maximize": True}),
    ("float32", {"lr": 0.05, "t0": 10, "momentum": 0.5, "weight_decay": 0.01, "lambd": 0.1}),
    ("float32", {"lr": 0.02, "t0": 0, "alpha": 1.5}),
    ("float64", {"lr": 0.05, "t0": 10, "momentum": 0.9, "maximize": True}),
    ("float64", {"lr": 0.3, "t0": 20, "lambd": 2.0, "weight_decay": 0.3}),
    ("complex128", {"lr": 0.05, "t0": 10, "momentum": 0.7, "weight_decay": 0.05}),
    ("complex64", {"lr": 0.05, "t0": 2.5, "lambd": 0.3}),
]


@pytest.mark.parametrize(
    ("dtype", "hyper"), FAST_CASES, ids=[f"{d}-{i}" for i, (d, _) in enumerate(FAST_CASES)]
)
def test_fast_profile_matches_numpy(dtype: str, hyper: dict[str, Any]) -> None:
    assert_reference_matches_numpy(Problem(f"{dtype}", dtype, ((5, 3),), steps=50), hyper)


@pytest.mark.parametrize("strided", [False, True])
def test_fast_profile_matches_numpy_on_non_finite_gradients(strided: bool) -> None:
    problem = Problem("non-finite", "float32", ((9,),), steps=30, non_finite=True, strided=strided)
    assert_reference_matches_numpy(problem, {"lr": 0.05, "t0": 5, "momentum": 0.9, "weight_decay": 0.1})


hyperparameters = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([0.0, 1e-3, 0.05, 0.5]),
        "t0": st.sampled_from([0.0, 2.0, 7.5, float("inf")]),
        "lambd": st.sampled_from([0.0, 1e-4, 0.3]),
        "alpha": st.sampled_from([0.0, 0.75, 2.0]),
        "weight_decay": st.sampled_from([0.0, 0.1]),
        "momentum": st.sampled_from([0.0, 0.5, 0.99]),
        "maximize": st.booleans(),
    }
)


@given(
    dtype=st.sampled_from(["float16", "float32", "float64", "complex128"]),
    shape=st.sampled_from([(), (1,), (3, 2), (7,)]),
    hyper=hyperparameters,
    seed=st.integers(0, 2**16),
)
def test_fast_profile_matches_numpy_over_hyperparameters(
    dtype: str, shape: tuple[int, ...], hyper: dict[str, Any], seed: int
) -> None:
    assert_reference_matches_numpy(Problem("random", dtype, (shape,), steps=12, seed=seed), hyper)


def test_fast_step_counter_is_exact_past_2_pow_24() -> None:
    parameter = np.ones(2, np.float32)
    optimizer = ASGD([parameter], numerics="numpy", t0=0)
    state = optimizer.state_dict()
    optimizer.step([np.zeros(2, np.float32)])
    state = optimizer.state_dict()
    state["state"][0]["step"] = 2**24
    optimizer.load_state_dict(state)
    for expected in range(2**24 + 1, 2**24 + 4):
        optimizer.step([np.zeros(2, np.float32)])
        assert optimizer.state[0].step == expected
        assert isinstance(optimizer.state_dict()["state"][0]["step"], int)
    assert optimizer.state[0].mu == 1 / (2**24 + 3)
