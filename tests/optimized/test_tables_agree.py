"""The small tables each implementation states on its own agree: defaults, profiles, and the schedule.

``reference`` and ``optimized`` share no code, so each has its own copy of the API's defaults and of
the numerics profiles, and its own evaluation of line 8 (the reference with its exact rounding
model, the engine with NumPy's float32/float64 arithmetic). A change to one copy alone fails here
before it shows as a divergence in a long run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optimized.hyperparameters
import optimized.numerics
import reference.hyperparameters
import reference.numerics


def test_the_defaults_are_the_same() -> None:
    assert dict(reference.hyperparameters.DEFAULTS) == dict(optimized.hyperparameters.DEFAULTS)


def test_the_profiles_are_the_same() -> None:
    assert reference.numerics.NUMERICS_PROFILES == optimized.numerics.NUMERICS_PROFILES
    assert reference.numerics.DEPRECATED_NAMES == optimized.numerics.DEPRECATED_NAMES
    assert reference.numerics.FOREACH_UNMODELLED_ALPHAS == optimized.numerics.FOREACH_UNMODELLED_ALPHAS
    for name in reference.numerics.NUMERICS_PROFILES:
        ours, theirs = reference.numerics.numerics_named(name), optimized.numerics.numerics_named(name)
        assert ours.dtypes == theirs.dtypes, name
        assert ours.fused_multiply_add == theirs.fused_multiply_add, name
        assert ours.foreach == theirs.foreach, name
        assert ours.exact_step_counter == theirs.exact_step_counter, name


def bits(value: float) -> int:
    return int(np.float64(value).view(np.uint64))


hyper = st.fixed_dictionaries(
    {
        "lr": st.one_of(st.just(0.0), st.floats(1e-6, 10.0)),
        "lambd": st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
        "alpha": st.one_of(st.sampled_from([0.0, 0.75, 1.0, 2.0, 3.0]), st.floats(0.0, 4.0)),
        "t0": st.one_of(st.sampled_from([0.0, math.inf]), st.floats(0.0, 1e7)),
    }
)


@pytest.mark.parametrize("name", reference.numerics.NUMERICS_PROFILES)
@given(step=st.integers(0, 2**26), values=hyper, numpy_scalar=st.sampled_from([None, np.float32, np.float64]))
def test_the_two_schedules_agree_bit_for_bit(
    name: str, step: int, values: dict[str, float], numpy_scalar: type | None
) -> None:
    """Line 8 (and line 1's counter) of each implementation, on Python floats and on NumPy scalars."""
    ours, theirs = reference.numerics.numerics_named(name), optimized.numerics.numerics_named(name)
    if ours.foreach and values["alpha"] in reference.numerics.FOREACH_UNMODELLED_ALPHAS:
        return
    if numpy_scalar is not None:
        values = {key: numpy_scalar(value) for key, value in values.items()}
    counter = step if ours.exact_step_counter else float(np.float32(step))
    assert ours.increment(counter) == theirs.increment(counter)
    with np.errstate(all="ignore"):
        expected = ours.schedule(counter, **values)
        got = theirs.schedule(counter, **values)
    assert [bits(v) for v in got] == [bits(v) for v in expected], (expected, got)
    assert bits(ours.initial_eta(float(values["lr"]))) == bits(theirs.initial_eta(float(values["lr"])))


def test_the_schedule_check_can_fail() -> None:
    """The meta-test: one ULP in eta is a different bit pattern."""
    eta = reference.numerics.numerics_named("torch").schedule(5, lr=0.01, lambd=1e-4, alpha=0.75, t0=1e6)[0]
    assert bits(eta) != bits(float(np.nextafter(np.float32(eta), np.float32(1))))
