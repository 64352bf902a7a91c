"""The Polyak–Juditsky check: on noisy least squares the averaged iterate is statistically optimal.

For a strongly convex problem with Hessian ``A`` at the optimum and gradient-noise covariance
``Σ`` there, the average of ``n`` SGD iterates has error covariance tending to ``A⁻¹ΣA⁻¹ / n``
(Polyak & Juditsky 1992), the Cramér–Rao optimum; the last iterate's error does not shrink like
``1/n``. Least squares on a finite data set, sampled with replacement, has an exact optimum
(``scipy.linalg.lstsq``), ``A = XᵀX/N`` and ``Σ = mean(r_i² x_i x_iᵀ)`` with the optimum's
residuals ``r_i``.

Many independent runs are one parameter matrix, a row per run, each row drawing its own samples
(ASGD is elementwise, so rows never interact). If the averaged error has covariance ``C/n`` with
``C = A⁻¹ΣA⁻¹``, then ``n·eᵀC⁻¹e`` is χ²(d) distributed over runs. The check states:

* the averaged iterate beats the last one (one-sided Wilcoxon signed-rank test on the squared
  errors, p < 1e-6), and
* the mean of ``n·eᵀC⁻¹e`` over runs is ``d`` within ``tolerance`` (15 %), and a Kolmogorov–Smirnov
  test against χ²(d) does not reject at ``alpha`` (1e-3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats

import optimized
from conformance.objectives import LeastSquares
from conformance.results import StatisticsResult

__all__ = ["PolyakJuditsky", "polyak_juditsky"]


@dataclass(frozen=True)
class PolyakJuditsky:
    dimension: int = 4
    samples: int = 2000
    runs: int = 400
    burn_in: int = 1000
    """``t0``: iterates before averaging starts."""
    averaged: int = 8000
    """Iterates in the average."""
    lr: float = 0.01
    tolerance: float = 0.15
    alpha: float = 1e-3
    seed: int = 0


def polyak_juditsky(config: PolyakJuditsky = PolyakJuditsky()) -> StatisticsResult:
    problem = LeastSquares(size=config.dimension, dtype="float64", seed=config.seed, samples=config.samples)
    X, y = problem.X, problem.y
    optimum = problem.solution()
    residuals = X @ optimum - y
    A = X.T @ X / len(y)
    noise_covariance = (X * residuals[:, None]).T @ (X * residuals[:, None]) / len(y)
    A_inverse = np.linalg.inv(A)
    optimal_covariance = A_inverse @ noise_covariance @ A_inverse  # C; the average's covariance is C / n

    theta = np.zeros((config.runs, config.dimension))
    # A constant step size (lambd = 0, alpha = 0) and averaging from iterate t0 + 2 on.
    optimizer = optimized.ASGD([theta], lr=config.lr, lambd=0.0, alpha=0.0, t0=config.burn_in)
    rng = np.random.default_rng([config.seed, 99])
    total_steps = config.burn_in + 1 + config.averaged
    for _ in range(total_steps):
        rows = rng.integers(0, len(y), config.runs)
        residual = np.einsum("rd,rd->r", X[rows], theta) - y[rows]
        optimizer.step([X[rows] * residual[:, None]])
    averaged = optimizer.averages()[0]

    precision = np.linalg.inv(optimal_covariance)
    error_averaged, error_last = averaged - optimum, theta - optimum
    statistic = config.averaged * np.einsum("rd,de,re->r", error_averaged, precision, error_averaged)
    statistic_last = config.averaged * np.einsum("rd,de,re->r", error_last, precision, error_last)
    mean_ratio = float(statistic.mean() / config.dimension)
    ks = scipy.stats.kstest(statistic, scipy.stats.chi2(config.dimension).cdf)
    squared_averaged = (error_averaged**2).sum(axis=1)
    squared_last = (error_last**2).sum(axis=1)
    wilcoxon = scipy.stats.wilcoxon(squared_averaged, squared_last, alternative="less")

    beats_last = bool(wilcoxon.pvalue < 1e-6)
    covariance_matches = bool(abs(mean_ratio - 1) <= config.tolerance and ks.pvalue >= config.alpha)
    holds = beats_last and covariance_matches
    last_ratio = float(statistic_last.mean() / config.dimension)
    summary = (
        f"averaged iterate: E[n eᵀC⁻¹e]/d = {mean_ratio:.3f} (optimum 1, tolerance ±{config.tolerance}), "
        f"KS p = {ks.pvalue:.3g} vs χ²({config.dimension}); last iterate: {last_ratio:.3g}; "
        f"mean squared error averaged / last = {squared_averaged.mean() / squared_last.mean():.3g} "
        f"(Wilcoxon p = {wilcoxon.pvalue:.2g})"
    )
    return StatisticsResult(
        holds=holds,
        summary=summary,
        details={
            "config": asdict(config),
            "mean_ratio": mean_ratio,
            "ks_pvalue": float(ks.pvalue),
            "last_iterate_ratio": last_ratio,
            "mse_averaged": float(squared_averaged.mean()),
            "mse_last": float(squared_last.mean()),
            "wilcoxon_pvalue": float(wilcoxon.pvalue),
            "beats_last": beats_last,
            "covariance_matches": covariance_matches,
        },
    )
