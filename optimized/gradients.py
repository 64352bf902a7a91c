"""The gradients of a step of the optimized ASGD, checked against the parameters and laid out as
each segment's one flat real array: a view where the memory allows, else gathered into a buffer.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence

import numpy as np

from optimized.layout import Segment, flat_real
from optimized.packing import Packed
from optimized.parameters import as_gradient, check_gradient, gradient_of, has_grad_attribute
from optimized.resolved import Layout, StaleLayout

__all__ = ["flat_gradient", "gradient_list", "packed_gradients", "split"]


def gradient_list(grads: Sequence[np.ndarray | None] | None, layout: Layout) -> list[np.ndarray | None]:
    """One checked gradient (or ``None``) per parameter."""
    if grads is None:
        parameters = [p for objects in layout.objects for p in objects]
        for index, parameter in enumerate(parameters):
            if not has_grad_attribute(parameter):
                raise TypeError(f"step() needs grads= when a parameter is a bare array (params[{index}])")
        gathered = [gradient_of(parameter) for parameter in parameters]
    else:
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
            raise TypeError(f"grads must be a list of arrays or None, got {type(grads).__name__}")
        if len(grads) != len(layout.all_arrays):
            raise ValueError(
                f"grads has {len(grads)} entries, but the optimizer has {len(layout.all_arrays)} params"
            )
        gathered = list(grads)
    for index, gradient in enumerate(gathered):
        if gradient is None:
            continue
        if type(gradient) is not np.ndarray:
            gradient = gathered[index] = as_gradient(gradient)  # a torch tensor: its NumPy view
        if not (
            type(gradient) is np.ndarray
            and gradient.shape == layout.shapes[index]
            and gradient.dtype == layout.dtypes[index]
        ):
            check_gradient(gradient, layout.all_arrays[index], index)  # raises, naming what is wrong
            raise StaleLayout  # it fits the array as it is now: the array changed in place
        overlapped = layout.memory.overlapping(gradient)
        if overlapped is not None:
            raise ValueError(
                f"grads[{index}] shares memory with params[{overlapped}]; a gradient must not "
                "overlap a parameter (pass a copy)"
            )
    return gathered


def packed_gradients(grads: Packed, layout: Layout) -> list[np.ndarray] | None:
    """Each segment's slice of a packed gradient buffer laid out exactly like the parameters
    (checked once per packed list), or ``None`` if it is not."""
    if not grads.intact():
        return None
    if layout.packed_gradients is not None and layout.packed_gradients[0]() is grads:
        return layout.packed_gradients[1]
    fits = (
        len(layout.all_arrays) == len(grads)
        and grads.buffer.flags.c_contiguous
        and all(
            shape == g.shape and dtype == g.dtype and type(g) is np.ndarray
            for shape, dtype, g in zip(layout.shapes, layout.dtypes, grads, strict=False)
        )
        and layout.memory.overlapping(grads.buffer) is None
    )
    slices = None
    if fits:
        flat = flat_real(grads.buffer)
        scale = 2 if grads.buffer.dtype.kind == "c" else 1
        slices = []
        for segment in layout.segments:
            start = grads.offsets[segment.indices[0]] * scale
            slices.append(flat[start : start + segment.theta.size])
    layout.packed_gradients = (weakref.ref(grads), slices)
    return slices


def flat_gradient(segment: Segment, gradients: Sequence[np.ndarray | None]) -> np.ndarray:
    """The segment's gradients as one flat real array: a view where possible, else gathered into
    the segment's gradient buffer."""
    if len(gradients) == 1:
        gradient = gradients[0]
        assert gradient is not None
        if gradient.flags.c_contiguous:
            return flat_real(gradient)
    if segment.gradient_buffer is None:
        segment.gradient_buffer = np.empty_like(segment.theta)
    for position, gradient in enumerate(gradients):
        assert gradient is not None
        np.copyto(segment.parameter_view(segment.gradient_buffer, position), gradient)
    return segment.gradient_buffer


def split(segment: Segment, gradients: Sequence[np.ndarray | None]) -> Iterator[tuple[Segment, np.ndarray]]:
    """The parameters of a packed segment that have a gradient, each as its own segment with a
    copy of the shared clock (the others keep the shared one), and its flat gradient."""
    for position, gradient in enumerate(gradients):
        if gradient is not None:
            piece = segment.piece(position)
            yield piece, flat_gradient(piece, [gradient])
