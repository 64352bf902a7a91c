"""The implementations under comparison, behind one small interface.

An implementation starts a :class:`~conformance.sessions.Session` for a scenario, which the runner
steps. It may decline a scenario with a reason (torch has no momentum; the torch profile models no
float16; no CUDA device), and the reason goes into the report.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any, Final

import optimized
import reference
from conformance.reference_judge import Variant
from conformance.registry import (
    IDS,
    KERNELS,
    NUMERICS,
    OPTIMIZED_TORCH,
    TORCH_COMPILED,
    TORCH_CUDA,
    TORCH_PATH,
    optimized_id,
    reference_id,
)
from conformance.scenarios import Scenario
from conformance.sessions import (
    ArraySession,
    Session,
    TorchSession,
    hyperparameters,
    unmodelled,
    unmodelled_alpha,
)
from conformance.workloads import Workload
from optimized.backends import numba_installed
from optimized.torch_interop import TORCH_PROFILES

__all__ = [
    "IMPLEMENTATIONS",
    "ArrayImplementation",
    "Implementation",
    "TorchImplementation",
]


class Implementation(ABC):
    name: str
    description: str
    reference_profile: str | None = None
    """The numerics profile this implementation specifies, if it is the reference: it then judges
    its bit-exact pairs in lockstep (:mod:`conformance.lockstep`) rather than running beside them."""
    variant: Variant | None = None
    """For a reference: the near miss of its profile it computes instead (:mod:`conformance.diagnosis`)."""

    def unavailable(self) -> str | None:
        """Why this implementation cannot run on this machine at all (a device or a library it
        lacks), or ``None``: its scenarios are "not run here", not skipped by design."""
        return None

    def skip_reason(self, scenario: Scenario) -> str | None:
        """Why this implementation cannot run ``scenario``, or ``None``."""
        return self.unavailable()

    def declines(self, scenario: Scenario, error: Exception) -> str | None:
        """Why ``error``, raised while starting ``scenario``, declines it rather than failing (the
        reason shown), or ``None``: it fails."""
        return None

    @abstractmethod
    def start(self, scenario: Scenario, workload: Workload) -> Session:
        """An optimizer at the scenario's starting point, ready for its first step."""


class ArrayImplementation(Implementation):
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
        self.reference_profile = numerics if optimizer_class is reference.ASGD else None

    def unavailable(self) -> str | None:
        return "numba is not installed" if self.kernel == "numba" and not numba_installed() else None

    def skip_reason(self, scenario: Scenario) -> str | None:
        if (missing := self.unavailable()) is not None:
            return missing
        declined = unmodelled(scenario, self.numerics)
        if declined:
            return declined
        if (
            scenario.checkpoint_via == "torch"
            and scenario.checkpoint_at
            and self.numerics not in TORCH_PROFILES
        ):
            return "a checkpoint in torch's format carries only a torch profile's state"
        return None

    def start(self, scenario: Scenario, workload: Workload) -> Session:
        chosen = {} if self.kernel is None else {"kernel": self.kernel}
        factory = functools.partial(self.optimizer_class, numerics=self.numerics, **chosen)
        return ArraySession(factory, scenario, workload, numerics=self.numerics, own_format=True)


def torch_asgd(params: Any, *, momentum: float, foreach: bool | None, **hyper: Any) -> Any:
    """``torch.optim.ASGD`` as a factory of this project's API (which has momentum, torch none)."""
    import torch

    assert momentum == 0, "the implementation declines momentum before it starts"
    return torch.optim.ASGD(params, foreach=foreach, **hyper)


def optimized_torch_asgd(params: Any, *, foreach: bool | None, **hyper: Any) -> Any:
    """``optimized.torch.ASGD`` (momentum is its keyword-only extension)."""
    from optimized.torch import ASGD

    return ASGD(params, foreach=foreach, **hyper)


def compiled_torch_asgd(params: Any, *, momentum: float, foreach: bool | None, **hyper: Any) -> Any:
    """``torch.optim.ASGD`` whose ``step`` is ``torch.compile``d (inductor's C++ on the CPU).

    Dynamo is reset first: each optimizer compiles its own step, and the compiled code of earlier
    optimizers would otherwise count against dynamo's recompilation limit, past which it silently
    runs the eager step instead."""
    import logging

    import torch

    # dynamo says once per compile that it drops the profiler annotation of Optimizer.step: no finding
    logging.getLogger("torch._dynamo.variables.ctx_manager").setLevel(logging.ERROR)
    torch._dynamo.reset()
    optimizer = torch_asgd(params, momentum=momentum, foreach=foreach, **hyper)
    optimizer.step = torch.compile(optimizer.step)
    return optimizer


COMPILED_TAG: Final = "compiled"
"""Scenarios that the compiled column runs: each compiles for seconds, so a few chosen ones."""


def c_compiler() -> str | None:
    """The C compiler inductor would use on the CPU, or ``None``."""
    import shutil

    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


class TorchImplementation(Implementation):
    """A torch optimizer (``torch.optim.ASGD`` by default) on one code path and device: ``foreach``
    as torch takes it (``None``: torch's own choice, the foreach path on a GPU). ``momentum``: the
    optimizer has it (``optimized.torch.ASGD``); ``compiled``: its step is ``torch.compile``d."""

    def __init__(
        self,
        name: str,
        *,
        foreach: bool | None,
        device: str,
        description: str,
        factory: Any = torch_asgd,
        momentum: bool = False,
        compiled: bool = False,
    ) -> None:
        self.name, self.foreach, self.device, self.description = name, foreach, device, description
        self.factory, self.momentum, self.compiled = factory, momentum, compiled

    @property
    def numerics(self) -> str:
        """The profile of the path torch takes here (which decides injected late-run state)."""
        takes_foreach = self.foreach if self.foreach is not None else self.device != "cpu"
        return "torch-foreach" if takes_foreach else "torch"

    def unavailable(self) -> str | None:
        import torch

        if self.compiled and c_compiler() is None:
            return "no C compiler (cc, gcc or clang) for inductor's CPU code"
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device on this machine"
        return None

    def skip_reason(self, scenario: Scenario) -> str | None:
        if (missing := self.unavailable()) is not None:
            return missing
        if not self.momentum and hyperparameters(scenario)["momentum"] != 0:
            return "torch.optim.ASGD has no momentum"
        if self.compiled and COMPILED_TAG not in scenario.tags:
            return (
                f"the compiled column runs the scenarios tagged {COMPILED_TAG!r} (each compiles for seconds)"
            )
        if scenario.start_step and (unmodelled := unmodelled_alpha(scenario, self.numerics)):
            return f"its late-run state cannot be injected: {unmodelled}"
        return None

    def start(self, scenario: Scenario, workload: Workload) -> Session:
        factory = functools.partial(self.factory, foreach=self.foreach)
        return TorchSession(factory, scenario, workload, device=self.device, numerics=self.numerics)


_ROUNDING: Final[dict[str, str]] = {
    "numpy": "NumPy rounding",
    "torch": "torch rounding",
    "torch-foreach": "torch foreach rounding",
}
"""How each numerics profile rounds, in a few words for the report."""


def _derived() -> tuple[Implementation, ...]:
    """The registry's ids, each as the implementation it names."""
    ours: list[Implementation] = []
    for numerics in NUMERICS:
        rounding = _ROUNDING[numerics]
        ours.append(
            ArrayImplementation(
                reference_id(numerics), reference.ASGD, numerics, f"pure-Python specification, {rounding}"
            )
        )
        for kernel in KERNELS:
            ours.append(ArrayImplementation(
                optimized_id(kernel, numerics), optimized.ASGD, numerics,
                f"production ASGD, {kernel} kernel, {rounding}", kernel=kernel,
            ))  # fmt: skip
    torch_paths: list[Implementation] = [
        TorchImplementation(TORCH_PATH["torch"], foreach=False, device="cpu", description="torch.optim.ASGD(foreach=False), CPU"),
        TorchImplementation(TORCH_PATH["torch-foreach"], foreach=True, device="cpu", description="torch.optim.ASGD(foreach=True), CPU"),
        TorchImplementation(TORCH_CUDA, foreach=None, device="cuda", description="torch.optim.ASGD on a CUDA device, torch's default path (foreach)"),
        *(
            TorchImplementation(OPTIMIZED_TORCH[numerics], foreach=numerics == "torch-foreach", device="cpu", factory=optimized_torch_asgd, momentum=True,
                                description=f"optimized.torch.ASGD(foreach={numerics == 'torch-foreach'}), the torch Optimizer class on the compiled kernel")
            for numerics in OPTIMIZED_TORCH
        ),
        TorchImplementation(TORCH_COMPILED, foreach=False, device="cpu", factory=compiled_torch_asgd, compiled=True, description="torch.compile(torch.optim.ASGD.step), inductor's C++ on the CPU"),
    ]  # fmt: skip
    implementations = (*ours, *torch_paths)
    names = [implementation.name for implementation in implementations]
    if sorted(names) != sorted(IDS):
        raise ValueError(f"the implementations {sorted(names)} are not the registry's ids {sorted(IDS)}")
    return implementations


IMPLEMENTATIONS: Final = _derived()
