"""One implementation's optimizer running one scenario, driven a step at a time.

The runner advances every implementation of a scenario in lock step and compares them after each
step, so only the current values are held, whatever the size of the tensors. Two drivers cover
every implementation, this project's and a user's:

* :class:`ArraySession`: an optimizer over NumPy arrays updated in place, with ``step(grads)`` and
  ``averages()`` (``reference.ASGD``, ``optimized.ASGD``, a user's NumPy-style factory);
* :class:`TorchSession`: a ``torch.optim.Optimizer``-like object over tensors whose ``step()`` reads
  ``.grad`` and whose ``state[p]["ax"]`` holds the averages (torch's ASGD, a user's torch-style one).

What a scenario asks beyond stepping (param groups, an lr change, a checkpoint, injected state) is
done through the optimizer's ``param_groups``, ``state_dict``/``load_state_dict`` and ``state``;
an optimizer that lacks them declines the scenario with :class:`Unsupported`.
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np

from conformance.protocols import Factory
from conformance.scenarios import Scenario
from conformance.unsupported import Unsupported
from conformance.workloads import Gradients, Workload
from optimized.hyperparameters import DEFAULTS
from optimized.torch_interop import TORCH_PROFILES
from reference.numerics import FOREACH_UNMODELLED_ALPHAS, numerics_named

__all__ = [
    "HYPERPARAMETERS",
    "ArraySession",
    "Factory",
    "Session",
    "TorchSession",
    "Unsupported",
    "hyperparameters",
    "late_state",
    "uses_momentum",
]

HYPERPARAMETERS: Final = ("lr", "momentum", "weight_decay", "alpha", "t0", "lambd", "maximize")
"""The keyword names a factory receives, every one of them, every time."""


def hyperparameters(scenario: Scenario) -> dict[str, Any]:
    """Every hyperparameter of this project's API for ``scenario``: its own values over the defaults."""
    chosen = {**DEFAULTS, **scenario.hyper}
    return {name: chosen[name] for name in HYPERPARAMETERS}


def param_groups(scenario: Scenario, tensors: Sequence[Any]) -> list[Any]:
    """``tensors`` as a factory receives them: the list itself, or torch-style group dicts."""
    if not scenario.groups:
        return list(tensors)
    groups, start = [], 0
    for count, overrides in scenario.groups:
        groups.append({"params": list(tensors[start : start + count]), **overrides})
        start += count
    if start != len(tensors):
        raise ValueError(
            f"scenario {scenario.name}: groups hold {start} tensors, the workload {len(tensors)}"
        )
    return groups


def group_values(scenario: Scenario, name: str) -> list[Any]:
    """Each param group's hyperparameter ``name``: its own, else the scenario's (one group: [that])."""
    base = hyperparameters(scenario)[name]
    return [overrides.get(name, base) for _, overrides in scenario.groups] or [base]


def uses_momentum(scenario: Scenario) -> bool:
    """Whether any param group of ``scenario`` has a nonzero momentum."""
    return any(momentum != 0 for momentum in group_values(scenario, "momentum"))


def group_lrs(scenario: Scenario) -> list[float]:
    """Each group's initial lr (the scheduler's base)."""
    return group_values(scenario, "lr")


def unmodelled(scenario: Scenario, numerics: str) -> str | None:
    """Why the profile cannot model ``scenario`` (a dtype or an ``alpha`` it does not model), or ``None``."""
    profile = numerics_named(numerics)
    dtypes = [dtype for dtype in scenario.dtypes if dtype not in profile.dtypes]
    if dtypes:
        return f"the {numerics} profile does not model {', '.join(dtypes)}"
    return unmodelled_alpha(scenario, numerics)


def unmodelled_alpha(scenario: Scenario, numerics: str) -> str | None:
    """Why the profile cannot run ``scenario`` (an ``alpha`` it does not model), or ``None``."""
    if not numerics_named(numerics).foreach:
        return None
    base = hyperparameters(scenario)["alpha"]
    alphas = {base, *(overrides.get("alpha", base) for _, overrides in scenario.groups)}
    if alphas & set(FOREACH_UNMODELLED_ALPHAS):
        return f"the {numerics} profile does not model alpha=0.5 (torch computes that power with MKL's sqrt)"
    return None


def late_state(scenario: Scenario, numerics: str, theta: np.ndarray) -> dict[str, Any]:
    """The state at ``scenario.start_step`` as the profile would hold it: its eta, mu and ax = theta."""
    h = hyperparameters(scenario)
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


class Session(ABC):
    """An optimizer stepping a workload's tensors."""

    @abstractmethod
    def step(self, gradients: Gradients) -> None: ...

    @abstractmethod
    def parameters(self) -> list[np.ndarray]:
        """The current parameters as NumPy arrays (views are fine: read before the next step)."""

    @abstractmethod
    def averages(self) -> list[np.ndarray]: ...

    @abstractmethod
    def set_lr(self, group: int, lr: float) -> None:
        """Set a group's lr as a scheduler does."""

    @abstractmethod
    def checkpoint(self, via: str) -> None:
        """Take the state out, build a fresh optimizer over the same tensors and load it."""

    def scalars(self) -> tuple[float, float, float] | None:
        """``step``, ``eta`` and ``mu`` of the first tensor's state, where the format is known."""
        return None

    def state(self) -> list[dict[str, Any] | None] | None:
        """Each tensor's state in this project's layout, as copies: ``step``, ``eta``, ``mu``,
        ``ax`` and, once there is one, ``momentum_buffer`` (``None`` for a tensor not stepped yet);
        ``None`` where the harness cannot read it."""
        return None


STATE_KEYS: Final = frozenset({"step", "eta", "mu", "ax"})
"""The keys of a tensor's state in this project's layout (and torch's), ``momentum_buffer`` aside."""


def readable_state(
    entries: Sequence[Any], tensors: Sequence[np.ndarray]
) -> list[dict[str, Any] | None] | None:
    """``entries`` (one per tensor, ``None`` where a tensor has no state) if each is in this
    project's layout with arrays of its tensor's shape and dtype, else ``None``."""
    for entry, tensor in zip(entries, tensors, strict=True):
        if entry is None:
            continue
        if not isinstance(entry, dict) or not STATE_KEYS <= entry.keys() <= STATE_KEYS | {"momentum_buffer"}:
            return None
        for key in ("ax", "momentum_buffer"):
            array = entry.get(key)
            if key in entry and not (
                isinstance(array, np.ndarray) and array.shape == tensor.shape and array.dtype == tensor.dtype
            ):
                return None
    return list(entries)


def _needs(optimizer: Any, scenario: Scenario) -> None:
    """Decline up front, before any step, a scenario that needs what ``optimizer`` lacks."""
    needed = []
    if scenario.lr_changes:
        needed.append(("param_groups", "the scenario changes lr as a scheduler does"))
    if scenario.checkpoint_at:
        needed += [(name, "the scenario takes a checkpoint") for name in ("state_dict", "load_state_dict")]
    for name, purpose in needed:
        _required(optimizer, name, purpose)


def _required(optimizer: Any, name: str, purpose: str) -> Any:
    if not hasattr(optimizer, name):
        raise Unsupported(f"the optimizer has no {name} ({purpose})")
    return getattr(optimizer, name)


def _through_torch_file(torch_state_dict: dict[str, Any]) -> Any:
    """A torch-format state dict after ``torch.save`` and ``torch.load(weights_only=True)``."""
    import torch

    buffer = io.BytesIO()
    torch.save(torch_state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


class ArraySession(Session):
    """An optimizer over NumPy arrays: ``step(grads)``, ``averages()``.

    ``numerics`` is the profile whose state the optimizer holds (``None``: no profile), which
    decides injected late-run state and whether a checkpoint in torch's format can carry it.
    ``own_format``: its ``state_dict`` is in this project's layout (``reference``, ``optimized``);
    for a user's optimizer a state the harness cannot convert declines the scenario instead.
    """

    def __init__(
        self,
        factory: Factory,
        scenario: Scenario,
        workload: Workload,
        *,
        numerics: str | None,
        own_format: bool,
    ) -> None:
        self._factory, self._scenario = factory, scenario
        self.numerics, self.own_format = numerics, own_format
        self._tensors = workload.initial()
        self.optimizer = self._make()
        _needs(self.optimizer, scenario)
        if scenario.start_step:
            with self._declining_foreign_state(
                "the scenario starts from state injected through load_state_dict"
            ):
                saved = _required(self.optimizer, "state_dict", "the scenario starts from injected state")()
                saved["state"] = {
                    index: late_state(scenario, numerics or "torch", theta)
                    for index, theta in enumerate(self._tensors)
                }
                _required(self.optimizer, "load_state_dict", "the scenario starts from injected state")(saved)

    @contextlib.contextmanager
    def _declining_foreign_state(self, purpose: str) -> Iterator[None]:
        """For a user's optimizer, a state the harness cannot handle declines the scenario."""
        try:
            yield
        except Unsupported:
            raise
        except Exception as error:
            if self.own_format:
                raise
            raise Unsupported(
                f"{purpose}, in this project's state_dict layout: {type(error).__name__}: {error}"
            ) from error

    def _make(self) -> Any:
        return self._factory(param_groups(self._scenario, self._tensors), **hyperparameters(self._scenario))

    def step(self, gradients: Gradients) -> None:
        self.optimizer.step(gradients)

    def parameters(self) -> list[np.ndarray]:
        return self._tensors

    def averages(self) -> list[np.ndarray]:
        return list(_required(self.optimizer, "averages", "the protocol asks for averages()")())

    def set_lr(self, group: int, lr: float) -> None:
        _required(self.optimizer, "param_groups", "the scenario changes lr as a scheduler does")[group][
            "lr"
        ] = lr

    def checkpoint(self, via: str) -> None:
        saved = _required(self.optimizer, "state_dict", "the scenario takes a checkpoint")()
        if via == "torch":
            if self.numerics not in TORCH_PROFILES:
                raise Unsupported("a checkpoint in torch's format carries only a torch profile's state")
            from optimized.torch_interop import state_dict_from_torch, state_dict_to_torch

            with self._declining_foreign_state("the checkpoint passes through torch's format"):
                saved = state_dict_from_torch(_through_torch_file(state_dict_to_torch(saved)))
        fresh = self._make()
        _required(fresh, "load_state_dict", "the scenario takes a checkpoint")(saved)
        self.optimizer = fresh

    def state(self) -> list[dict[str, Any] | None] | None:
        saved = getattr(self.optimizer, "state_dict", None)
        if saved is None:
            return None
        try:
            entries = saved()["state"]
            return readable_state([entries.get(index) for index in range(len(self._tensors))], self._tensors)
        except Exception:
            if self.own_format:
                raise
            return None  # a user's layout: the reference carries its own

    def scalars(self) -> tuple[float, float, float] | None:
        if not self.own_format:
            return None
        state = self.optimizer.state_dict()["state"].get(0)
        if state is None:
            return None
        return float(state["step"]), float(state["eta"]), float(state["mu"])


class TorchSession(Session):
    """A ``torch.optim.Optimizer``-like object: ``step()`` reads ``.grad``, ``state[p]["ax"]``."""

    def __init__(
        self,
        factory: Factory,
        scenario: Scenario,
        workload: Workload,
        *,
        device: str = "cpu",
        numerics: str = "torch",
    ) -> None:
        """``numerics``: the profile of the path torch takes, for injected late-run state."""
        import torch

        self._torch, self._factory, self._scenario, self._device = torch, factory, scenario, device
        self._tensors = [torch.from_numpy(array).to(device).requires_grad_() for array in workload.initial()]
        self._optimizer = self._make()
        _needs(self._optimizer, scenario)
        if scenario.start_step:
            _required(self._optimizer, "state", "the scenario starts from injected state")
            for tensor in self._tensors:
                late = late_state(scenario, numerics, tensor.detach().cpu().numpy())
                self._optimizer.state[tensor] = {
                    key: torch.from_numpy(np.asarray(value)).to(device) for key, value in late.items()
                }

    def _make(self) -> Any:
        return self._factory(param_groups(self._scenario, self._tensors), **hyperparameters(self._scenario))

    def step(self, gradients: Gradients) -> None:
        for tensor, gradient in zip(self._tensors, gradients, strict=True):
            tensor.grad = None if gradient is None else self._torch.from_numpy(gradient).to(self._device)
        self._optimizer.step()

    def parameters(self) -> list[np.ndarray]:
        return [tensor.detach().cpu().numpy() for tensor in self._tensors]

    def averages(self) -> list[np.ndarray]:
        """Each tensor's ``ax``; a tensor never stepped (no state yet) averages to itself."""
        averages = []
        for tensor in self._tensors:
            state = self._optimizer.state.get(tensor, {})
            held = state.get("ax", tensor)
            averages.append(held.detach().cpu().numpy())
        return averages

    def set_lr(self, group: int, lr: float) -> None:
        self._optimizer.param_groups[group]["lr"] = lr

    def checkpoint(self, via: str) -> None:
        saved = self._optimizer.state_dict()
        if via == "torch":
            saved = _through_torch_file(saved)
        fresh = self._make()
        fresh.load_state_dict(saved)
        self._optimizer = fresh

    def state(self) -> list[dict[str, Any] | None] | None:
        held = getattr(self._optimizer, "state", None)
        if held is None:
            return None
        entries = [self._copied(held.get(tensor)) for tensor in self._tensors]
        return readable_state(entries, [tensor.detach().cpu().numpy() for tensor in self._tensors])

    def _copied(self, entry: Any) -> dict[str, Any] | None:
        """A state entry as NumPy copies, a clock (a 0-d tensor) as its NumPy scalar (torch's float32)."""
        if not entry:
            return None
        copied = {}
        for key, value in entry.items():
            array = np.array(value.detach().cpu().numpy() if isinstance(value, self._torch.Tensor) else value)
            copied[key] = array[()] if key in ("step", "eta", "mu") else array
        return copied

    def scalars(self) -> tuple[float, float, float] | None:
        state = self._optimizer.state.get(self._tensors[0], {})
        if not {"step", "eta", "mu"} <= set(state):
            return None
        return float(state["step"]), float(state["eta"]), float(state["mu"])
