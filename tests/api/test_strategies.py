"""The strategies themselves: they generate what the properties rely on, and nothing invalid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from optimized.hyperparameters import validate_hyperparameters
from tests.strategies import LAYOUTS, Run, arrays, dtypes, hyperparameters, in_layout, runs, shapes

T = TypeVar("T")


def reach(strategy: st.SearchStrategy[T], condition: Callable[[Any], bool]) -> T:
    """An example of ``strategy`` for which ``condition`` holds, as ``hypothesis.find`` searches
    (its 2,000 examples), but not shrunk: these tests ask whether a case is reached, not for the
    smallest one, and shrinking cost seconds."""
    every_phase_but_shrinking = [phase for phase in Phase if phase not in (Phase.shrink, Phase.explain)]
    return find(strategy, condition, settings=settings(max_examples=2000, phases=every_phase_but_shrinking))


def test_shapes_reach_zero_dimensional_empty_and_odd_shapes() -> None:
    assert reach(shapes(), lambda s: s == ()) == ()
    assert 0 in reach(shapes(), lambda s: len(s) > 0 and 0 in s)
    assert reach(shapes(), lambda s: len(s) == 3 and all(n % 2 for n in s) and min(s) > 1)


@given(hyper=hyperparameters())
def test_hyperparameters_are_valid(hyper: dict[str, object]) -> None:
    assert validate_hyperparameters(hyper) == {
        k: (float(v) if not isinstance(v, bool) else v) for k, v in hyper.items()
    }


def test_hyperparameters_reach_the_branch_points() -> None:
    reach(hyperparameters(), lambda h: h["lr"] == 0.0)
    reach(hyperparameters(), lambda h: h["t0"] == float("inf"))
    reach(hyperparameters(), lambda h: h["momentum"] > 0 and h["weight_decay"] > 0 and h["maximize"])


@given(dtype=dtypes("numpy"), data=st.data())
def test_arrays_are_finite_of_their_dtype_and_vary_element_by_element(
    dtype: str, data: st.DataObject
) -> None:
    array = data.draw(arrays(dtype, (4, 3)))
    assert array.dtype == np.dtype(dtype) and array.shape == (4, 3)
    assert np.isfinite(array).all()


def test_arrays_reach_subnormals_and_huge_values() -> None:
    tiny = np.finfo(np.float32).smallest_normal
    reach(arrays("float32", (3,)), lambda a: bool(np.any((a != 0) & (np.abs(a) < tiny))))
    reach(arrays("float64", (3,)), lambda a: bool(np.any(np.abs(a) > 1e300)))
    reach(arrays("float32", (5,)), lambda a: len(set(a.tolist())) == 5)  # independent elements


@given(dtype=dtypes("numpy"), data=st.data())
def test_layouts_keep_values_and_strided_is_not_contiguous(dtype: str, data: st.DataObject) -> None:
    array = data.draw(arrays(dtype, (3, 4)))
    for layout in LAYOUTS:
        arranged = in_layout(array, layout)
        assert arranged.tobytes() == array.tobytes()  # tobytes reads in C order
        assert arranged.flags.c_contiguous == (layout == "contiguous")


@given(run=runs("torch"))
def test_runs_are_consistent(run: Run) -> None:
    assert run.dtype in ("float32", "float64", "complex64", "complex128")
    assert len(run.initial) == len(run.layouts) == len(run.membership)
    assert all(0 <= g < len(run.groups) for g in run.membership)
    for row in run.gradients:
        for gradient, start in zip(row, run.initial, strict=True):
            assert gradient is None or (gradient.shape == start.shape and gradient.dtype == start.dtype)
    assert all(g is not None for g in run.gradients[0])  # every parameter steps at least once
