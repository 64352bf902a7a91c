"""Step-by-step differences between two implementations: bits, ULPs, absolute and relative error.

The runner feeds each pair's values after every step (:meth:`PairMetrics.add`); only the per-step
figures are kept, so tensors of millions of values cost no more memory than one step of them.

An error beyond binary64's range (a difference of two values near ±1.8e308, or a large error
relative to a tiny value) is recorded as binary64's largest value, :data:`LARGEST_ERROR`, so that
every figure stays a finite number a ``results.json`` can hold; a pair that shows it fails anyway,
by its ULPs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from conformance.ulp import compare_ulps, real_components, same_bits

__all__ = ["LARGEST_ERROR", "ArrayDifference", "Divergence", "PairMetrics", "Sampled", "shown"]

LARGEST_ERROR: Final = float(np.finfo(np.float64).max)
"""Where an error beyond binary64's range is recorded ("at least this large")."""

Sampled = tuple[tuple[int, ...], np.ndarray | None]
"""A tensor's values as a flat array: the tensor's shape and the flat positions of the values it
holds (``None``: all of them, in order)."""


@dataclass(frozen=True)
class Divergence:
    """Where bits first differ: the step (1-based), the quantity, the tensor and the element."""

    step: int
    quantity: str
    """``"parameters"`` or ``"averages"``."""
    tensor: str
    element: str
    """The element's index, e.g. ``[12, 3]``, with ``.real``/``.imag`` for complex tensors."""
    values: tuple[str, str] | None = None
    """The two sides' values there, each in decimal and as its bits in hex."""


def shown(value: np.floating[Any]) -> str:
    """A float as the shortest decimal that reads back to it in its own format, and its bits."""
    bits = np.asarray(value).view(f"u{value.itemsize}")[()]
    magnitude = abs(float(value))
    decimal = np.format_float_positional(value, unique=True, trim="-") if np.isfinite(value) else str(value)
    if np.isfinite(value) and (0 < magnitude < 1e-4 or magnitude >= 1e16):
        decimal = np.format_float_scientific(value, unique=True, trim="-")
    return f"{decimal} (0x{int(bits):0{2 * value.itemsize}x})"


def _element(shape: tuple[int, ...], complex_valued: bool, scalar_index: int) -> str:
    index, part = divmod(scalar_index, 2) if complex_valued else (scalar_index, None)
    position = [int(i) for i in np.unravel_index(index, shape)] if shape else []
    return f"{position}{'' if part is None else ('.real', '.imag')[part]}"


@dataclass
class ArrayDifference:
    """The differences in one quantity (parameters or averages), per step and overall.

    A step's figure over several tensors is the largest (ULPs) or the sum (differing scalars) of
    the tensors' figures.
    """

    max_ulp_per_step: list[int] = field(default_factory=list)
    differing_per_step: list[int] = field(default_factory=list)
    """Real scalars whose encodings differ (all NaNs count as one encoding; -0 differs from +0)."""
    nan_mismatches: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    normwise_ulp_per_step: list[float] = field(default_factory=list)
    """``max |a - b|`` in units of the ULP of ``max |b|``, per tensor: the error at each tensor's scale."""
    normwise_ulp_by_dtype: dict[str, float] = field(default_factory=dict)
    """The largest normwise ULP of the tensors of each dtype, over all steps (a budget is per dtype)."""
    first: Divergence | None = None

    @property
    def max_normwise_ulp(self) -> float:
        return max(self.normwise_ulp_per_step, default=0.0)

    @property
    def max_ulp(self) -> int:
        return max(self.max_ulp_per_step, default=0)

    @property
    def first_divergence(self) -> int | None:
        """The first step (1-based) at which any bit differs, or ``None``."""
        return None if self.first is None else self.first.step

    def add(
        self,
        step: int,
        quantity: str,
        names: Sequence[str],
        left: Sequence[np.ndarray],
        right: Sequence[np.ndarray],
        sampled: Sequence[Sampled] | None = None,
    ) -> None:
        """Take in one step's values of every tensor (aligned lists). ``sampled``: the arrays are
        flat samples of the tensors, and each entry says of which tensor shape and at which flat
        positions (a divergence is then reported at its place in the whole tensor)."""
        step_ulp = step_differing = 0
        step_normwise = 0.0
        for number, (name, a, b) in enumerate(zip(names, left, right, strict=True)):
            x, y = real_components(a), real_components(b)
            if same_bits(x, y):  # every figure is 0
                if x.size and np.isfinite(x).any():
                    dtype = np.asarray(b).dtype.name
                    self.normwise_ulp_by_dtype.setdefault(dtype, 0.0)
                continue
            comparison = compare_ulps(a, b)
            both_nan = np.isnan(x) & np.isnan(y)
            differs = (x.view(f"u{x.itemsize}") != y.view(f"u{y.itemsize}")) & ~both_nan
            differing = int(differs.sum())
            if differing and self.first is None:
                at = int(np.argmax(differs))
                scalar_index = at
                shape, complex_valued = np.shape(a), np.iscomplexobj(a)
                if sampled is not None:
                    shape, positions = sampled[number]
                    if positions is not None:
                        index, part = divmod(scalar_index, 2) if complex_valued else (scalar_index, 0)
                        scalar_index = int(positions[index]) * (2 if complex_valued else 1) + part
                where = _element(shape, complex_valued, scalar_index)
                self.first = Divergence(step, quantity, name, where, (shown(x[at]), shown(y[at])))
            step_ulp, step_differing = max(step_ulp, comparison.max_ulp), step_differing + differing
            self.nan_mismatches += comparison.nan_mismatches
            finite = np.isfinite(x) & np.isfinite(y)
            if finite.any():
                error = np.abs(x[finite].astype(np.float64) - y[finite].astype(np.float64))
                np.minimum(error, LARGEST_ERROR, out=error)
                scale = np.abs(y[finite].astype(np.float64))
                self.max_abs = max(self.max_abs, float(error.max()))
                relative = np.divide(error, scale, out=np.zeros_like(error), where=scale > 0)
                self.max_rel = max(self.max_rel, min(float(relative.max()), LARGEST_ERROR))
                unit = float(np.spacing(y[finite].dtype.type(scale.max())))
                tensor_normwise = min(float(error.max()) / unit, LARGEST_ERROR)
                step_normwise = max(step_normwise, tensor_normwise)
                dtype = np.asarray(b).dtype.name
                self.normwise_ulp_by_dtype[dtype] = max(
                    self.normwise_ulp_by_dtype.get(dtype, 0.0), tensor_normwise
                )
        self.max_ulp_per_step.append(step_ulp)
        self.differing_per_step.append(step_differing)
        self.normwise_ulp_per_step.append(step_normwise)


@dataclass
class PairMetrics:
    parameters: ArrayDifference = field(default_factory=ArrayDifference)
    averages: ArrayDifference = field(default_factory=ArrayDifference)
    buffers: ArrayDifference = field(default_factory=ArrayDifference)
    """The momentum buffers, where a lockstep check can read them (:mod:`conformance.lockstep`)."""
    state_mismatches: int = 0
    """Differences a lockstep check finds outside the step's values: a clock (``step``, ``eta``,
    ``mu``) of a tensor's state, a momentum buffer present on one side only, or state that changed
    between two steps."""
    first_state: Divergence | None = None
    extra_per_step: dict[int, int] = field(default_factory=dict)
    """Differing values beyond the parameters and averages (buffers, state) by step (1-based)."""

    def add(
        self,
        step: int,
        names: Sequence[str],
        left: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
        right: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
        sampled: Sequence[Sampled] | None = None,
    ) -> None:
        """Take in one step: each side's ``(parameters, averages)`` (flat samples: ``sampled``)."""
        with np.errstate(all="ignore"):
            self.parameters.add(step, "parameters", names, left[0], right[0], sampled)
            self.averages.add(step, "averages", names, left[1], right[1], sampled)

    def add_buffers(
        self,
        step: int,
        names: Sequence[str],
        left: Sequence[np.ndarray],
        right: Sequence[np.ndarray],
        sampled: Sequence[Sampled],
    ) -> None:
        """Take in one step's momentum buffers (flat samples), without a per-step figure."""
        with np.errstate(all="ignore"):
            self.buffers.add(step, "momentum buffers", names, left, right, sampled)
        self.extra_per_step[step] = self.extra_per_step.get(step, 0) + self.buffers.differing_per_step[-1]

    def add_mismatch(
        self,
        step: int,
        tensor: str,
        what: str,
        element: str = "",
        count: int = 1,
        values: tuple[str, str] | None = None,
    ) -> None:
        """``count`` values of ``what`` (a clock, ``"parameters between steps"``, ...) of ``tensor``
        differ at ``step`` (``values``: the two sides', where there is one of each)."""
        self.state_mismatches += count
        self.extra_per_step[step] = self.extra_per_step.get(step, 0) + count
        if self.first_state is None:
            self.first_state = Divergence(step, what, tensor, element, values)

    @property
    def max_ulp(self) -> int:
        return max(self.parameters.max_ulp, self.averages.max_ulp, self.buffers.max_ulp)

    @property
    def differing_bits(self) -> int:
        return (
            sum(self.parameters.differing_per_step)
            + sum(self.averages.differing_per_step)
            + sum(self.buffers.differing_per_step)
            + self.state_mismatches
        )

    @property
    def nan_mismatches(self) -> int:
        return self.parameters.nan_mismatches + self.averages.nan_mismatches + self.buffers.nan_mismatches

    @property
    def max_normwise_ulp(self) -> float:
        return max(self.parameters.max_normwise_ulp, self.averages.max_normwise_ulp)

    @property
    def normwise_ulp_by_dtype(self) -> dict[str, float]:
        """The largest normwise ULP per dtype of the tensors, parameters and averages together."""
        merged = dict(self.parameters.normwise_ulp_by_dtype)
        for dtype, value in self.averages.normwise_ulp_by_dtype.items():
            merged[dtype] = max(merged.get(dtype, 0.0), value)
        return merged

    @property
    def first(self) -> Divergence | None:
        """The first divergence, the parameters' where both quantities diverge on the same step."""
        candidates = (self.parameters.first, self.averages.first, self.buffers.first, self.first_state)
        found = [d for d in candidates if d is not None]
        return min(found, key=lambda d: d.step, default=None)

    @property
    def first_divergence(self) -> int | None:
        return None if self.first is None else self.first.step
