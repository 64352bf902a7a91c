"""Bring your own implementation: a user's ASGD factory joins the matrix under the profile it claims.

A factory is called as ``factory(params, **hyperparameters)`` with every hyperparameter of this
project's API (``lr, momentum, weight_decay, alpha, t0, lambd, maximize``), and ``params`` either a
list of tensors or, in scenarios with param groups, torch-style group dicts. It is tried two ways:

* **NumPy style**: ``params`` are NumPy arrays updated in place; the optimizer has ``step(grads)``
  (a list aligned with the parameters of all groups, ``None`` skips) and ``averages()``;
* **torch style**, when the NumPy call raises ``TypeError`` or returns an object without
  ``averages``: ``params`` are ``torch.Tensor`` leaves; the optimizer's ``step()`` reads ``.grad``
  and ``state[p]["ax"]`` holds the averages (``torch.optim.Optimizer``'s interface).

The style that works is kept for the rest of the run. ``Unsupported("why")`` declines a scenario.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from conformance.implementations import Implementation
from conformance.scenarios import Scenario
from conformance.sessions import ArraySession, Factory, Session, TorchSession, unmodelled
from conformance.verdicts import BIT_EXACT, INDEPENDENT_VS_TORCH, Pair
from conformance.workloads import Workload

__all__ = ["CLAIMS", "ExternalImplementation", "load_factory", "pairs_for", "split_spec"]

CLAIMS: Final = ("torch", "torch-foreach", "fast", "none")
"""What an implementation may claim: the bits of a profile (``torch``, ``torch-foreach``, ``fast``)
or none of them."""


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


class ExternalImplementation(Implementation):
    """A user's factory, named ``MODULE:FACTORY``, checked under ``claims``.

    Give it the spec (imported on first use, in the process that runs the scenario, so an import
    error becomes a failure of this implementation) or the callable itself.
    """

    def __init__(self, factory: str | Callable[..., Any], claims: str) -> None:
        if claims not in CLAIMS:
            raise ValueError(f"claims must be one of {', '.join(CLAIMS)}, got {claims!r}")
        self.claims = claims
        self._from_spec = isinstance(factory, str)
        if isinstance(factory, str):
            split_spec(factory)
            self.name, self._factory = factory, None
        else:
            self.name, self._factory = _spec(factory), factory
        claimed = "no profile: bounded against torch" if claims == "none" else f"claims the {claims} profile"
        self.description = f"your implementation ({claimed})"
        self._style: str | None = None

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

    def start(self, scenario: Scenario, workload: Workload) -> Session:
        factory = self.factory()
        numerics = None if self.claims == "none" else self.claims
        session: Session
        if self._style in (None, "numpy"):
            try:
                session = ArraySession(factory, scenario, workload, numerics=numerics, own_format=False)
            except TypeError as numpy_error:
                if self._style == "numpy":
                    raise
                try:
                    session = TorchSession(factory, scenario, workload, numerics=numerics or "torch")
                except Exception as torch_error:
                    raise TypeError(
                        f"as a NumPy-style factory: {type(numpy_error).__name__}: {numpy_error}; as a "
                        f"torch-style factory: {type(torch_error).__name__}: {torch_error}"
                    ) from torch_error
                self._style = "torch"
                return session
            assert isinstance(session, ArraySession)
            if not hasattr(session.optimizer, "averages") and self._style is None:
                self._style = "torch"
                return TorchSession(factory, scenario, workload, numerics=numerics or "torch")
            self._style = "numpy"
            return session
        return TorchSession(factory, scenario, workload, numerics=numerics or "torch")


def pairs_for(implementation: ExternalImplementation) -> list[Pair]:
    """The pairs that judge ``implementation``: bit-exact against what it claims, bounded otherwise."""
    name = implementation.name
    if implementation.claims == "torch":
        return [Pair("reference-torch", name, BIT_EXACT), Pair(name, "torch-forloop", BIT_EXACT)]
    if implementation.claims == "torch-foreach":
        return [Pair("reference-torch-foreach", name, BIT_EXACT), Pair(name, "torch-foreach", BIT_EXACT)]
    if implementation.claims == "fast":
        return [Pair("reference-fast", name, BIT_EXACT)]
    return [Pair(name, "torch-forloop", INDEPENDENT_VS_TORCH)]
