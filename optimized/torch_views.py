"""The kernel path of :class:`optimized.torch.ASGD`: zero-copy views of the tensors' memory.

The kernel steps CPU tensors of float32, float64, complex64 or complex128 in a dense layout: lines 2
to 7 run in one compiled pass per element (:mod:`optimized.numba_kernel`, or the NumPy kernel while
numba loads or where it is missing) on flat real views of each parameter, its gradient, its average
and its momentum buffer. A :class:`Member` is one parameter as the kernel steps it, a
:class:`GroupViews` a param group's members and the memory their step writes; both are remembered
from step to step while the tensors and the memory behind them stay the same.

torch is not imported here (:mod:`optimized.torch` hands in what is needed of it, a
:class:`~optimized.torch_parts.TorchParts`); tensors are used through their methods.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from optimized.plan import StepScalars, Task

if TYPE_CHECKING:
    import torch

    from optimized.torch_parts import TorchParts

__all__ = ["GroupViews", "Member", "memory_order"]

_NO_SCALARS: Final = StepScalars(
    maximize=False, weight_decay=0.0, momentum=0.0, decay=1.0, eta=0.0, mu=1.0, fused=True
)
"""Placeholder scalars of a task before its first step."""


def _flat_real(tensor: torch.Tensor, order: tuple[int, ...], real: type[np.floating[Any]]) -> np.ndarray:
    """The tensor's memory as a flat real NumPy array (a view; a complex value is two reals)."""
    if order:
        tensor = tensor.permute(order)
    array = (tensor.detach() if tensor.requires_grad else tensor).numpy().reshape(-1)
    return array.view(real) if array.dtype.kind == "c" else array


def memory_order(tensor: torch.Tensor, parts: TorchParts) -> tuple[int, ...] | None:
    """How a dense tensor's elements lie in memory: ``()`` for C order, the permutation that makes
    a channels-last tensor C-ordered, or ``None`` for any other layout (not stepped by the kernel)."""
    if tensor.is_contiguous():
        return ()
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=parts.channels_last):
        return (0, 2, 3, 1)
    if tensor.dim() == 5 and tensor.is_contiguous(memory_format=parts.channels_last_3d):
        return (0, 2, 3, 4, 1)
    return None


@dataclass(slots=True, eq=False)
class GroupViews:
    """A group's remembered members, and the memory their step writes (sorted, disjoint): the
    parameters, averages, momentum buffers and clocks (one clock shared by two parameters advances
    twice in torch)."""

    members: dict[int, Member]
    writes: list[tuple[int, int]]
    starts: list[int]
    table: np.ndarray
    """The members as rows of the compiled kernel (:data:`optimized.numba_kernel.ROW_COLUMNS`),
    element 0 of a dense tensor's flat view being at its ``data_ptr()``; the gradients' column is
    kept current by :meth:`take_gradients`."""

    @classmethod
    def of(cls, members: Sequence[Member]) -> GroupViews | None:
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

    def take_gradients(self, members: Sequence[Member]) -> None:
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
class Member:
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
    def of(
        cls, p: torch.Tensor, state: dict[str, Any], buf: torch.Tensor | None, parts: TorchParts
    ) -> Member:
        order = memory_order(p, parts)
        assert order is not None
        real = parts.kernel_dtypes[p.dtype]
        theta = _flat_real(p, order, real)
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
            real=real,
            task=Task(
                theta,
                theta,
                _flat_real(state["ax"], order, real),
                None if buf is None else _flat_real(buf, order, real),
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
        self.task.grad = _flat_real(grad, self.order, self.real)

    def start_momentum(self, parts: TorchParts) -> None:
        """A zero momentum buffer, which the kernel's first momentum step sets to the direction."""
        self.buf = parts.zeros_like(self.param, memory_format=parts.preserve_format)
        self.task.buf = _flat_real(self.buf, self.order, self.real)
        self.pointers = (*self.pointers[:5], self.buf.data_ptr())  # the table's buffer column


def _pointers(*tensors: torch.Tensor | None) -> tuple[int, int, int, int, int, int]:
    """The tensors' addresses (0 for ``None``)."""
    p, ax, step, eta, mu, buf = tensors
    assert p is not None and ax is not None and step is not None and eta is not None and mu is not None
    return (p.data_ptr(), ax.data_ptr(), step.data_ptr(), eta.data_ptr(), mu.data_ptr(),
            0 if buf is None else buf.data_ptr())  # fmt: skip


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes a dense tensor occupies."""
    start: int = tensor.data_ptr()
    return start, start + tensor.numel() * tensor.element_size()
