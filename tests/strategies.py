"""Hypothesis strategies: hyperparameters, dtypes, shapes, layouts, arrays and whole ASGD runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference.numerics import FOREACH_UNMODELLED_ALPHAS, numerics_named
from tests.streams import strided_like

FLOAT_WIDTH = {"float16": 16, "float32": 32, "float64": 64, "complex64": 32, "complex128": 64}


def property_test(**strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Any]:
    """``@given(**strategies)``, keeping the strategies on the test as ``given_strategies``: the mutation
    meta-test (``tests/api/test_mutations.py``) builds the same property afresh from them and
    ``test.hypothesis.inner_test``, under settings of its own, and leaves this test as it is."""

    def decorate(test: Callable[..., None]) -> Any:
        wrapped = given(**strategies)(test)
        wrapped.given_strategies = strategies
        return wrapped

    return decorate


def dtypes(numerics: str) -> st.SearchStrategy[str]:
    return st.sampled_from(numerics_named(numerics).dtypes)


def shapes(max_dims: int = 3, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """0-d, empty, odd and multi-dimensional shapes, small enough for the scalar reference."""
    return st.one_of(
        st.just(()), hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=0, max_side=max_side)
    )


def hyperparameters() -> st.SearchStrategy[dict[str, Any]]:
    """Valid hyperparameters, with the values where branches change: 0, averaging on or never."""
    return st.fixed_dictionaries(
        {
            "lr": st.one_of(st.just(0.0), st.floats(1e-4, 1.0)),
            "momentum": st.one_of(st.just(0.0), st.floats(0.0, 0.999)),
            "weight_decay": st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
            "alpha": st.floats(0.0, 2.0),
            "t0": st.one_of(st.sampled_from([0.0, 1.0, 2.5, float("inf")]), st.floats(0.0, 20.0)),
            "lambd": st.one_of(st.just(0.0), st.floats(0.0, 1.0)),
            "maximize": st.booleans(),
        }
    )


def hyperparameters_for(numerics: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid hyperparameters of the profile: the torch-foreach profile refuses the alphas whose
    schedule it cannot model."""
    if not numerics_named(numerics).foreach:
        return hyperparameters()
    return hyperparameters().filter(lambda hyper: hyper["alpha"] not in FOREACH_UNMODELLED_ALPHAS)


def element_values(dtype: str) -> st.SearchStrategy[Any]:
    """Finite values of ``dtype``: Hypothesis's own mix of ordinary, tiny, huge and subnormal."""
    width = FLOAT_WIDTH[dtype]
    if np.dtype(dtype).kind == "c":
        return st.complex_numbers(width=2 * width, allow_nan=False, allow_infinity=False)
    return st.floats(width=width, allow_nan=False, allow_infinity=False)


def arrays(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Arrays of finite values whose elements vary independently (``fill=nothing()``)."""
    return hnp.arrays(np.dtype(dtype), shape, elements=element_values(dtype), fill=st.nothing())


LAYOUTS = ("contiguous", "strided", "fortran")


def in_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values in a C-contiguous, strided (non-contiguous) or Fortran-ordered array."""
    if layout == "strided":
        return strided_like(array)
    if layout == "fortran":
        return np.array(array, order="F")
    return array.copy()


@dataclass(frozen=True)
class Run:
    """A whole ASGD run: parameters, groups and a gradient stream (``None`` skips a parameter)."""

    numerics: str
    dtype: str
    initial: tuple[np.ndarray, ...]
    layouts: tuple[str, ...]
    groups: tuple[dict[str, Any], ...]
    membership: tuple[int, ...]
    """The group of each parameter."""
    gradients: tuple[tuple[np.ndarray | None, ...], ...]
    resume_after: int | None = None
    """After this many steps the run is saved with ``state_dict`` and resumed in a new optimizer built
    with the default hyperparameters (so the checkpoint alone brings back lr, t0 and the clock)."""

    def parameters(self) -> list[np.ndarray]:
        """Fresh parameter arrays, each in its layout."""
        return [in_layout(a, layout) for a, layout in zip(self.initial, self.layouts, strict=True)]

    def build(self, asgd_class: Any, parameters: list[np.ndarray]) -> Any:
        groups = [
            {"params": [p for p, g in zip(parameters, self.membership, strict=True) if g == index], **hyper}
            for index, hyper in enumerate(self.groups)
        ]
        return asgd_class([g for g in groups if g["params"]], numerics=self.numerics)

    def resumed(self, asgd_class: Any, optimizer: Any) -> Any:
        """A new ``asgd_class`` over ``optimizer``'s parameters and groups, built with the default
        hyperparameters, that has loaded ``optimizer``'s ``state_dict``."""
        fresh = asgd_class([{"params": list(group["params"])} for group in optimizer.param_groups])
        fresh.load_state_dict(optimizer.state_dict())
        return fresh

    def gradients_in_optimizer_order(self, step: int) -> list[np.ndarray | None]:
        order = sorted(range(len(self.initial)), key=lambda i: self.membership[i])
        return [self.gradients[step][i] for i in order]


@st.composite
def runs(draw: st.DrawFn, numerics: str, max_steps: int = 10) -> Run:
    dtype = draw(dtypes(numerics))
    count = draw(st.integers(1, 3))
    shape_list = [draw(shapes()) for _ in range(count)]
    groups = tuple(draw(hyperparameters_for(numerics)) for _ in range(draw(st.integers(1, count))))
    membership = tuple(draw(st.integers(0, len(groups) - 1)) for _ in range(count))
    steps = draw(st.integers(1, max_steps))
    gradients = tuple(
        tuple(
            draw(st.one_of(st.none(), arrays(dtype, shape)) if step else arrays(dtype, shape))
            for shape in shape_list
        )
        for step in range(steps)
    )
    return Run(
        numerics=numerics,
        dtype=dtype,
        initial=tuple(draw(arrays(dtype, shape)) for shape in shape_list),
        layouts=tuple(draw(st.sampled_from(LAYOUTS)) for _ in shape_list),
        groups=groups,
        membership=membership,
        gradients=gradients,
        resume_after=draw(st.one_of(st.none(), st.integers(1, steps))),
    )
