"""Bring your own implementation: a user's ASGD factory joins the matrix under the profile it claims.

A factory is called as ``factory(params, **hyperparameters)`` with every hyperparameter of this
project's API (``lr, momentum, weight_decay, alpha, t0, lambd, maximize``), and ``params`` either a
list of tensors or, in scenarios with param groups, torch-style group dicts. Its style says which:

* ``"numpy"``: ``params`` are NumPy arrays updated in place; the optimizer has ``step(grads)``
  (a list aligned with the parameters of all groups, ``None`` skips) and ``averages()``;
* ``"torch"``: ``params`` are ``torch.Tensor`` leaves; the optimizer's ``step()`` reads ``.grad``
  and ``state[p]["ax"]`` holds the averages (``torch.optim.Optimizer``'s interface).

Declare it (``--style``, ``check(style=)``), or let :func:`detect_style` tell from what the factory
builds on a one-parameter probe, before the first scenario a process runs (results.json records the
declared style or ``"detected"``). ``Unsupported("why")`` declines a scenario.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from conformance.implementations import Implementation
from conformance.registry import CLAIMED, CLAIMS, STYLES, ClaimsName, Style
from conformance.scenarios import Scenario
from conformance.sessions import (
    HYPERPARAMETERS,
    ArraySession,
    Factory,
    Session,
    TorchSession,
    unmodelled,
    uses_momentum,
)
from conformance.unsupported import Unsupported
from conformance.verdicts import Pair
from conformance.workloads import Workload
from reference.numerics import DEPRECATED_NAMES

__all__ = [
    "CLAIMS",
    "STYLES",
    "ExternalImplementation",
    "Style",
    "detect_style",
    "load_factory",
    "pairs_for",
    "split_spec",
]


def split_spec(spec: str, what: str = "a factory spec") -> tuple[str, str]:
    """``MODULE:FACTORY`` as its two parts, or ``ValueError`` saying that ``what`` is malformed."""
    module_name, colon, attribute = spec.partition(":")
    if not (module_name and colon and attribute):
        raise ValueError(f"{what} must be MODULE:FACTORY, got {spec!r}")
    return module_name, attribute


def load_factory(spec: str) -> Factory:
    """The callable ``MODULE:FACTORY`` names, imported as ``python -m`` would (working directory first)."""
    module_name, attribute = split_spec(spec)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{spec} is a {type(target).__name__}, not a callable factory")
    factory: Factory = target
    return factory


def _spec(factory: Callable[..., Any]) -> str:
    """``MODULE:NAME`` of a callable (of its class for an instance or a ``functools.partial``)."""
    named = factory.func if isinstance(factory, functools.partial) else factory
    module = getattr(named, "__module__", None) or type(named).__module__
    name = getattr(named, "__qualname__", None) or type(named).__qualname__
    return f"{module}:{name}"


def _probe_hyperparameters() -> dict[str, Any]:
    from reference import DEFAULTS

    return {name: DEFAULTS[name] for name in HYPERPARAMETERS}


def detect_style(factory: Callable[..., Any]) -> Style:
    """The style of a factory that did not declare one, from what it builds.

    A class that subclasses ``torch.optim.Optimizer`` is torch-style, any other class NumPy-style.
    Otherwise the factory is given one float32 NumPy array: if it builds an object with
    ``averages()`` it is NumPy-style. Otherwise (torch installed) it is given one float32 leaf
    tensor: if it builds an object with ``param_groups`` and ``state`` it is torch-style. Anything
    else raises ``ValueError`` asking for the style to be declared; :class:`Unsupported` from the
    factory passes through (it declines the scenario).
    """
    hyper = _probe_hyperparameters()
    if isinstance(factory, type):  # a subclass of torch's Optimizer has torch imported already
        torch_optimizer = "torch" in sys.modules and issubclass(factory, sys.modules["torch"].optim.Optimizer)
        return "torch" if torch_optimizer else "numpy"
    attempts: list[str] = []
    try:
        built = factory([np.zeros(3, np.float32)], **hyper)
    except Unsupported:
        raise  # it declines, whatever its style: the scenario is skipped
    except Exception as error:  # a probe: what it raises only means "not this style"
        attempts.append(f"on a NumPy array it raised {type(error).__name__}: {error}")
    else:
        if callable(getattr(built, "averages", None)):
            return "numpy"
        attempts.append(f"on a NumPy array it built a {type(built).__name__} without averages()")
    torch = sys.modules.get("torch") or _optional_torch()  # only now: a NumPy factory needs none
    if torch is not None:
        try:
            built = factory([torch.zeros(3, requires_grad=True)], **hyper)
        except Unsupported:
            raise
        except Exception as error:
            attempts.append(f"on a tensor it raised {type(error).__name__}: {error}")
        else:
            if hasattr(built, "param_groups") and hasattr(built, "state"):
                return "torch"
            attempts.append(f"on a tensor it built a {type(built).__name__} without param_groups and state")
    raise ValueError(
        f"cannot tell the style of {_spec(factory)} ({'; '.join(attempts)}); declare it: --style numpy|torch"
    )


def _optional_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


class ExternalImplementation(Implementation):
    """A user's factory, named ``MODULE:FACTORY``, checked under ``claims``.

    Give it the spec (imported on first use, in the process that runs the scenario, so an import
    error becomes a failure of this implementation) or the callable itself.
    """

    def __init__(
        self, factory: str | Callable[..., Any], claims: ClaimsName | str, style: Style | None = None
    ) -> None:
        if claims in DEPRECATED_NAMES:
            warnings.warn(
                f"claims={claims!r} is now {DEPRECATED_NAMES[claims]!r}", DeprecationWarning, stacklevel=2
            )
            claims = DEPRECATED_NAMES[claims]
        if claims not in CLAIMS:
            raise ValueError(f"claims must be one of {', '.join(CLAIMS)}, got {claims!r}")
        if style is not None and style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)} or None (detected), got {style!r}")
        self.claims, self.style = claims, style
        self._detected: Style | None = None
        """The style :func:`detect_style` told, in this process (each worker tells its own)."""
        self._from_spec = isinstance(factory, str)
        if isinstance(factory, str):
            split_spec(factory)
            self.name, self._factory = factory, None
        else:
            self.name, self._factory = _spec(factory), factory
        claimed = "no profile: bounded against torch" if claims == "none" else f"claims the {claims} profile"
        self.description = f"your implementation ({claimed})"

    def __getstate__(self) -> dict[str, Any]:
        """A factory named by its spec is imported again by the worker process that runs it."""
        state = dict(self.__dict__)
        if self._from_spec:
            state["_factory"] = None
        return state

    def factory(self) -> Factory:
        if self._factory is None:
            self._factory = load_factory(self.name)
        return self._factory

    def skip_reason(self, scenario: Scenario) -> str | None:
        if self.claims == "none":
            return None
        return unmodelled(scenario, self.claims)

    def declines(self, scenario: Scenario, error: Exception) -> str | None:
        """A user's optimizer that refuses momentum, which ``torch.optim.ASGD`` lacks too, declines
        the scenario: an ASGD that follows torch need not have it."""
        if not uses_momentum(scenario):
            return None
        return (
            f"declined momentum, which torch.optim.ASGD lacks too: {type(error).__name__}: {error} "
            "(raise conformance.Unsupported to say so explicitly)"
        )

    def start(self, scenario: Scenario, workload: Workload) -> Session:
        factory = self.factory()
        if self.style is None and self._detected is None:
            self._detected = detect_style(factory)
        if (self.style or self._detected) == "numpy":
            numerics = None if self.claims == "none" else self.claims
            return ArraySession(factory, scenario, workload, numerics=numerics, own_format=False)
        numerics = "torch" if self.claims == "none" else self.claims
        return TorchSession(factory, scenario, workload, numerics=numerics)


def pairs_for(implementation: ExternalImplementation) -> list[Pair]:
    """The pairs that judge ``implementation``: bit-exact against what it claims, bounded otherwise."""
    return CLAIMED[implementation.claims].pairs(implementation.name)
