"""``optimized.torch.ASGD``: ``torch.optim.ASGD`` as a real ``torch.optim.Optimizer``, stepped by the
compiled kernel.

The one-line swap: ``from optimized.torch import ASGD`` in place of ``from torch.optim import ASGD``.
The signature, positional order and defaults are torch's; ``momentum`` (heavy ball, as in
:class:`optimized.ASGD`) and ``kernel`` are keyword-only extensions after them. Everything that is not
arithmetic comes from torch's base class: param groups with any extra keys, bare tensors and named
parameters, ``add_param_group``, ``zero_grad``, ``step(closure)``, every hook, ``state[p]`` as a dict of
tensors in torch's keys and dtypes, ``state_dict``/``load_state_dict`` in torch's format.

A group's step takes one of two paths, and :attr:`ASGD.last_step_paths` says which ran:

* **the kernel**: CPU tensors of float32, float64, complex64 or complex128 in a dense layout, with a
  float ``lr`` and neither ``differentiable`` nor ``capturable``. Lines 2 to 7 run in one compiled pass
  per element (:mod:`optimized.numba_kernel`, or the NumPy kernel while numba loads or where it is
  missing) on zero-copy views of the tensors' memory, rounded as the path torch would take:
  ``foreach=None``/``False`` is torch's CPU for-loop path, ``foreach=True`` its foreach path. The clocks
  (``step``, ``eta``, ``mu``) are computed as torch computes them (its Python expressions, its float32
  tensor arithmetic on the foreach path, its rounding to the state's dtype), once per distinct clock
  rather than once per parameter.
* **torch's functional ASGD** (``torch.optim.asgd.asgd``) for everything else torch accepts: tensors on
  an accelerator, tensor subclasses such as DTensor, dtypes the kernels do not model, a tensor ``lr``,
  ``differentiable=True``, ``capturable=True``, overlapping or repeated parameters, coefficients beyond
  the parameters' dtype. So the class is correct wherever torch's is.

The step runs outside any ``torch.compile`` graph (it is excluded from tracing), so a compiled training
step that calls it keeps the eager bits.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, NamedTuple

import numpy as np
import torch
from torch.optim.asgd import asgd as torch_asgd

from optimized.backends import KERNELS, NumbaBackend, make_backend
from optimized.plan import StepScalars
from optimized.threads import DEFAULT_THREADS
from optimized.torch_clocks import beyond_range, next_clock, scalars_for_clock
from optimized.torch_groups import CHECKED_KEYS, GROUP_DEFAULTS, check_group, group_refusal
from optimized.torch_parts import TorchParts
from optimized.torch_rules import gradient_refusal, named, tensor_refusal
from optimized.torch_state import clock_dtype, initialize, momentum_directions
from optimized.torch_views import GroupViews, Member

__all__ = ["ASGD", "StepPath"]

_TORCH: Final = TorchParts(
    tensor=torch.Tensor,
    plain_tensors=(torch.Tensor, torch.nn.Parameter),
    kernel_dtypes={
        torch.float32: np.float32,
        torch.float64: np.float64,
        torch.complex64: np.float32,
        torch.complex128: np.float64,
    },
    float32=torch.float32,
    float64=torch.float64,
    channels_last=torch.channels_last,
    channels_last_3d=torch.channels_last_3d,
    preserve_format=torch.preserve_format,
    get_default_dtype=torch.get_default_dtype,
    as_tensor=torch.as_tensor,
    zeros=torch.zeros,
    ones=torch.ones,
    zeros_like=torch.zeros_like,
    is_complex=torch.is_complex,
    view_as_real=torch.view_as_real,
)
"""What the checks, views, clocks and state of the torch-free modules use of torch, handed to them."""


class StepPath(NamedTuple):
    """Which path stepped a param group, and why torch's did where it did."""

    path: str
    """``"kernel"`` (the compiled or NumPy kernel) or ``"torch"`` (torch's functional ASGD)."""
    reason: str | None = None
    """Why the kernel did not serve the group (``None`` on the kernel path)."""


_KERNEL_PATH: Final = StepPath("kernel")


class ASGD(torch.optim.Optimizer):
    """Averaged SGD with torch's signature and bits, stepped by the compiled kernel where it can be.

    ``momentum`` (keyword-only, default 0) adds heavy-ball momentum after weight decay and before
    λ, as :class:`optimized.ASGD` does (its buffer is ``state[p]["momentum_buffer"]``; torch's ASGD
    has none, so a run with momentum has no torch counterpart). ``kernel`` chooses the arithmetic of
    the kernel path: ``"auto"`` (numba where it can be imported, the NumPy kernel until it has
    loaded), ``"numba"`` or ``"numpy"``; it never changes a bit.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        momentum: float = 0.0,
        kernel: str = "auto",
    ) -> None:
        if not isinstance(kernel, str) or kernel not in KERNELS:
            raise ValueError(f"Invalid kernel: {kernel!r} (must be one of {KERNELS})")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
            "momentum": momentum,
        }
        check_group(defaults, "the defaults", _TORCH)
        self.kernel = kernel
        self._backend = make_backend(kernel, None, DEFAULT_THREADS)
        self._last_step_paths: list[StepPath | None] = []
        self._views: dict[int, GroupViews] = {}
        self._checked: dict[int, tuple[tuple[Any, ...], str | None]] = {}
        super().__init__(params, defaults)

    @property
    def last_step_paths(self) -> list[StepPath | None]:
        """Per param group, the path its last step took (``None``: no parameter had a gradient)."""
        return list(self._last_step_paths)

    @property
    def backend(self) -> str:
        """The kernel the kernel path uses: ``"numba"`` or ``"numpy"``."""
        return self._backend.name

    def wait_until_compiled(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` seconds (``None``: no limit) for the compiled kernel that
        ``kernel="auto"`` loads in the background; whether steps now use it (``False``: NumPy's)."""
        wait = getattr(self._backend, "wait_until_loaded", None)
        return bool(wait(timeout)) if wait is not None else False

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, with the group's hyperparameters checked first."""
        if isinstance(param_group, dict):
            merged = {**self.defaults, **param_group}
            check_group(merged, f"param group {len(self.param_groups)}", _TORCH)
        super().add_param_group(param_group)

    # ----------------------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "kernel": self.kernel}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also the last stage of ``load_state_dict``: groups lacking keys get torch's (and our)
        defaults, non-tensor clocks become tensors, as torch's ASGD does; the groups are checked
        before anything is installed."""
        for index, group in enumerate(state["param_groups"]):
            for key, value in GROUP_DEFAULTS.items():
                group.setdefault(key, value)
            check_group(group, f"param group {index}", _TORCH)
        super().__setstate__(state)
        scalar_dtype = clock_dtype(_TORCH)
        for group in self.param_groups:
            for p in group["params"]:
                entry = self.state.get(p, {})
                for key in ("step", "eta", "mu"):
                    if key in entry and not torch.is_tensor(entry[key]):
                        entry[key] = torch.tensor(float(entry[key]), dtype=scalar_dtype, device=p.device)
        if "_backend" not in self.__dict__:
            self.kernel = state.get("kernel", "auto")
            self._backend = make_backend(self.kernel, None, DEFAULT_THREADS)
            self._last_step_paths = []
            self._views = {}
            self._checked = {}

    # --------------------------------------------------------------------------------- step

    @torch.compiler.disable  # type: ignore[untyped-decorator]
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One ASGD step of every param group (``closure`` re-evaluates the loss, as in torch)."""
        self._accelerator_graph_capture_health_check()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        refusals = [self._check_group_once(index, group) for index, group in enumerate(self.param_groups)]
        self._last_step_paths = [
            self._step_group(position, group, refusal)
            for position, (group, refusal) in enumerate(zip(self.param_groups, refusals, strict=True))
        ]
        return loss

    def _check_group_once(self, index: int, group: dict[str, Any]) -> str | None:
        """:func:`check_group`, again only when one of the group's values was replaced; and why
        the kernel cannot step the group whatever its tensors (:func:`group_refusal`), or ``None``."""
        values = tuple(map(group.get, CHECKED_KEYS))
        checked = self._checked.get(index)
        if checked is not None and all(map(operator.is_, values, checked[0])):
            return checked[1]
        check_group(group, f"param group {index}", _TORCH)
        refusal = group_refusal(group, _TORCH)
        self._checked[index] = (values, refusal)
        return refusal

    def _step_group(self, position: int, group: dict[str, Any], reason: str | None) -> StepPath | None:
        if reason is None:
            members, reason = self._members(position, group)
            if reason is None:
                if not members:
                    return None
                self._kernel_step(position, group, members)
                return _KERNEL_PATH
        stepping = list(self._with_gradients(group))
        if not stepping:
            return None
        self._torch_step(group, stepping)
        return StepPath("torch", reason)

    def _with_gradients(
        self, group: dict[str, Any]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
        """The group's parameters that have a gradient, with their state (made as torch's ASGD
        makes it before a parameter's first step)."""
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("ASGD does not support sparse gradients")
            state = self.state[p]
            if not state:
                initialize(state, p, group["lr"], _TORCH)
            yield p, grad, state

    # ------------------------------------------------------------------------ the kernel path

    def _members(self, position: int, group: dict[str, Any]) -> tuple[list[Member], str | None]:
        """The kernel's view of each parameter, or why the kernel cannot step the group.

        Views are remembered from step to step and made anew for whatever is no longer the same
        tensor or memory (a new gradient, a replaced ``.data``, a loaded state); what is made anew
        is checked again for memory it shares with what the step writes. A group the kernel cannot
        step forgets its views, so that its next step checks everything afresh."""
        try:
            members, reason = self._remembered_members(position, group)
        except BaseException:  # a sparse gradient, a malformed state, Ctrl-C: nothing half-remembered
            self._views.pop(position, None)
            raise
        if reason is not None:
            self._views.pop(position, None)
        return members, reason

    def _remembered_members(self, position: int, group: dict[str, Any]) -> tuple[list[Member], str | None]:
        momentum = group["momentum"] != 0
        foreach = group["foreach"] is True
        scalars: dict[tuple[float, float, type[np.floating[Any]]], StepScalars] = {}
        members: list[Member] = []
        remembered = self._views.get(position)
        views = remembered.members if remembered is not None else {}
        rebuilt = remembered is None
        new_gradients = []
        state_of = self.state
        for p in group["params"]:
            grad: torch.Tensor | None = p.grad
            if grad is None:
                continue
            member = views.get(id(p))
            if member is None or not member.unchanged(p, grad, state_of[p], momentum):
                if grad.is_sparse:
                    raise RuntimeError("ASGD does not support sparse gradients")
                state = state_of[p]
                if not state:
                    initialize(state, p, group["lr"], _TORCH)
                buf = state.get("momentum_buffer") if momentum else None
                if member is None or not member.same_tensors(p, state, buf):
                    reason = tensor_refusal(p, state, buf, _TORCH)
                    if reason is not None:
                        return [], f"{named(group, p)} {reason}"
                    member = Member.of(p, state, buf, _TORCH)
                    rebuilt = True
                pointer = grad.data_ptr()
                if (
                    grad is not member.grad
                    or pointer != member.grad_pointer
                    or grad.stride() != member.grad_stride
                ):
                    reason = gradient_refusal(member, grad, _TORCH)
                    if reason is not None:
                        return [], f"{named(group, p)} {reason}"
                    member.take_gradient(grad, pointer)
                    new_gradients.append(member)
                member.task.first_momentum_step = momentum and buf is None
                if member.task.first_momentum_step:
                    member.start_momentum(_TORCH)
                    rebuilt = True
            eta, mu = member.eta_view.item(), member.mu_view.item()
            key = (eta, mu, member.real)
            step_scalars = scalars.get(key)
            if step_scalars is None:
                step_scalars = scalars[key] = scalars_for_clock(group, eta, mu, foreach)
                problem = beyond_range(step_scalars, member.real)
                if problem is not None:
                    return [], f"{named(group, p)}: {problem}"
            member.task.scalars = step_scalars
            members.append(member)
        if rebuilt or len(views) != len(members):
            remembered = GroupViews.of(members)
            if remembered is None:
                return [], "parameters or their state share memory (torch steps them one after another)"
            self._views[position] = remembered
            new_gradients = members
        assert remembered is not None
        if any(remembered.written(member.grad_pointer, member.task.theta.nbytes) for member in new_gradients):
            return [], "a gradient shares memory with what the step writes (torch steps one after another)"
        remembered.take_gradients(new_gradients)
        return members, None

    def _kernel_step(self, position: int, group: dict[str, Any], members: list[Member]) -> None:
        """Lines 2 to 7 by the kernel, then the clocks as torch computes them (lines 1 and 8)."""
        clocks: dict[tuple[torch.dtype, float], tuple[float, float, float]] = {}
        keys = []
        for member in members:
            key = (member.step.dtype, member.step_view.item())
            if key not in clocks:  # computed before anything changes: torch's schedule may raise
                clocks[key] = next_clock(group, member.step, member.step_view, _TORCH)
            keys.append(key)
        tasks = [member.task for member in members]
        backend = self._backend
        if not (isinstance(backend, NumbaBackend) and backend.run_whole(tasks, self._views[position].table)):
            backend.run(tasks)
        torch.autograd.graph.increment_version([member.param for member in members])
        for member, key in zip(members, keys, strict=True):
            if member.task.first_momentum_step:
                self.state[member.param]["momentum_buffer"] = member.buf
            member.step_view[()], member.eta_view[()], member.mu_view[()] = clocks[key]

    # ------------------------------------------------------------------------- torch's path

    def _torch_step(
        self, group: dict[str, Any], stepping: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]
    ) -> None:
        """torch's functional ASGD; with momentum, lines 2 to 4 first in torch ops (torch has none).
        Autograd records the step only with ``differentiable=True``, as in torch."""
        with torch.set_grad_enabled(bool(self.defaults["differentiable"])):
            self._torch_functional_step(group, stepping)

    def _torch_functional_step(
        self, group: dict[str, Any], stepping: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]
    ) -> None:
        params = [p for p, _, _ in stepping]
        grads = [grad for _, grad, _ in stepping]
        maximize, weight_decay = group["maximize"], group["weight_decay"]
        if group["momentum"] != 0:
            grads = momentum_directions(group, stepping, _TORCH)
            maximize, weight_decay = False, 0
        torch_asgd(
            params,
            grads,
            [state["ax"] for _, _, state in stepping],
            [state["mu"] for _, _, state in stepping],
            [state["eta"] for _, _, state in stepping],
            [state["step"] for _, _, state in stepping],
            lambd=group["lambd"],
            lr=group["lr"],
            t0=group["t0"],
            alpha=group["alpha"],
            weight_decay=weight_decay,
            foreach=group["foreach"],
            maximize=maximize,
            differentiable=group["differentiable"],
            capturable=group["capturable"],
            has_complex=any(torch.is_complex(p) for p in params),
        )
