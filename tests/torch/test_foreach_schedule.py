"""η's schedule in the ``torch-foreach`` profile: ``TORCH_FOREACH.schedule`` against the ``eta`` and
``mu`` of torch's own foreach expression, bit for bit (and a check that the for-loop path's schedule
would be caught); ``alpha=0.5``, whose ``** 0.5`` no rounding model reproduces, refused everywhere
with nothing changed; and ``rounding.div``, the model's correctly rounded division, against NumPy.
The lock-step runs against ``torch.optim.ASGD(foreach=True)`` are in
``test_matches_torch_foreach.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from reference import rounding
from reference.numerics import FOREACH_UNMODELLED_ALPHAS, TORCH, TORCH_FOREACH

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------------ alpha = 0.5 is refused


def snapshot(parameters: list[np.ndarray], optimizer: Any) -> list[bytes]:
    """The bytes of every parameter and of every array and scalar in the state dict."""
    state = optimizer.state_dict()["state"]
    return [p.tobytes() for p in parameters] + [
        np.asarray(value).tobytes() for index in sorted(state) for _, value in sorted(state[index].items())
    ]


@pytest.mark.parametrize("alpha", [0.5, np.float64(0.5), np.float32(0.5)], ids=repr)
def test_an_alpha_of_one_half_is_refused_everywhere(alpha: Any, asgd_class: Any) -> None:
    """torch's foreach η takes ``** 0.5`` with MKL's sqrt, which no rounding model reproduces: the
    profile refuses the value at construction, in ``add_param_group``, in ``load_state_dict`` and at
    ``step()`` after a group's alpha was set to it, and changes nothing when it does."""
    refused = r"Invalid alpha: .*0\.5.* for numerics='torch-foreach'"
    with pytest.raises(ValueError, match=refused):
        asgd_class([np.ones(3, np.float32)], numerics="torch-foreach", alpha=alpha)
    with pytest.raises(ValueError, match=refused):
        asgd_class([{"params": [np.ones(3, np.float32)], "alpha": alpha}], numerics="torch-foreach")

    parameters = [np.array([1.0, -2.0, 3.0], np.float32), np.array([0.5, 0.25])]
    optimizer = asgd_class(parameters[:1], numerics="torch-foreach", lr=0.1, t0=0)
    gradient = np.array([0.5, 1.0, -1.0], np.float32)
    optimizer.step([gradient])
    before = snapshot(parameters, optimizer)

    with pytest.raises(ValueError, match=refused):
        optimizer.add_param_group({"params": [parameters[1]], "alpha": alpha})
    assert len(optimizer.param_groups) == 1

    saved = optimizer.state_dict()
    saved["param_groups"][0]["alpha"] = alpha
    with pytest.raises(ValueError, match=refused):
        optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["alpha"] == 0.75

    optimizer.param_groups[0]["alpha"] = alpha
    with pytest.raises(ValueError, match=refused):
        optimizer.step([gradient])
    assert snapshot(parameters, optimizer) == before

    optimizer.param_groups[0]["alpha"] = 0.75  # and the optimizer goes on as before
    optimizer.step([gradient])
    assert snapshot(parameters, optimizer) != before


# ------------------------------------------------------------------------------- the η schedule


SCHEDULE_ALPHAS = (0.0, 0.3, 0.75, 1.0, 2.0, 3.0)


def schedule_draws(count: int) -> list[tuple[Any, Any, float, Any, Any]]:
    """``(lr, lambd, step, alpha, t0)``: lr and lambd over many decades (λ·lr·step from 0 past
    float32's range), steps up to 2**24, the special alphas and random ones, and a share of NumPy
    scalar hyperparameters of each float type."""
    rng = np.random.default_rng(2026)
    draws = []
    for i in range(count):
        lr: Any = float(10 ** rng.uniform(-6, 1))
        lambd: Any = 0.0 if i % 11 == 0 else float(10 ** rng.uniform(-8, 3))
        step = float(rng.integers(1, 2**24 + 1) if i % 2 else rng.integers(1, 1000))
        alpha: Any = SCHEDULE_ALPHAS[i % 8] if i % 8 < len(SCHEDULE_ALPHAS) else float(rng.uniform(0, 4))
        t0: Any = float(rng.choice([0.0, 3.0, 1e6, 2**24 - 5.0]))
        kind = i % 5
        if kind == 1:
            lr = np.float32(lr)
        elif kind == 2:
            lambd, alpha = np.float32(lambd), np.float64(alpha)
        elif kind == 3:
            lr, alpha, t0 = np.float64(lr), np.float32(alpha), np.float32(t0)
        elif kind == 4:
            lr, lambd = np.float16(min(lr, 1.0)), np.float64(lambd)
        assert alpha not in FOREACH_UNMODELLED_ALPHAS
        draws.append((lr, lambd, step, alpha, t0))
    return draws


def torch_foreach_schedule(lr: Any, lambd: Any, step: float, alpha: Any, t0: Any) -> tuple[bytes, bytes]:
    """torch's foreach ``eta`` and ``mu`` as its ``_multi_tensor_asgd`` computes them from a float32
    0-d ``step`` tensor, as the float32 bytes its state stores."""
    step_tensor = torch.tensor(step, dtype=torch.float32)
    eta = torch.as_tensor(lr / ((1 + lambd * lr * step_tensor) ** alpha)).to(torch.float32)
    mu = torch.as_tensor(1 / max(1, step_tensor.item() - t0)).to(torch.float32)
    return eta.numpy().tobytes(), mu.numpy().tobytes()


def test_eta_schedule_model_matches_torchs_foreach_expression() -> None:
    """``TORCH_FOREACH.schedule`` gives torch's foreach ``eta`` and ``mu``, bit for bit."""
    for lr, lambd, step, alpha, t0 in schedule_draws(4000):
        eta, mu = TORCH_FOREACH.schedule(step, lr=lr, lambd=lambd, alpha=alpha, t0=t0)
        torch_eta, torch_mu = torch_foreach_schedule(lr, lambd, step, alpha, t0)
        where = f"lr={lr!r}, lambd={lambd!r}, step={step!r}, alpha={alpha!r}, t0={t0!r}"
        assert np.float32(eta).tobytes() == torch_eta, f"eta, {where}: model {eta!r}, torch {torch_eta!r}"
        assert np.float32(mu).tobytes() == torch_mu, f"mu, {where}: model {mu!r}, torch {torch_mu!r}"


def test_the_schedule_check_can_fail() -> None:
    """The for-loop path's schedule (binary64, rounded once) misses torch's foreach η on some draws:
    the comparison above would catch a profile that used it."""
    misses = 0
    for lr, lambd, step, alpha, t0 in schedule_draws(400):
        eta, _ = TORCH.schedule(step, lr=lr, lambd=lambd, alpha=alpha, t0=t0)
        misses += np.float32(eta).tobytes() != torch_foreach_schedule(lr, lambd, step, alpha, t0)[0]
    assert misses > 0


# ----------------------------------------------------------------------------- rounding.div


DIVISION_FORMATS: dict[str, tuple[rounding.BinaryFormat, type[np.floating[Any]]]] = {
    "float32": (rounding.BINARY32, np.float32),
    "float64": (rounding.BINARY64, np.float64),
}


def assert_quotient(fmt: rounding.BinaryFormat, dtype: type[np.floating[Any]], a: float, b: float) -> None:
    """``rounding.div`` equals NumPy's correctly rounded quotient in bits (any NaN for NaN)."""
    got = rounding.div(fmt, a, b)
    with np.errstate(all="ignore"):
        expected = np.divide(dtype(a), dtype(b))
    if np.isnan(expected):
        assert math.isnan(got), f"{a!r} / {b!r}: {got!r}, expected NaN"
        return
    assert np.array(got, dtype).tobytes() == expected.tobytes(), f"{a!r} / {b!r}: {got!r} vs {expected!r}"


SPECIAL_QUOTIENTS = [
    (1.0, 0.0, math.inf), (1.0, -0.0, -math.inf), (-1.0, 0.0, -math.inf), (-1.0, -0.0, math.inf),
    (math.inf, 0.0, math.inf), (-math.inf, -0.0, math.inf), (math.inf, 2.0, math.inf), (math.inf, -2.0, -math.inf),
    (0.0, 0.0, math.nan), (-0.0, 0.0, math.nan), (math.inf, math.inf, math.nan), (math.inf, -math.inf, math.nan),
    (1.0, math.inf, 0.0), (1.0, -math.inf, -0.0), (-1.0, math.inf, -0.0), (-1.0, -math.inf, 0.0),
    (0.0, 5.0, 0.0), (-0.0, 5.0, -0.0), (0.0, -5.0, -0.0), (0.0, math.inf, 0.0), (-0.0, math.inf, -0.0),
    (math.nan, 1.0, math.nan), (1.0, math.nan, math.nan), (math.nan, 0.0, math.nan),
]  # fmt: skip


@pytest.mark.parametrize("dtype_name", DIVISION_FORMATS)
@pytest.mark.parametrize(("a", "b", "expected"), SPECIAL_QUOTIENTS)
def test_div_special_cases(a: float, b: float, expected: float, dtype_name: str) -> None:
    """IEEE division: x/0 an infinity signed as a product, 0/0 and inf/inf NaN, x/inf a zero
    signed as a product."""
    fmt, dtype = DIVISION_FORMATS[dtype_name]
    got = rounding.div(fmt, a, b)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected and math.copysign(1, got) == math.copysign(1, expected), (got, expected)
    assert_quotient(fmt, dtype, a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [(1e-45, 2.0), (-1e-45, 2.0), (3e-45, 2.0), (3e38, 1e-3), (-3e38, 0.5), (1.0, 3.0), (1e-38, 3.0)],
)
def test_div_rounds_ties_to_even_underflows_and_overflows_in_float32(a: float, b: float) -> None:
    """Halfway quotients between subnormals (ties to even, down to a signed zero), quotients past
    float32's largest value, and an inexact one in the subnormal range."""
    assert_quotient(rounding.BINARY32, np.float32, float(np.float32(a)), b)


@pytest.mark.parametrize("dtype_name", DIVISION_FORMATS)
def test_div_matches_numpy_on_random_bit_patterns(dtype_name: str) -> None:
    """Random encodings (subnormals, infinities, NaNs included) and ordinary quotients near 1:
    the model's quotient is NumPy's, bit for bit."""
    fmt, dtype = DIVISION_FORMATS[dtype_name]
    rng = np.random.default_rng(7)
    patterns = np.frombuffer(rng.bytes(1500 * 2 * np.dtype(dtype).itemsize), dtype).reshape(1500, 2)
    ordinary = rng.standard_normal((1500, 2)).astype(dtype)
    for a, b in np.concatenate([patterns, ordinary]):
        assert_quotient(fmt, dtype, float(a), float(b))
