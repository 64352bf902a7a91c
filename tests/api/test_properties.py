"""Invariants of ASGD as Hypothesis properties, one test each, bit-exact where the claim is exact."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference.numerics import FOREACH_UNMODELLED_ALPHAS
from tests.assertions import assert_same_bits
from tests.strategies import arrays, dtypes, hyperparameters, property_test, shapes
from tests.streams import random_array


@st.composite
def single_runs(draw: st.DrawFn, numerics: str = "numpy", max_steps: int = 6) -> tuple[Any, ...]:
    dtype = draw(dtypes(numerics))
    shape = draw(shapes(max_dims=2, max_side=4))
    hyper = draw(hyperparameters())
    start = draw(arrays(dtype, shape))
    grads = [draw(arrays(dtype, shape)) for _ in range(draw(st.integers(1, max_steps)))]
    return dtype, hyper, start, grads


def trajectory(
    asgd_class: Any, start: np.ndarray, grads: list[np.ndarray], **hyper: Any
) -> tuple[np.ndarray, Any]:
    theta = start.copy()
    optimizer = asgd_class([theta], **hyper)
    for g in grads:
        optimizer.step([g])
    return theta, optimizer


@property_test(run=single_runs())
def test_determinism(asgd_class: Any, run: tuple[Any, ...]) -> None:
    _, hyper, start, grads = run
    a, opt_a = trajectory(asgd_class, start, grads, **hyper)
    b, opt_b = trajectory(asgd_class, start, grads, **hyper)
    assert_same_bits(a, b)
    assert_same_bits(opt_a.averages()[0], opt_b.averages()[0])


@property_test(run=single_runs())
def test_maximize_equals_minimizing_the_negated_gradient(asgd_class: Any, run: tuple[Any, ...]) -> None:
    _, hyper, start, grads = run
    up, _ = trajectory(asgd_class, start, grads, **{**hyper, "maximize": True})
    negated = [np.negative(g, out=np.empty_like(g)) for g in grads]
    down, _ = trajectory(asgd_class, start, negated, **{**hyper, "maximize": False})
    assert_same_bits(up, down)


def plus_weight_decay(g: np.ndarray, theta: np.ndarray, wd: float) -> np.ndarray:
    """``g + wd * theta`` in the dtype's real scalars, two roundings, as NumPy code writes it."""
    real = theta.real.dtype
    with np.errstate(all="ignore"):
        summed = g.reshape(-1).view(real) + real.type(wd) * theta.reshape(-1).view(real)
    return summed.view(g.dtype).reshape(g.shape)


@st.composite
def seeded_runs(draw: st.DrawFn) -> tuple[Any, ...]:
    """Like ``single_runs``, with normal random values (full significands, so products round)."""
    dtype = draw(dtypes("numpy"))
    shape = draw(shapes(max_dims=2, max_side=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = random_array(rng, shape, dtype)
    grads = [random_array(rng, shape, dtype) for _ in range(draw(st.integers(1, 6)))]
    return dtype, draw(hyperparameters()), start, grads


@property_test(run=st.one_of(single_runs(), seeded_runs()))
def test_weight_decay_equals_adding_it_to_the_gradient_by_hand(asgd_class: Any, run: tuple[Any, ...]) -> None:
    """Fast profile: line 3 is exactly ``g + wd * theta`` computed by hand before the step."""
    _, hyper, start, grads = run
    hyper = {**hyper, "weight_decay": 0.1, "maximize": False}  # not a power of two: wd * theta rounds
    decayed, _ = trajectory(asgd_class, start, grads, **hyper)
    theta = start.copy()
    optimizer = asgd_class([theta], **{**hyper, "weight_decay": 0.0})
    for g in grads:
        optimizer.step([plus_weight_decay(g, theta, 0.1)])
    assert_same_bits(theta, decayed)


@property_test(run=single_runs())
def test_zero_lr_leaves_theta_unchanged(asgd_class: Any, run: tuple[Any, ...]) -> None:
    """eta = 0, so neither the gradient nor the decay (lambd * eta) moves theta. Without momentum
    and weight decay, which can overflow the effective gradient to inf and make 0 * inf a NaN."""
    _, hyper, start, grads = run
    theta, _ = trajectory(
        asgd_class, start, grads, **{**hyper, "lr": 0.0, "momentum": 0.0, "weight_decay": 0.0}
    )
    np.testing.assert_array_equal(theta, start)  # values: theta - 0 * g may turn -0 into +0


@property_test(run=single_runs())
def test_zero_lambd_and_zero_gradients_leave_theta_unchanged(asgd_class: Any, run: tuple[Any, ...]) -> None:
    """With lambd = 0 there is no decay, so zero gradients (and no weight decay) change nothing."""
    _, hyper, start, grads = run
    zeros = [np.zeros_like(g) for g in grads]
    theta, _ = trajectory(asgd_class, start, zeros, **{**hyper, "lambd": 0.0, "weight_decay": 0.0})
    np.testing.assert_array_equal(theta, start)


@property_test(run=single_runs())
def test_t0_inf_keeps_averages_equal_to_parameters(asgd_class: Any, run: tuple[Any, ...]) -> None:
    _, hyper, start, grads = run
    theta, optimizer = trajectory(asgd_class, start, grads, **{**hyper, "t0": math.inf})
    assert_same_bits(optimizer.averages()[0], theta)


@property_test(run=single_runs())
def test_dtype_and_shape_are_preserved(asgd_class: Any, run: tuple[Any, ...]) -> None:
    _, hyper, start, grads = run
    theta, optimizer = trajectory(asgd_class, start, grads, **hyper)
    assert theta.dtype == start.dtype and theta.shape == start.shape
    state = optimizer.state_dict()["state"][0]
    assert state["ax"].dtype == start.dtype and state["ax"].shape == start.shape
    (average,) = optimizer.averages()
    assert average.dtype == start.dtype and average.shape == start.shape


@pytest.mark.parametrize("numerics", ["numpy", "torch", "torch-foreach"])
@property_test(
    lr=st.floats(1e-4, 1.0), lambd=st.floats(0.0, 1.0), alpha=st.floats(0.0, 2.0), t0=st.floats(0.0, 10.0),
    steps=st.integers(1, 30),
)  # fmt: skip
def test_eta_and_mu_follow_their_closed_forms(
    asgd_class: Any, numerics: str, lr: float, lambd: float, alpha: float, t0: float, steps: int
) -> None:
    """After s steps: eta = lr / (1 + lambd*lr*s)**alpha and mu = 1 / max(1, s - t0), in binary64
    (fast), rounded to float32 (torch profile, whose counter is exact this far), or, for eta, as
    torch's foreach path evaluates it on a float32 step tensor (torch-foreach profile)."""
    if numerics == "torch-foreach":
        assume(alpha not in FOREACH_UNMODELLED_ALPHAS)
    optimizer = asgd_class(
        [np.zeros(2, np.float32)], lr=lr, lambd=lambd, alpha=alpha, t0=t0, numerics=numerics
    )
    for _ in range(steps):
        optimizer.step([np.ones(2, np.float32)])
    state = optimizer.state_dict()["state"][0]
    eta, mu = lr / (1 + lambd * lr * steps) ** alpha, 1 / max(1, steps - t0)
    if numerics == "torch":
        eta, mu = float(np.float32(eta)), float(np.float32(mu))
    if numerics == "torch-foreach":
        torch = pytest.importorskip("torch")
        eta = torch.as_tensor(lr / ((1 + lambd * lr * torch.tensor(float(steps))) ** alpha)).item()
        mu = float(np.float32(mu))
    assert float(state["step"]) == steps
    assert float(state["eta"]) == eta and float(state["mu"]) == mu


moderate = hnp.arrays(np.float64, 3, elements=st.floats(-1e6, 1e6))


@property_test(start=moderate, grads=st.lists(moderate, min_size=5, max_size=25), t0=st.integers(0, 3))
def test_averages_are_the_mean_of_iterates_t0_plus_2_on(
    asgd_class: Any, start: np.ndarray, grads: list[np.ndarray], t0: int
) -> None:
    """ax_s = mean(theta_{t0+2} .. theta_s), within a rounding bound derived for the recurrence
    ax_k = ax_{k-1} + mu_k (theta_k - ax_{k-1}): each update commits at most 3 roundings of
    relative size u = 2**-53, plus mu's own rounding, on values bounded by M = max |theta_j| (ax
    is a convex combination of iterates), and it is not amplified since 0 < mu <= 1: after m
    averaged iterates the error is at most m * 8u * M."""
    theta = start.copy()
    optimizer = asgd_class([theta], lr=0.01, lambd=0.0, t0=t0)
    iterates = []
    for g in grads:
        optimizer.step([g])
        iterates.append(theta.copy())
    averaged = iterates[t0 + 1 :]  # iterate numbers t0 + 2 .. s
    assert averaged, "the strategy draws at least t0 + 2 steps"
    exact = [sum(Fraction(float(it[i])) for it in averaged) / len(averaged) for i in range(3)]
    bound = (
        Fraction(len(averaged) * 8)
        * Fraction(2.0**-53)
        * max(Fraction(float(np.max(np.abs(it)))) for it in averaged)
    )
    for got, want in zip(optimizer.averages()[0].tolist(), exact, strict=True):
        assert abs(Fraction(got) - want) <= bound
