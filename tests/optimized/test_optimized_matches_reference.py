"""``optimized.ASGD`` on each kernel and ``reference.ASGD`` agree bit for bit, in every profile, over
random runs, some of them saved and resumed from a checkpoint in the middle.

After every step: parameters, averages, momentum buffers and the scalar state (value and type).
The two implementations share no code, so this judges every line of the algorithm, the schedule and
the state included (``tests/optimized/test_engine_mutations.py`` plants faults to show it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given

import reference
from tests.assertions import assert_same_bits
from tests.implementations import OPTIMIZED
from tests.strategies import Run, runs


def assert_same_state(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    assert ours["param_groups"] == theirs["param_groups"], where
    assert ours["state"].keys() == theirs["state"].keys(), where
    for index, entry in ours["state"].items():
        other = theirs["state"][index]
        assert entry.keys() == other.keys(), f"{where}: state {index}"
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert_same_bits(value, other[key], f"{where}: state[{index}][{key!r}]")
            else:
                assert type(value) is type(other[key]) and repr(value) == repr(other[key]), (
                    f"{where}: state[{index}][{key!r}] {value!r} != {other[key]!r}"
                )


def assert_runs_agree(run: Run, implementation: Any) -> None:
    """``implementation`` (an ASGD class) and the reference agree after every step of ``run``."""
    fast_parameters, spec_parameters = run.parameters(), run.parameters()
    fast = run.build(implementation, fast_parameters)
    spec = run.build(reference.ASGD, spec_parameters)
    for step in range(len(run.gradients)):
        gradients = run.gradients_in_optimizer_order(step)
        fast.step(gradients)
        spec.step(gradients)
        where = f"step {step + 1}"
        for index, (a, b) in enumerate(zip(fast_parameters, spec_parameters, strict=True)):
            assert_same_bits(a, b, f"{where}: parameter {index}")
        for index, (a, b) in enumerate(zip(fast.averages(), spec.averages(), strict=True)):
            assert_same_bits(a, b, f"{where}: average {index}")
        assert_same_state(fast.state_dict(), spec.state_dict(), where)
        if step + 1 == run.resume_after:
            fast, spec = run.resumed(implementation, fast), run.resumed(reference.ASGD, spec)
            assert_same_state(fast.state_dict(), spec.state_dict(), f"resumed after {where}")


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
@given(run=runs("numpy"))
def test_fast_profile_agrees_with_the_reference(kernel: str, run: Run) -> None:
    assert_runs_agree(run, OPTIMIZED[kernel])


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
@given(run=runs("torch"))
def test_torch_profile_agrees_with_the_reference(kernel: str, run: Run) -> None:
    assert_runs_agree(run, OPTIMIZED[kernel])


@pytest.mark.parametrize("kernel", list(OPTIMIZED))
@given(run=runs("torch-foreach"))
def test_torch_foreach_profile_agrees_with_the_reference(kernel: str, run: Run) -> None:
    assert_runs_agree(run, OPTIMIZED[kernel])
