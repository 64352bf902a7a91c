"""Step-by-step differences between two trajectories: bits, ULPs, absolute and relative error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformance.implementations import Trajectory
from conformance.ulp import compare_ulps, real_components

__all__ = ["ArrayDifference", "PairMetrics", "compare_trajectories"]


@dataclass(frozen=True)
class ArrayDifference:
    """The differences in one quantity (parameters or averages), per step and overall."""

    max_ulp_per_step: list[int]
    differing_per_step: list[int]
    """Real scalars whose encodings differ (all NaNs count as one encoding; -0 differs from +0)."""
    nan_mismatches: int
    max_abs: float
    max_rel: float
    normwise_ulp_per_step: list[float]
    """``max |a - b|`` in units of the ULP of ``max |b|``: the error at the scale of the whole array."""

    @property
    def max_normwise_ulp(self) -> float:
        return max(self.normwise_ulp_per_step, default=0.0)

    @property
    def max_ulp(self) -> int:
        return max(self.max_ulp_per_step, default=0)

    @property
    def first_divergence(self) -> int | None:
        """The first step (1-based) at which any bit differs, or ``None``."""
        return next((step for step, n in enumerate(self.differing_per_step, 1) if n), None)


def _difference(left: np.ndarray, right: np.ndarray) -> ArrayDifference:
    max_ulps, differing, normwise = [], [], []
    nan_mismatches = 0
    max_abs = max_rel = 0.0
    for a, b in zip(left, right, strict=True):
        comparison = compare_ulps(a, b)
        x, y = real_components(a), real_components(b)
        both_nan = np.isnan(x) & np.isnan(y)
        differs = (x.view(f"u{x.itemsize}") != y.view(f"u{y.itemsize}")) & ~both_nan
        max_ulps.append(comparison.max_ulp)
        differing.append(int(differs.sum()))
        nan_mismatches += comparison.nan_mismatches
        finite = np.isfinite(x) & np.isfinite(y)
        step_normwise = 0.0
        if finite.any():
            error = np.abs(x[finite].astype(np.float64) - y[finite].astype(np.float64))
            scale = np.abs(y[finite].astype(np.float64))
            max_abs = max(max_abs, float(error.max()))
            relative = np.divide(error, scale, out=np.zeros_like(error), where=scale > 0)
            max_rel = max(max_rel, float(relative.max()))
            unit = float(np.spacing(y[finite].dtype.type(scale.max())))
            step_normwise = float(error.max()) / unit
        normwise.append(step_normwise)
    return ArrayDifference(max_ulps, differing, nan_mismatches, max_abs, max_rel, normwise)


@dataclass(frozen=True)
class PairMetrics:
    parameters: ArrayDifference
    averages: ArrayDifference

    @property
    def max_ulp(self) -> int:
        return max(self.parameters.max_ulp, self.averages.max_ulp)

    @property
    def differing_bits(self) -> int:
        return sum(self.parameters.differing_per_step) + sum(self.averages.differing_per_step)

    @property
    def nan_mismatches(self) -> int:
        return self.parameters.nan_mismatches + self.averages.nan_mismatches

    @property
    def max_normwise_ulp(self) -> float:
        return max(self.parameters.max_normwise_ulp, self.averages.max_normwise_ulp)

    @property
    def first_divergence(self) -> int | None:
        steps = [s for s in (self.parameters.first_divergence, self.averages.first_divergence) if s]
        return min(steps, default=None)


def compare_trajectories(left: Trajectory, right: Trajectory) -> PairMetrics:
    with np.errstate(all="ignore"):
        return PairMetrics(
            parameters=_difference(left.parameters, right.parameters),
            averages=_difference(left.averages, right.averages),
        )
