"""The implementations under comparison, behind one small adapter interface.

An adapter runs a scenario and returns its trajectory: the parameters and the averages after every
step. It may decline a scenario with a reason (torch has no momentum; the torch profile models no
float16; no CUDA device), and the reason goes into the report.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

import optimized
import reference
from conformance.problems import GradientProblem, make_problem
from conformance.scenarios import Scenario
from optimized.backends import numba_installed
from reference.hyperparameters import DEFAULTS
from reference.numerics import numerics_named

__all__ = ["IMPLEMENTATIONS", "Implementation", "NumpyImplementation", "TorchImplementation", "Trajectory"]


@dataclass(frozen=True)
class Trajectory:
    """What an implementation held after each step, and the scalar state at the end."""

    parameters: np.ndarray
    """``(steps, n)`` in the scenario's dtype."""
    averages: np.ndarray
    final_step: float
    final_eta: float
    final_mu: float
    seconds: float


class Implementation(ABC):
    name: str
    description: str

    def skip_reason(self, scenario: Scenario) -> str | None:
        """Why this implementation cannot run ``scenario``, or ``None``."""
        return None

    @abstractmethod
    def run(self, scenario: Scenario) -> Trajectory: ...


def _hyper(scenario: Scenario) -> dict[str, Any]:
    return {**DEFAULTS, **scenario.hyper}


def _late_state(scenario: Scenario, numerics: str, theta: np.ndarray) -> dict[str, Any]:
    """The state at ``scenario.start_step`` as the profile would hold it: its eta, mu and ax = theta."""
    h = _hyper(scenario)
    profile = numerics_named(numerics)
    eta, mu = profile.schedule(
        scenario.start_step, lr=h["lr"], lambd=h["lambd"], alpha=h["alpha"], t0=h["t0"]
    )
    if profile.exact_step_counter:
        return {"step": scenario.start_step, "eta": eta, "mu": mu, "ax": theta.copy()}
    return {
        "step": np.float32(scenario.start_step),
        "eta": np.float32(eta),
        "mu": np.float32(mu),
        "ax": theta.copy(),
    }


class NumpyImplementation(Implementation):
    """``reference.ASGD`` or ``optimized.ASGD`` in one numerics profile.

    ``kernel`` (``"numba"`` or ``"numpy"``) is passed to the optimizer class only when given:
    ``reference.ASGD`` takes none.
    """

    def __init__(
        self,
        name: str,
        optimizer_class: Any,
        numerics: str,
        description: str,
        *,
        kernel: str | None = None,
    ) -> None:
        self.name, self.optimizer_class, self.numerics, self.description, self.kernel = (
            name,
            optimizer_class,
            numerics,
            description,
            kernel,
        )

    def skip_reason(self, scenario: Scenario) -> str | None:
        if self.kernel == "numba" and not numba_installed():
            return "numba is not installed"
        if scenario.dtype not in numerics_named(self.numerics).dtypes:
            return f"the {self.numerics} profile does not model {scenario.dtype}"
        return None

    def run(self, scenario: Scenario) -> Trajectory:
        problem: GradientProblem = make_problem(
            scenario.problem, scenario.size, scenario.dtype, scenario.seed
        )
        theta = problem.initial()
        chosen = {} if self.kernel is None else {"kernel": self.kernel}
        optimizer = self.optimizer_class([theta], numerics=self.numerics, **chosen, **scenario.hyper)
        if scenario.start_step:
            saved = optimizer.state_dict()
            saved["state"] = {0: _late_state(scenario, self.numerics, theta)}
            optimizer.load_state_dict(saved)
        parameters, averages = [], []
        started = time.perf_counter()
        for step in range(scenario.start_step, scenario.start_step + scenario.steps):
            optimizer.step([problem.gradient(theta, step)])
            parameters.append(theta.copy())
            averages.append(optimizer.averages()[0])
        seconds = time.perf_counter() - started
        state = optimizer.state_dict()["state"][0]
        return Trajectory(
            np.array(parameters), np.array(averages),
            float(state["step"]), float(state["eta"]), float(state["mu"]), seconds,
        )  # fmt: skip


class TorchImplementation(Implementation):
    """``torch.optim.ASGD`` on one code path (for-loop or foreach) and device."""

    def __init__(self, name: str, *, foreach: bool, device: str, description: str) -> None:
        self.name, self.foreach, self.device, self.description = name, foreach, device, description

    def skip_reason(self, scenario: Scenario) -> str | None:
        import torch

        if _hyper(scenario)["momentum"] != 0:
            return "torch.optim.ASGD has no momentum"
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device on this machine"
        return None

    def run(self, scenario: Scenario) -> Trajectory:
        import torch

        problem = make_problem(scenario.problem, scenario.size, scenario.dtype, scenario.seed)
        h = _hyper(scenario)
        tensor = torch.from_numpy(problem.initial()).to(self.device).requires_grad_()
        hyper = {k: h[k] for k in ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")}
        optimizer = torch.optim.ASGD([tensor], foreach=self.foreach, **hyper)
        if scenario.start_step:
            late = _late_state(scenario, "torch", tensor.detach().cpu().numpy())
            optimizer.state[tensor] = {
                key: torch.as_tensor(value).to(self.device)
                if key != "ax"
                else torch.from_numpy(value).to(self.device)
                for key, value in late.items()
            }
        parameters, averages = [], []
        started = time.perf_counter()
        for step in range(scenario.start_step, scenario.start_step + scenario.steps):
            theta = tensor.detach().cpu().numpy()
            tensor.grad = torch.from_numpy(problem.gradient(theta, step)).to(self.device)
            optimizer.step()
            parameters.append(tensor.detach().cpu().numpy().copy())
            averages.append(optimizer.state[tensor]["ax"].detach().cpu().numpy().copy())
        seconds = time.perf_counter() - started
        state = optimizer.state[tensor]
        return Trajectory(
            np.array(parameters), np.array(averages),
            state["step"].item(), state["eta"].item(), state["mu"].item(), seconds,
        )  # fmt: skip


IMPLEMENTATIONS: tuple[Implementation, ...] = (
    NumpyImplementation("reference-fast", reference.ASGD, "fast", "pure-Python specification, NumPy rounding"),
    NumpyImplementation("reference-torch", reference.ASGD, "torch", "pure-Python specification, torch rounding"),
    NumpyImplementation("optimized-numba-fast", optimized.ASGD, "fast", "production ASGD, numba kernel, NumPy rounding", kernel="numba"),
    NumpyImplementation("optimized-numba-torch", optimized.ASGD, "torch", "production ASGD, numba kernel, torch rounding", kernel="numba"),
    NumpyImplementation("optimized-numpy-fast", optimized.ASGD, "fast", "production ASGD, NumPy kernel, NumPy rounding", kernel="numpy"),
    NumpyImplementation("optimized-numpy-torch", optimized.ASGD, "torch", "production ASGD, NumPy kernel, torch rounding", kernel="numpy"),
    TorchImplementation("torch-forloop", foreach=False, device="cpu", description="torch.optim.ASGD(foreach=False), CPU"),
    TorchImplementation("torch-foreach", foreach=True, device="cpu", description="torch.optim.ASGD(foreach=True), CPU"),
    TorchImplementation("torch-cuda", foreach=False, device="cuda", description="torch.optim.ASGD on a CUDA device"),
)  # fmt: skip
