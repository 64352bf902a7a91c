"""Gradient sources for the scenarios: each gives a starting point and a gradient at any point.

A gradient is a function of the current parameters and the step number only, computed in float64
and rounded to the parameters' dtype. Two implementations at the same point therefore receive the
same gradient bits, and a trajectory that drifts sees the gradients of where it drifted to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import scipy.linalg
import scipy.optimize

__all__ = ["PROBLEM_KINDS", "GradientProblem", "LeastSquares", "make_problem"]


class GradientProblem(Protocol):
    def initial(self) -> np.ndarray: ...

    def gradient(self, theta: np.ndarray, step: int) -> np.ndarray: ...


def _step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def _in_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(values).astype(dtype)


@dataclass(frozen=True)
class RandomStream:
    """Gradients drawn afresh at every step, independent of the parameters (complex-capable)."""

    size: int
    dtype: str
    seed: int
    scale: float = 1.0

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        values = rng.standard_normal(self.size) * self.scale
        if np.dtype(self.dtype).kind == "c":
            values = values + 1j * rng.standard_normal(self.size) * self.scale
        return _in_dtype(values, self.dtype)

    def initial(self) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2**32 - 1]))

    def gradient(self, theta: np.ndarray, step: int) -> np.ndarray:
        return self._draw(_step_rng(self.seed, step))


@dataclass(frozen=True)
class LeastSquares:
    """Noisy linear regression: the mean of ``(x_i . theta - y_i)**2 / 2`` over a finite data set.

    A step samples a minibatch with replacement, so the optimum is the data set's least-squares
    solution (``scipy.linalg.lstsq``), the exact ground truth for the averaging statistics.
    """

    size: int
    dtype: str
    seed: int
    samples: int = 512
    batch: int = 1
    noise: float = 0.5
    X: np.ndarray = field(init=False, repr=False, compare=False)
    y: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 7])
        scales = np.linspace(0.5, 1.5, self.size)  # a spread of curvatures
        X = rng.standard_normal((self.samples, self.size)) * scales
        truth = rng.standard_normal(self.size)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", X @ truth + self.noise * rng.standard_normal(self.samples))

    def solution(self) -> np.ndarray:
        solution: np.ndarray = scipy.linalg.lstsq(self.X, self.y)[0]
        return solution

    def initial(self) -> np.ndarray:
        return _in_dtype(np.zeros(self.size), self.dtype)

    def gradient(self, theta: np.ndarray, step: int) -> np.ndarray:
        rows = _step_rng(self.seed, step).integers(0, self.samples, self.batch)
        Xb, yb = self.X[rows], self.y[rows]
        return _in_dtype(Xb.T @ (Xb @ theta.astype(np.float64) - yb) / self.batch, self.dtype)


@dataclass(frozen=True)
class Rosenbrock:
    """The Rosenbrock function (``scipy.optimize.rosen_der``) plus small gradient noise."""

    size: int
    dtype: str
    seed: int
    noise: float = 0.1

    def initial(self) -> np.ndarray:
        start = np.where(np.arange(self.size) % 2 == 0, -1.2, 1.0)
        return _in_dtype(start, self.dtype)

    def gradient(self, theta: np.ndarray, step: int) -> np.ndarray:
        exact = scipy.optimize.rosen_der(theta.astype(np.float64))
        noise = self.noise * _step_rng(self.seed, step).standard_normal(self.size)
        return _in_dtype(exact + noise, self.dtype)


@dataclass(frozen=True)
class LogisticRegression:
    """Binary logistic regression on synthetic separable-with-noise data, minibatches of 8."""

    size: int
    dtype: str
    seed: int
    samples: int = 256
    batch: int = 8
    X: np.ndarray = field(init=False, repr=False, compare=False)
    labels: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 11])
        X = rng.standard_normal((self.samples, self.size))
        margin = X @ rng.standard_normal(self.size) + 0.5 * rng.standard_normal(self.samples)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "labels", (margin > 0).astype(np.float64))

    def initial(self) -> np.ndarray:
        return _in_dtype(np.zeros(self.size), self.dtype)

    def gradient(self, theta: np.ndarray, step: int) -> np.ndarray:
        rows = _step_rng(self.seed, step).integers(0, self.samples, self.batch)
        Xb = self.X[rows]
        probability = 1 / (1 + np.exp(-(Xb @ theta.astype(np.float64))))
        return _in_dtype(Xb.T @ (probability - self.labels[rows]) / self.batch, self.dtype)


PROBLEM_KINDS: Final = {
    "random-stream": RandomStream,
    "least-squares": LeastSquares,
    "rosenbrock": Rosenbrock,
    "logistic": LogisticRegression,
}


def make_problem(kind: str, size: int, dtype: str, seed: int) -> GradientProblem:
    problem: GradientProblem = PROBLEM_KINDS[kind](size=size, dtype=dtype, seed=seed)
    return problem
