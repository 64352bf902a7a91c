"""Convergence against SciPy ground truth: strongly convex quadratics, and Polyak–Juditsky."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import optimized
from conformance.statistics import PolyakJuditsky, polyak_juditsky


@pytest.mark.parametrize("seed", range(3))
def test_iterates_approach_the_minimizer_of_a_strongly_convex_quadratic(seed: int) -> None:
    """f(x) = x'Ax/2 - b'x with A positive definite: the minimizer solves A x = b (scipy.linalg.solve)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = q @ np.diag(np.linspace(0.5, 3.0, 6)) @ q.T
    b = rng.standard_normal(6)
    solution = scipy.linalg.solve(A, b, assume_a="pos")
    x = np.zeros(6)
    optimizer = optimized.ASGD([x], lr=0.2, lambd=0.0, t0=200)
    start_error = np.linalg.norm(x - solution)
    for _ in range(600):
        optimizer.step([A @ x - b])
    assert np.linalg.norm(x - solution) < 1e-10 * start_error
    assert np.linalg.norm(optimizer.averages()[0] - solution) < 1e-10 * start_error


@pytest.mark.parametrize("seed", [0, 1])
def test_polyak_juditsky_holds(seed: int) -> None:
    """The check the conformance report runs (conformance.statistics), over seeds."""
    result = polyak_juditsky(PolyakJuditsky(seed=seed, runs=300, averaged=6000))
    assert result.holds, result.summary
    assert result.details["mse_averaged"] < 0.1 * result.details["mse_last"]
