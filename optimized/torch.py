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

import bisect
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import torch
from torch.optim.asgd import asgd as torch_asgd

from optimized.backends import KERNELS, NumbaBackend, make_backend
from optimized.plan import StepScalars, Task
from optimized.threads import DEFAULT_THREADS

__all__ = ["ASGD", "StepPath"]

_KERNEL_DTYPES: Final[dict[torch.dtype, type[np.floating[Any]]]] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.complex64: np.float32,
    torch.complex128: np.float64,
}
"""The parameter dtypes the kernels step, and the real dtype a parameter is stepped as."""
_LARGEST: Final[dict[type[np.floating[Any]], float]] = {
    np.float32: float(np.finfo(np.float32).max),
    np.float64: float(np.finfo(np.float64).max),
}
_PLAIN_TENSORS: Final = (torch.Tensor, torch.nn.Parameter)
"""Tensor types whose memory is the tensor (a subclass such as DTensor may hold a shard or nothing)."""
_NO_SCALARS: Final = StepScalars(
    maximize=False, weight_decay=0.0, momentum=0.0, decay=1.0, eta=0.0, mu=1.0, fused=True
)
"""Placeholder scalars of a task before its first step."""
_CHECKED_KEYS: Final = ("lr", "lambd", "alpha", "t0", "weight_decay", "foreach", "maximize",
                         "differentiable", "capturable", "momentum")  # fmt: skip
_GROUP_DEFAULTS: Final = {
    "foreach": None,
    "maximize": False,
    "differentiable": False,
    "capturable": False,
    "momentum": 0.0,
}
"""What a param group lacking these keys means (an older or a ``torch.optim.ASGD`` state dict)."""


class StepPath(NamedTuple):
    """Which path stepped a param group, and why torch's did where it did."""

    path: str
    """``"kernel"`` (the compiled or NumPy kernel) or ``"torch"`` (torch's functional ASGD)."""
    reason: str | None = None
    """Why the kernel did not serve the group (``None`` on the kernel path)."""


def _number(name: str, value: object) -> float:
    """A hyperparameter as a float to check (it is stored as given)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        return float(value.detach().cpu().reshape(()).item())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def _check_group(group: dict[str, Any], where: str) -> None:
    """Refuse a param group's hyperparameters that no run could use, naming the value.

    torch checks ``lr >= 0`` and ``weight_decay >= 0`` (its messages are kept); a negative ``lambd``
    or ``alpha`` fails torch mid-run or silently inverts the schedule (pytorch#193772), so both are
    refused up front here, as are non-finite values and a NaN ``t0``.
    """
    lr = _number("lr", group["lr"])
    if not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {group['lr']}")
    weight_decay = _number("weight_decay", group["weight_decay"])
    if not weight_decay >= 0.0:
        raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
    for name in ("lr", "weight_decay", "lambd", "alpha", "momentum"):
        value = _number(name, group[name])
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"Invalid {name} value: {group[name]!r} in {where} (must be finite and >= 0)")
    if math.isnan(_number("t0", group["t0"])):
        raise ValueError(
            f"Invalid t0 value: {group['t0']!r} in {where} (must not be NaN; inf never averages)"
        )
    if group["foreach"] is not None and not isinstance(group["foreach"], bool):
        raise TypeError(f"foreach must be None or a bool, got {group['foreach']!r} in {where}")
    for name in ("maximize", "differentiable", "capturable"):
        if not isinstance(group[name], bool):
            raise TypeError(f"{name} must be a bool, got {group[name]!r} in {where}")


def _flat_real(tensor: torch.Tensor, order: tuple[int, ...]) -> np.ndarray:
    """The tensor's memory as a flat real NumPy array (a view; a complex value is two reals)."""
    if order:
        tensor = tensor.permute(order)
    array = (tensor.detach() if tensor.requires_grad else tensor).numpy().reshape(-1)
    return array.view(_KERNEL_DTYPES[tensor.dtype]) if array.dtype.kind == "c" else array


def _memory_order(tensor: torch.Tensor) -> tuple[int, ...] | None:
    """How a dense tensor's elements lie in memory: ``()`` for C order, the permutation that makes
    a channels-last tensor C-ordered, or ``None`` for any other layout (not stepped by the kernel)."""
    if tensor.is_contiguous():
        return ()
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    if tensor.dim() == 5 and tensor.is_contiguous(memory_format=torch.channels_last_3d):
        return (0, 2, 3, 4, 1)
    return None


@dataclass(slots=True, eq=False)
class _GroupViews:
    """A group's remembered members, and the memory their step writes (sorted, disjoint): the
    parameters, averages, momentum buffers and clocks (one clock shared by two parameters advances
    twice in torch)."""

    members: dict[int, _Member]
    writes: list[tuple[int, int]]
    starts: list[int]
    table: np.ndarray
    """The members as rows of the compiled kernel (:data:`optimized.numba_kernel.ROW_COLUMNS`),
    element 0 of a dense tensor's flat view being at its ``data_ptr()``; the gradients' column is
    kept current by :meth:`take_gradients`."""

    @classmethod
    def of(cls, members: Sequence[_Member]) -> _GroupViews | None:
        """The group's views, or ``None`` where what the step writes overlaps: the kernel steps
        parameters side by side, torch one after another."""
        writes = sorted(
            _span(tensor)
            for member in members
            for tensor in (member.param, member.ax, member.buf, member.step, member.eta, member.mu)
            if tensor is not None and tensor.numel()
        )
        if any(a[1] > b[0] for a, b in itertools.pairwise(writes)):
            return None
        starts = [start for start, _ in writes]
        rows = []
        for row, member in enumerate(members):
            member.row = row
            theta, ax, buf = member.pointers[0], member.pointers[1], member.pointers[5]
            rows.append((theta, member.grad_pointer, ax, buf or theta, 0, member.task.theta.size))
        table = np.array(rows, np.int64).reshape(len(rows), 6)
        return cls({id(member.param): member for member in members}, writes, starts, table)

    def take_gradients(self, members: Sequence[_Member]) -> None:
        """The new gradients of ``members`` into the table."""
        for member in members:
            self.table[member.row, 1] = member.grad_pointer

    def written(self, start: int, nbytes: int) -> bool:
        """Whether ``nbytes`` at ``start`` (a gradient) share memory with what the step writes."""
        if not nbytes:
            return False
        stop = start + nbytes
        at = bisect.bisect_right(self.starts, start)
        return (at > 0 and self.writes[at - 1][1] > start) or (
            at < len(self.writes) and self.writes[at][0] < stop
        )


@dataclass(slots=True, eq=False)
class _Member:
    """One parameter as the kernel steps it: its tensors, and flat views of their memory that
    stay valid while the tensors (and the memory behind ``param``) are the same."""

    param: torch.Tensor
    pointers: tuple[int, int, int, int, int, int]
    """The addresses of the parameter, its average, its clocks and its momentum buffer (0 for none):
    the same tensor objects can be given other memory in place (``.data =``, ``set_``, and
    ``share_memory_()``, which frees the memory the views show)."""
    stride: tuple[int, ...]
    shape: torch.Size
    dtype: torch.dtype
    ax: torch.Tensor
    step: torch.Tensor
    eta: torch.Tensor
    mu: torch.Tensor
    buf: torch.Tensor | None
    order: tuple[int, ...]
    real: type[np.floating[Any]]
    task: Task
    step_view: np.ndarray
    eta_view: np.ndarray
    mu_view: np.ndarray
    grad: torch.Tensor | None = None
    grad_pointer: int = 0
    grad_stride: tuple[int, ...] = ()
    row: int = 0
    """The member's row in its group's table."""

    @classmethod
    def of(cls, p: torch.Tensor, state: dict[str, Any], buf: torch.Tensor | None) -> _Member:
        order = _memory_order(p)
        assert order is not None
        theta = _flat_real(p, order)
        return cls(
            param=p,
            pointers=_pointers(p, state["ax"], state["step"], state["eta"], state["mu"], buf),
            stride=p.stride(),
            shape=p.shape,
            dtype=p.dtype,
            ax=state["ax"],
            step=state["step"],
            eta=state["eta"],
            mu=state["mu"],
            buf=buf,
            order=order,
            real=_KERNEL_DTYPES[p.dtype],
            task=Task(
                theta,
                theta,
                _flat_real(state["ax"], order),
                None if buf is None else _flat_real(buf, order),
                _NO_SCALARS,
            ),
            step_view=state["step"].numpy(),
            eta_view=state["eta"].numpy(),
            mu_view=state["mu"].numpy(),
        )

    def same_tensors(self, p: torch.Tensor, state: dict[str, Any], buf: torch.Tensor | None) -> bool:
        """Whether the views still show this parameter and its state: the same tensor objects,
        of the same dtype, shape and layout (no pending conjugation or negation: ``.data =`` such a
        view of the same memory), in the same memory."""
        pointers = self.pointers
        return (
            p is self.param
            and state.get("ax") is self.ax
            and state.get("step") is self.step
            and state.get("eta") is self.eta
            and state.get("mu") is self.mu
            and buf is self.buf
            and p.dtype is self.dtype
            and p.shape == self.shape
            and p.stride() == self.stride
            and not p.is_conj()
            and not p.is_neg()
            and p.data_ptr() == pointers[0]
            and self.ax.data_ptr() == pointers[1]
            and self.step.data_ptr() == pointers[2]
            and self.eta.data_ptr() == pointers[3]
            and self.mu.data_ptr() == pointers[4]
            and (buf is None or buf.data_ptr() == pointers[5])
        )

    def unchanged(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], momentum: bool) -> bool:
        """Whether nothing of this parameter changed since its last step but its values: the same
        gradient object in the same memory, the same tensors (:meth:`same_tensors`), a momentum
        buffer already made (the steady state of a loop that accumulates into ``.grad``)."""
        buf = state.get("momentum_buffer") if momentum else None
        return (
            grad is self.grad
            and grad.data_ptr() == self.grad_pointer
            and grad.stride() == self.grad_stride
            and not self.task.first_momentum_step
            and (buf is not None or not momentum)
            and self.same_tensors(p, state, buf)
        )

    def take_gradient(self, grad: torch.Tensor, pointer: int) -> None:
        """Read ``grad`` (at ``pointer``, of the parameter's dtype, shape and layout) at this step."""
        self.grad, self.grad_pointer, self.grad_stride = grad, pointer, grad.stride()
        self.task.grad = _flat_real(grad, self.order)

    def start_momentum(self) -> None:
        """A zero momentum buffer, which the kernel's first momentum step sets to the direction."""
        self.buf = torch.zeros_like(self.param, memory_format=torch.preserve_format)
        self.task.buf = _flat_real(self.buf, self.order)
        self.pointers = (*self.pointers[:5], self.buf.data_ptr())  # the table's buffer column


_KERNEL_PATH: Final = StepPath("kernel")
_EXACT_FLOAT32_INTEGERS: Final = 2.0**24
"""Every integer up to this one is a float32."""


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
        _check_group(defaults, "the defaults")
        self.kernel = kernel
        self._backend = make_backend(kernel, None, DEFAULT_THREADS)
        self._last_step_paths: list[StepPath | None] = []
        self._views: dict[int, _GroupViews] = {}
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

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, with the group's hyperparameters checked first."""
        if isinstance(param_group, dict):
            merged = {**self.defaults, **param_group}
            _check_group(merged, f"param group {len(self.param_groups)}")
        super().add_param_group(param_group)

    # ----------------------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "kernel": self.kernel}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also the last stage of ``load_state_dict``: groups lacking keys get torch's (and our)
        defaults, non-tensor clocks become tensors, as torch's ASGD does; the groups are checked
        before anything is installed."""
        for index, group in enumerate(state["param_groups"]):
            for key, value in _GROUP_DEFAULTS.items():
                group.setdefault(key, value)
            _check_group(group, f"param group {index}")
        super().__setstate__(state)
        scalar_dtype = _scalar_dtype()
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
        """:func:`_check_group`, again only when one of the group's values was replaced; and why
        the kernel cannot step the group whatever its tensors (:func:`_group_refusal`), or ``None``."""
        values = tuple(map(group.get, _CHECKED_KEYS))
        checked = self._checked.get(index)
        if checked is not None and all(map(operator.is_, values, checked[0])):
            return checked[1]
        _check_group(group, f"param group {index}")
        refusal = _group_refusal(group)
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
                _initialize(state, p, group["lr"])
            yield p, grad, state

    # ------------------------------------------------------------------------ the kernel path

    def _members(self, position: int, group: dict[str, Any]) -> tuple[list[_Member], str | None]:
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

    def _remembered_members(self, position: int, group: dict[str, Any]) -> tuple[list[_Member], str | None]:
        momentum = group["momentum"] != 0
        foreach = group["foreach"] is True
        scalars: dict[tuple[float, float, type[np.floating[Any]]], StepScalars] = {}
        members: list[_Member] = []
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
                    _initialize(state, p, group["lr"])
                buf = state.get("momentum_buffer") if momentum else None
                if member is None or not member.same_tensors(p, state, buf):
                    reason = _tensor_refusal(p, state, buf)
                    if reason is not None:
                        return [], f"{_named(group, p)} {reason}"
                    member = _Member.of(p, state, buf)
                    rebuilt = True
                pointer = grad.data_ptr()
                if (
                    grad is not member.grad
                    or pointer != member.grad_pointer
                    or grad.stride() != member.grad_stride
                ):
                    reason = _gradient_refusal(member, grad)
                    if reason is not None:
                        return [], f"{_named(group, p)} {reason}"
                    member.take_gradient(grad, pointer)
                    new_gradients.append(member)
                member.task.first_momentum_step = momentum and buf is None
                if member.task.first_momentum_step:
                    member.start_momentum()
                    rebuilt = True
            eta, mu = member.eta_view.item(), member.mu_view.item()
            key = (eta, mu, member.real)
            step_scalars = scalars.get(key)
            if step_scalars is None:
                step_scalars = scalars[key] = _step_scalars(group, eta, mu, foreach)
                problem = _beyond_range(step_scalars, member.real)
                if problem is not None:
                    return [], f"{_named(group, p)}: {problem}"
            member.task.scalars = step_scalars
            members.append(member)
        if rebuilt or len(views) != len(members):
            remembered = _GroupViews.of(members)
            if remembered is None:
                return [], "parameters or their state share memory (torch steps them one after another)"
            self._views[position] = remembered
            new_gradients = members
        assert remembered is not None
        if any(remembered.written(member.grad_pointer, member.task.theta.nbytes) for member in new_gradients):
            return [], "a gradient shares memory with what the step writes (torch steps one after another)"
        remembered.take_gradients(new_gradients)
        return members, None

    def _kernel_step(self, position: int, group: dict[str, Any], members: list[_Member]) -> None:
        """Lines 2 to 7 by the kernel, then the clocks as torch computes them (lines 1 and 8)."""
        clocks: dict[tuple[torch.dtype, float], tuple[float, float, float]] = {}
        keys = []
        for member in members:
            key = (member.step.dtype, member.step_view.item())
            if key not in clocks:  # computed before anything changes: torch's schedule may raise
                clocks[key] = _next_clock(group, member.step, member.step_view)
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
            grads = _momentum_directions(group, stepping)
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


def _momentum_directions(
    group: dict[str, Any], stepping: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]
) -> list[torch.Tensor]:
    """Lines 2 to 4 as the kernel rounds them, on real views: ``g = -g``, ``g + wd·θ`` fused
    (ATen's ``add`` with ``alpha``), then ``buf = g`` at the first momentum step, else
    ``m·buf + g`` in two roundings; the buffers are the directions torch's ASGD then takes."""
    directions = []
    for p, grad, state in stepping:
        g = _real(grad)
        if group["maximize"]:
            g = -g
        if group["weight_decay"] != 0:
            g = g.add(_real(p), alpha=group["weight_decay"])
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = torch.zeros_like(p, memory_format=torch.preserve_format)
            _real(buf).copy_(g)
            state["momentum_buffer"] = buf
        else:
            _real(buf).mul_(group["momentum"]).add_(g)
        directions.append(buf)
    return directions


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """A complex tensor as pairs of reals (torch's ASGD steps complex parameters so)."""
    return torch.view_as_real(tensor) if torch.is_complex(tensor) else tensor


def _pointers(*tensors: torch.Tensor | None) -> tuple[int, int, int, int, int, int]:
    """The tensors' addresses (0 for ``None``)."""
    p, ax, step, eta, mu, buf = tensors
    assert p is not None and ax is not None and step is not None and eta is not None and mu is not None
    return (p.data_ptr(), ax.data_ptr(), step.data_ptr(), eta.data_ptr(), mu.data_ptr(),
            0 if buf is None else buf.data_ptr())  # fmt: skip


def _named(group: dict[str, Any], p: torch.Tensor) -> str:
    """How a message names a parameter of a group: its name, or its position in the group."""
    index = next(i for i, q in enumerate(group["params"]) if q is p)
    names = group.get("param_names")
    return f"parameter {names[index]!r}" if names else f"params[{index}] of the group"


def _scalar_dtype() -> torch.dtype:
    """The dtype of torch's ``step``, ``eta`` and ``mu`` tensors: float64 where that is torch's
    default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _initialize(state: dict[str, Any], p: torch.Tensor, lr: Any) -> None:
    """A parameter's state before its first step, as torch's ASGD makes it."""
    dtype = _scalar_dtype()
    if isinstance(lr, torch.Tensor) and lr.dim() != 0:
        lr = lr.squeeze()
    state["step"] = torch.zeros((), device=p.device, dtype=dtype)
    state["eta"] = torch.as_tensor(lr, device=p.device, dtype=dtype).clone().detach()
    state["mu"] = torch.ones((), device=p.device, dtype=dtype)
    state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def _group_refusal(group: dict[str, Any]) -> str | None:
    """Why the kernel cannot step this group whatever its tensors, or ``None``."""
    if group["differentiable"]:
        return "differentiable=True (autograd through the step is torch's)"
    if group["capturable"]:
        return "capturable=True (the schedule is on tensors, for graph capture)"
    for name in ("lr", "lambd", "alpha", "t0", "weight_decay", "momentum"):
        if isinstance(group[name], torch.Tensor):
            return f"{name} is a tensor (torch computes the schedule in its arithmetic)"
    return None


def _tensor_refusal(p: torch.Tensor, state: dict[str, Any], buf: torch.Tensor | None) -> str | None:
    """Why the kernel cannot step this parameter through views of its memory and state, or ``None``."""
    if p.dtype not in _KERNEL_DTYPES:
        return f"is {p.dtype}, which the kernels do not model"
    if p.is_inference():
        return "is an inference tensor (torch refuses to update it outside inference mode)"
    arrays = (p, state["ax"]) if buf is None else (p, state["ax"], buf)
    reason = _array_refusal(p, arrays)
    if reason is not None:
        return reason
    for key in ("step", "eta", "mu"):
        clock = state[key]
        if (
            type(clock) not in _PLAIN_TENSORS
            or clock.device.type != "cpu"
            or clock.dim() != 0
            or clock.dtype not in (torch.float32, torch.float64)
            or clock.requires_grad
        ):
            return f"has a state[{key!r}] that is not a 0-d float32 or float64 CPU tensor without autograd"
    if p.dim() == 0 and not p.is_complex():
        wider = [key for key in ("eta", "mu") if state[key].dtype.itemsize > p.element_size()]
        if wider:  # 0-d tensors promote one another: torch multiplies in the clock's dtype
            return f"is 0-d with a wider state[{wider[0]!r}] ({state[wider[0]].dtype})"
    return None


def _gradient_refusal(member: _Member, grad: torch.Tensor) -> str | None:
    """Why the kernel cannot read this gradient through a view of its memory, or ``None`` (a new
    gradient at every step is the common case: its own checks, made cheap)."""
    if (
        type(grad) in _PLAIN_TENSORS
        and grad.is_cpu
        and grad.dtype is member.dtype
        and grad.shape == member.shape
        and not grad.is_conj()
        and not grad.is_neg()
        and (grad.is_contiguous() if not member.order else _memory_order(grad) == member.order)
    ):
        return None
    return _array_refusal(member.param, (grad,)) or "has a layout unlike its parameter's"


def _array_refusal(p: torch.Tensor, tensors: Sequence[torch.Tensor]) -> str | None:
    """Why these tensors (a parameter's own, its gradient or its state) cannot be stepped as flat
    arrays in the parameter's memory order, or ``None``."""
    order = _memory_order(p)
    for tensor in tensors:
        if type(tensor) not in _PLAIN_TENSORS:
            return f"is a {type(tensor).__name__}, not a plain tensor"
        if not tensor.is_cpu:
            return f"is on {tensor.device}"
        if tensor.dtype is not p.dtype or tensor.shape != p.shape:
            return "has a gradient or state of another dtype or shape"
        if tensor.is_conj() or tensor.is_neg():
            return "has a pending conjugation or negation"
        if order is None or _memory_order(tensor) != order:
            return "has a layout that is not dense, or unlike its gradient's or state's"
    return None


def _step_scalars(group: dict[str, Any], eta: float, mu: float, foreach: bool) -> StepScalars:
    """The scalars of lines 2 to 7 with the clock's stored ``eta`` and ``mu``, computed as torch's
    Python code computes them (``1 - lambd * eta`` in the type of ``lambd``)."""
    lambd = group["lambd"]
    return StepScalars(
        maximize=group["maximize"],
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
        decay=1.0 if foreach else 1 - lambd * eta,
        eta=eta,
        mu=mu,
        fused=True,
        lambd=lambd if foreach else 0.0,
        foreach=foreach,
    )


def _beyond_range(scalars: StepScalars, real: type[np.floating[Any]]) -> str | None:
    """A coefficient larger than the parameters' dtype holds, which ATen's scalar conversion refuses
    (torch's path then raises torch's error), or ``None``."""
    largest = _LARGEST[real]
    if (  # as floats: a NumPy scalar compared with a float its dtype cannot hold warns of overflow
        abs(float(scalars.eta)) <= largest
        and abs(float(scalars.decay)) <= largest
        and abs(float(scalars.weight_decay)) <= largest
        and abs(float(scalars.lambd)) <= largest
        and abs(float(scalars.momentum)) <= largest
    ):
        return None
    values = {
        "weight_decay": scalars.weight_decay,
        "momentum": scalars.momentum,
        "1 - lambd * eta": scalars.decay,
        "lambd": scalars.lambd,
        "eta": scalars.eta,
    }
    largest = _LARGEST[real]
    for name, value in values.items():
        if abs(float(value)) > largest:
            return f"{name} = {value!r} is beyond {np.dtype(real).name}"
    return None


def _next_clock(
    group: dict[str, Any], step: torch.Tensor, step_view: np.ndarray
) -> tuple[float, float, float]:
    """``(step, eta, mu)`` after this step (lines 1 and 8) by torch's own arithmetic, each the exact
    value of the tensor torch copies into the state: ``step + 1`` in the step tensor's dtype; η in
    Python (or NumPy) arithmetic on ``step.item()`` on the for-loop path, in tensor arithmetic on the
    step tensor on the foreach path; μ in Python arithmetic; each made a tensor by ``as_tensor``."""
    lr, lambd, alpha, t0 = group["lr"], group["lambd"], group["alpha"], group["t0"]
    if group["foreach"] is True:
        new_step = step + 1
        value = new_step.item()
        eta = torch.as_tensor(lr / ((1 + lambd * lr * new_step) ** alpha)).item()
    else:
        value = step_view.item() + 1.0  # exact in binary64; rounded to a float32 step as torch's += 1
        if value > _EXACT_FLOAT32_INTEGERS and step.dtype is torch.float32:
            value = float(np.float32(value))
        eta = _as_tensor_value(lr / ((1 + lambd * lr * value) ** alpha))
    return value, eta, _as_tensor_value(1 / max(1, value - t0))


def _as_tensor_value(value: Any) -> float:
    """``torch.as_tensor(value).item()``: a Python float rounded to torch's default dtype (done here
    directly for float32 and float64, the usual defaults, at a fraction of the cost)."""
    if type(value) is float:
        default = torch.get_default_dtype()
        if default is torch.float64:
            return value
        if default is torch.float32 and abs(value) <= _LARGEST[np.float32]:
            return float(np.float32(value))
    result: float = torch.as_tensor(value).item()
    return result


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes a dense tensor occupies."""
    start: int = tensor.data_ptr()
    return start, start + tensor.numel() * tensor.element_size()
