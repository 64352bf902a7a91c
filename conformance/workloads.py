"""What a scenario trains: named tensors, their starting values, and a gradient at any point.

A workload's gradient is a function of the current parameters and the step number only, so two
implementations at the same point receive the same gradient bits, and one that drifts sees the
gradients of where it drifted to. Three kinds:

* :class:`SingleTensor`: one tensor, from a :mod:`conformance.objectives` problem;
* :class:`ManyTensors`: tensors of different shapes, a pull towards zero plus noise, with some
  gradients ``None`` on some steps (a layer that took no part in the loss);
* :class:`DigitsMLP`: a small torch ``nn`` MLP trained with cross-entropy on scikit-learn's bundled
  digits, the gradients from torch autograd, held-out accuracy as its evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from conformance.objectives import GradientProblem, make_problem
from conformance.scenarios import MIXED, MIXED_DTYPES

if TYPE_CHECKING:
    from conformance.scenarios import Scenario

__all__ = ["DigitsMLP", "ManyTensors", "SingleTensor", "Workload", "make_workload"]

Gradients = list[np.ndarray | None]


class Workload(Protocol):
    @property
    def names(self) -> tuple[str, ...]:
        """One name per tensor, in the order the optimizer receives them (group by group)."""
        ...

    def initial(self) -> list[np.ndarray]:
        """Fresh arrays holding the starting point."""
        ...

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        """Each tensor's gradient at ``parameters`` on ``step`` (counted from 0; ``None``: no gradient)."""
        ...

    def evaluate(self, parameters: Sequence[np.ndarray]) -> dict[str, float]:
        """Figures of merit for a point (empty when the workload has none)."""
        ...


@dataclass(frozen=True)
class SingleTensor:
    """One tensor whose gradients come from a :class:`~conformance.objectives.GradientProblem`."""

    problem: GradientProblem
    names: tuple[str, ...] = ("theta",)

    def initial(self) -> list[np.ndarray]:
        return [self.problem.initial()]

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        return [self.problem.gradient(parameters[0], step)]

    def evaluate(self, parameters: Sequence[np.ndarray]) -> dict[str, float]:
        return {}


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values


@dataclass(frozen=True)
class ManyTensors:
    """Tensors of the given shapes: gradient ``0.1·θ + noise``, and ``None`` on some steps.

    Tensor ``i`` has no gradient on steps ``s > 0`` (counted from 0) with ``(s + 2·i) % 5 == 0``, so
    every tensor, the largest included, skips some steps and never the first.
    """

    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    seed: int
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(f"tensor{i}{list(s)}" for i, s in enumerate(self.shapes)))

    def dtype_of(self, index: int) -> np.dtype[Any]:
        """Tensor ``index``'s dtype: the scenario's, or for ``mixed`` the next of :data:`MIXED_DTYPES`."""
        return np.dtype(MIXED_DTYPES[index % len(MIXED_DTYPES)] if self.dtype == MIXED else self.dtype)

    def initial(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, 2**32 - 1])
        return [
            np.asarray(_random(rng, shape, self.dtype_of(i))).astype(self.dtype_of(i))
            for i, shape in enumerate(self.shapes)
        ]

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        gradients: Gradients = []
        for i, theta in enumerate(parameters):
            dtype = self.dtype_of(i)
            if step > 0 and (step + 2 * i) % 5 == 0:
                gradients.append(None)
                continue
            noise = _random(np.random.default_rng([self.seed, step, i]), theta.shape, dtype)
            wide = np.complex128 if dtype.kind == "c" else np.float64
            gradients.append(np.asarray(0.1 * theta.astype(wide) + noise).astype(dtype))
        return gradients

    def evaluate(self, parameters: Sequence[np.ndarray]) -> dict[str, float]:
        return {}


class DigitsMLP:
    """A ``64 → hidden → 10`` tanh MLP (``torch.nn``) on scikit-learn's bundled 8×8 digits.

    A fixed seeded split keeps 360 images held out; each step takes a minibatch of the other 1,437
    drawn from the seed and the step, and the gradients of the mean cross-entropy come from torch
    autograd evaluated at the implementation's own parameters (wrapped without a copy).
    """

    HELD_OUT = 360

    def __init__(self, dtype: str, seed: int, hidden: int = 16, batch: int = 32) -> None:
        import torch
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng([seed, 13]).permutation(len(digits.target))
        features = (digits.data / 16.0).astype(dtype)[order]
        labels = digits.target.astype(np.int64)[order]
        self._torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self._train = (torch.from_numpy(features[self.HELD_OUT :]), torch.from_numpy(labels[self.HELD_OUT :]))
        self._test = (torch.from_numpy(features[: self.HELD_OUT]), torch.from_numpy(labels[: self.HELD_OUT]))
        self.seed, self.batch = seed, batch
        generator = torch.Generator().manual_seed(seed)
        layers = (torch.nn.Linear(64, hidden), torch.nn.Linear(hidden, 10))
        model = torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1]).to(self._torch_dtype)
        with torch.no_grad():  # torch's default bounds, drawn from a seeded generator of its own
            for layer in layers:
                bound = float(layer.in_features) ** -0.5
                for parameter in (layer.weight, layer.bias):
                    drawn = torch.rand(parameter.shape, generator=generator, dtype=self._torch_dtype)
                    parameter.copy_(drawn * (2 * bound) - bound)
        self._model = model
        self.names = tuple(name for name, _ in model.named_parameters())
        self._start = [p.detach().numpy().copy() for p in model.parameters()]

    def initial(self) -> list[np.ndarray]:
        return [array.copy() for array in self._start]

    def _logits(self, parameters: Sequence[Any], features: Any) -> Any:
        import torch

        values = dict(zip(self.names, parameters, strict=True))
        return torch.func.functional_call(self._model, values, (features,))

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        import torch

        leaves = [torch.from_numpy(np.asarray(p)).requires_grad_() for p in parameters]
        rows = torch.from_numpy(
            np.random.default_rng([self.seed, step]).integers(0, len(self._train[1]), self.batch)
        )
        loss = torch.nn.functional.cross_entropy(
            self._logits(leaves, self._train[0][rows]), self._train[1][rows]
        )
        return [g.numpy() for g in torch.autograd.grad(loss, leaves)]

    def evaluate(self, parameters: Sequence[np.ndarray]) -> dict[str, float]:
        import torch

        with torch.no_grad():
            logits = self._logits([torch.from_numpy(np.asarray(p)) for p in parameters], self._test[0])
            correct = (logits.argmax(dim=1) == self._test[1]).sum().item()
        return {"held-out accuracy": correct / len(self._test[1])}


def make_workload(scenario: Scenario) -> Workload:
    """The workload a scenario names, built from its size, shapes, dtype and seed."""
    if scenario.problem == "many-tensors":
        return ManyTensors(scenario.shapes, scenario.dtype, scenario.seed)
    if scenario.problem == "digits-mlp":
        return DigitsMLP(scenario.dtype, scenario.seed, hidden=scenario.size)
    return SingleTensor(make_problem(scenario.problem, scenario.size, scenario.dtype, scenario.seed))
