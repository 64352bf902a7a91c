"""Segments: runs of parameters updated as one flat array, with the state they share.

A segment is one parameter, or consecutive parameters of one group and dtype whose memory tiles
one buffer in order (what :func:`optimized.pack` makes). Its parameters share one clock (step,
eta, mu) and one flat ``ax`` and momentum buffer, of which each parameter's state holds views.
A step in which only some of a segment's parameters have a gradient splits it into one segment
per parameter, each with its own clock; segments never merge again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reference.parameters import data_of
from reference.state import Clock, ParameterState

__all__ = ["Segment", "build_segments", "real_view"]


def real_view(flat: np.ndarray) -> np.ndarray:
    """A 1-D C-contiguous array's real scalars (a complex element is real, then imaginary)."""
    return flat.view(flat.real.dtype) if flat.dtype.kind == "c" else flat


def _address(array: np.ndarray) -> int:
    address: int = array.__array_interface__["data"][0]
    return address


@dataclass(eq=False)
class Segment:
    indices: list[int]
    """Global parameter indices, in memory order."""
    dtype: np.dtype[Any]
    shapes: list[tuple[int, ...]]
    theta: np.ndarray
    """The parameters' real scalars as one flat array: a view of their memory, or, for a single
    non-contiguous parameter, a private copy taken before each step and written back after it."""
    bounds: list[int]
    """Where each parameter starts in ``theta`` (and ``ax``, ``buf``); one more entry for the end."""
    gathered: np.ndarray | None = None
    """The non-contiguous parameter that ``theta`` copies, if any."""
    clock: Clock | None = None
    ax: np.ndarray | None = None
    ax_is_theta: bool = False
    """While averaging has not started the average is the parameter itself, and is not copied."""
    buf: np.ndarray | None = None
    gradient_buffer: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return self.theta.size

    def parameter_view(self, flat: np.ndarray, position: int) -> np.ndarray:
        """Parameter ``position``'s part of a flat real array, in its dtype and shape."""
        part = flat[self.bounds[position] : self.bounds[position + 1]]
        return part.view(self.dtype).reshape(self.shapes[position])

    def states(self) -> dict[int, ParameterState]:
        """Per-parameter states that view this segment's clock and buffers."""
        assert self.clock is not None and self.ax is not None
        return {
            index: ParameterState(
                clock=self.clock,
                ax=self.parameter_view(self.ax, position),
                momentum_buffer=None if self.buf is None else self.parameter_view(self.buf, position),
            )
            for position, index in enumerate(self.indices)
        }

    def split(self) -> list[Segment]:
        """One segment per parameter, each with a copy of the clock and views of the buffers."""
        pieces = []
        for position, index in enumerate(self.indices):
            a, b = self.bounds[position], self.bounds[position + 1]
            pieces.append(
                replace(
                    self,
                    indices=[index],
                    shapes=[self.shapes[position]],
                    theta=self.theta[a:b],
                    bounds=[0, b - a],
                    clock=None if self.clock is None else replace(self.clock),
                    ax=None if self.ax is None else self.ax[a:b],
                    buf=None if self.buf is None else self.buf[a:b],
                    gradient_buffer=None,
                )
            )
        return pieces


def _single(index: int, array: np.ndarray) -> Segment:
    contiguous = array.flags.c_contiguous
    theta = real_view(array.reshape(-1)) if contiguous else real_view(np.ascontiguousarray(array).reshape(-1))
    return Segment(
        indices=[index],
        dtype=array.dtype,
        shapes=[array.shape],
        theta=theta,
        bounds=[0, theta.size],
        gathered=None if contiguous else array,
    )


def _flat_span(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """One flat view over consecutive, C-contiguous arrays tiling one owner's memory, or ``None``."""
    first = arrays[0]
    owner = first.base if first.base is not None else first
    if not isinstance(owner, np.ndarray) or not owner.flags.c_contiguous or not owner.flags.writeable:
        return None
    start = _address(first) - _address(owner)
    nbytes = sum(a.nbytes for a in arrays)
    if start < 0 or start + nbytes > owner.nbytes:
        return None
    span = owner.reshape(-1).view(np.uint8)[start : start + nbytes].view(first.dtype)
    return span if _address(span) == _address(first) else None


def build_segments(parameters: Sequence[Any], first_index: int) -> list[Segment]:
    """The segments of one group's parameters (global indices from ``first_index``)."""
    runs: list[list[tuple[int, np.ndarray]]] = []
    for offset, parameter in enumerate(parameters):
        array = data_of(parameter)
        run = runs[-1] if runs else None
        if (
            run is not None
            and array.flags.c_contiguous
            and array.size
            and array.dtype == run[-1][1].dtype
            and run[-1][1].flags.c_contiguous
            and _address(array) == _address(run[-1][1]) + run[-1][1].nbytes
        ):
            run.append((first_index + offset, array))
        else:
            runs.append([(first_index + offset, array)])
    segments: list[Segment] = []
    for run in runs:
        arrays = [array for _, array in run]
        span = _flat_span(arrays) if len(run) > 1 else None
        if span is None:
            segments.extend(_single(index, array) for index, array in run)
            continue
        sizes = [real_view(a.reshape(-1)).size for a in arrays]
        segments.append(
            Segment(
                indices=[index for index, _ in run],
                dtype=arrays[0].dtype,
                shapes=[a.shape for a in arrays],
                theta=real_view(span),
                bounds=[int(b) for b in np.cumsum([0, *sizes])],
            )
        )
    return segments
