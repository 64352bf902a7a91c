"""Segments: the parameters as the flat ranges a backend steps, derived from the arrays and the state.

A segment is one parameter, or (when the backend packs) consecutive parameters of one group and
dtype whose memory tiles one buffer in order (what :func:`optimized.pack` makes) and whose states
share one clock and one flat ``ax`` and momentum buffer. The layout is derived, never authoritative:
the core rebuilds it whenever a parameter array or the structure of the state changes. After a
``load_state_dict`` or a copy, :func:`share_states` gives equal states of a packed run one clock and
flat buffers again (values unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optimized.state import Clock, ParameterState

__all__ = ["Segment", "build_layout", "flat_real", "real_view", "share_states"]


def real_view(flat: np.ndarray) -> np.ndarray:
    """A 1-D C-contiguous array's real scalars (a complex element is real, then imaginary)."""
    return flat.view(flat.real.dtype) if flat.dtype.kind == "c" else flat


def flat_real(array: np.ndarray) -> np.ndarray:
    """The real scalars of a C-contiguous array as a flat view of its memory."""
    return real_view(array.reshape(-1))


def _address(array: np.ndarray) -> int:
    address: int = array.__array_interface__["data"][0]
    return address


@dataclass(eq=False, slots=True)
class Segment:
    """Parameters stepped as one flat range, with the state they share (``None`` before a first step)."""

    group: int
    indices: range
    """Global parameter indices, consecutive and in memory order."""
    dtype: np.dtype[Any]
    shapes: list[tuple[int, ...]]
    bounds: list[int]
    """Where each parameter starts in the flat real arrays; one more entry for the end."""
    theta: np.ndarray
    """The parameters' real scalars: a view of their memory, or, for a single non-contiguous
    parameter, a private copy taken before each step and written back after it."""
    gathered: np.ndarray | None
    """The non-contiguous parameter that ``theta`` copies, if any."""
    clock: Clock | None
    ax: np.ndarray | None
    buf: np.ndarray | None
    gradient_buffer: np.ndarray | None = field(default=None, repr=False)
    """Where gradients that are not one flat range already are gathered (made on first use)."""

    def parameter_view(self, flat: np.ndarray, position: int) -> np.ndarray:
        """Parameter ``position``'s part of a flat real array, in its dtype and shape."""
        part = flat[self.bounds[position] : self.bounds[position + 1]]
        return part.view(self.dtype).reshape(self.shapes[position])

    def piece(self, position: int) -> Segment:
        """Parameter ``position`` alone, with views of this segment's arrays and a copy of its clock."""
        a, b = self.bounds[position], self.bounds[position + 1]
        clock = self.clock
        return Segment(
            group=self.group,
            indices=self.indices[position : position + 1],
            dtype=self.dtype,
            shapes=[self.shapes[position]],
            bounds=[0, b - a],
            theta=self.theta[a:b],
            gathered=None,
            clock=None if clock is None else Clock(clock.step, clock.eta, clock.mu),
            ax=None if self.ax is None else self.ax[a:b],
            buf=None if self.buf is None else self.buf[a:b],
        )

    def states(self, clock: Clock, ax: np.ndarray, buf: np.ndarray | None) -> dict[int, ParameterState]:
        """Per-parameter states viewing one clock and flat buffers laid out like this segment."""
        return {
            index: ParameterState(
                clock=clock,
                ax=self.parameter_view(ax, position),
                momentum_buffer=None if buf is None else self.parameter_view(buf, position),
            )
            for position, index in enumerate(self.indices)
        }


def _flat_span(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """One flat view over C-contiguous arrays that tile one owner's memory in order, or ``None``."""
    first = arrays[0]
    owner = first
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if not owner.flags.c_contiguous or not owner.flags.writeable:
        return None
    start = _address(first) - _address(owner)
    nbytes = sum(a.nbytes for a in arrays)
    if start < 0 or start + nbytes > owner.nbytes:
        return None
    span = owner.reshape(-1).view(np.uint8)[start : start + nbytes].view(first.dtype)
    position = _address(first)
    for array in arrays:
        if not array.flags.c_contiguous or _address(array) != position:
            return None
        position += array.nbytes
    return span


def _clock_values(state: ParameterState) -> tuple[int | float, float, float]:
    return (state.step, state.eta, state.mu)


def _adjacent(last: np.ndarray, array: np.ndarray) -> bool:
    """Whether ``array`` follows ``last`` in memory, both C-contiguous, of one dtype, not empty."""
    return bool(
        array.flags.c_contiguous and last.flags.c_contiguous and array.size and last.size
        and array.dtype == last.dtype and _address(array) == _address(last) + last.nbytes
    )  # fmt: skip


def _runs(
    arrays: Sequence[np.ndarray], first_index: int, state: dict[int, ParameterState], equal: bool
) -> list[list[tuple[int, np.ndarray]]]:
    """Consecutive parameters tiling memory in order, whose states are all absent or, with
    ``equal``, equal in value (else: one shared clock)."""
    runs: list[list[tuple[int, np.ndarray]]] = []
    for offset, array in enumerate(arrays):
        index = first_index + offset
        if runs and _adjacent(runs[-1][-1][1], array):
            previous, current = state.get(runs[-1][-1][0]), state.get(index)
            if previous is None or current is None:
                joins = previous is None and current is None
            elif equal:
                joins = _clock_values(previous) == _clock_values(current) and (
                    previous.momentum_buffer is None) == (current.momentum_buffer is None)  # fmt: skip
            else:
                joins = previous.clock is current.clock
            if joins:
                runs[-1].append((index, array))
                continue
        runs.append([(index, array)])
    return runs


def _single(group: int, index: int, array: np.ndarray, state: ParameterState | None) -> Segment:
    contiguous = array.flags.c_contiguous
    theta = flat_real(array) if contiguous else flat_real(np.empty(array.shape, array.dtype))
    return Segment(
        group=group,
        indices=range(index, index + 1),
        dtype=array.dtype,
        shapes=[array.shape],
        bounds=[0, theta.size],
        theta=theta,
        gathered=None if contiguous else array,
        clock=None if state is None else state.clock,
        ax=None if state is None else flat_real(state.ax),
        buf=None if state is None or state.momentum_buffer is None else flat_real(state.momentum_buffer),
    )


def _packed(
    group: int, run: list[tuple[int, np.ndarray]], state: dict[int, ParameterState]
) -> Segment | None:
    """The segment of a run of adjacent parameters sharing one clock, or ``None`` if their memory
    or their states' buffers are not one flat range each."""
    arrays = [array for _, array in run]
    span = _flat_span(arrays)
    if span is None:
        return None
    sizes = [flat_real(a).size for a in arrays]
    indices = range(run[0][0], run[-1][0] + 1)
    segment = Segment(
        group=group,
        indices=indices,
        dtype=arrays[0].dtype,
        shapes=[a.shape for a in arrays],
        bounds=[int(b) for b in np.cumsum([0, *sizes])],
        theta=real_view(span),
        gathered=None,
        clock=None,
        ax=None,
        buf=None,
    )
    states = [state.get(index) for index in indices]
    first = states[0]
    if first is None:
        return segment
    present = [
        s for s in states if s is not None
    ]  # all of them: a run's states are all present or all absent
    ax = _flat_span([s.ax for s in present])
    buffers = [s.momentum_buffer for s in present if s.momentum_buffer is not None]
    buf = _flat_span(buffers) if buffers else None
    if ax is None or (buffers and buf is None):
        return None
    segment.clock, segment.ax = first.clock, real_view(ax)
    segment.buf = None if buf is None else real_view(buf)
    return segment


def build_layout(
    groups: Sequence[Sequence[np.ndarray]], state: dict[int, ParameterState], packs: bool
) -> list[Segment]:
    """The segments of every group's resolved parameter arrays, in parameter order.

    ``state`` must match the arrays in shape and dtype (the core checks that first). With ``packs``,
    runs of parameters tiling one buffer whose states share one clock and flat buffers become one
    segment. Every segment gets a clock of its own: where two segments would share one (a packed
    run cut apart by a replaced parameter, say), the later one's parameters get a copy.
    """
    segments: list[Segment] = []
    first_index = 0
    for group, arrays in enumerate(groups):
        runs = _runs(arrays, first_index, state, equal=False) if packs else [
            [(first_index + offset, array)] for offset, array in enumerate(arrays)
        ]  # fmt: skip
        for run in runs:
            packed = _packed(group, run, state) if len(run) > 1 else None
            if packed is not None:
                segments.append(packed)
            else:
                segments.extend(_single(group, index, array, state.get(index)) for index, array in run)
        first_index += len(arrays)
    clocks: set[int] = set()
    for segment in segments:
        if segment.clock is None:
            continue
        if id(segment.clock) in clocks:
            own = Clock(segment.clock.step, segment.clock.eta, segment.clock.mu)
            for index in segment.indices:
                state[index].clock = own
            segment.clock = own
        clocks.add(id(segment.clock))
    return segments


def share_states(groups: Sequence[Sequence[np.ndarray]], state: dict[int, ParameterState]) -> None:
    """Give runs of packed parameters whose states are equal in value one clock and one flat ``ax``
    and momentum buffer (values unchanged), so that they are stepped as one range again: after
    ``load_state_dict`` or a copy, every parameter comes with states of its own."""
    first_index = 0
    for arrays in groups:
        for run in _runs(arrays, first_index, state, equal=True):
            states = [state.get(index) for index, _ in run]
            first = states[0]
            if len(run) < 2 or first is None or _flat_span([a for _, a in run]) is None:
                continue
            present = [s for s in states if s is not None]
            ax = np.concatenate([s.ax.reshape(-1) for s in present])
            buffers = [s.momentum_buffer for s in present if s.momentum_buffer is not None]
            buf = np.concatenate([b.reshape(-1) for b in buffers]) if buffers else None
            shapes = [s.ax.shape for s in present]
            bounds = np.cumsum([0, *(s.ax.size for s in present)])
            clock = Clock(first.step, first.eta, first.mu)
            for (index, _), shape, a, b in zip(run, shapes, bounds[:-1], bounds[1:], strict=True):
                state[index] = ParameterState(
                    clock=clock,
                    ax=ax[a:b].reshape(shape),
                    momentum_buffer=None if buf is None else buf[a:b].reshape(shape),
                )
        first_index += len(arrays)
