"""Deterministic test problems: initial parameters and gradient streams, in any dtype and layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def random_array(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0
) -> np.ndarray:
    """Normal values rounded to ``dtype`` (independent real and imaginary parts for complex)."""
    values = rng.standard_normal(shape) * scale
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape) * scale
    return np.asarray(values).astype(dtype)


def strided_like(values: np.ndarray) -> np.ndarray:
    """A non-contiguous view holding ``values`` (every other element of a larger buffer)."""
    if values.ndim == 0:
        return values.copy()
    buffer = np.zeros((*values.shape[:-1], 2 * values.shape[-1] + 1), values.dtype)
    view = buffer[..., 1::2]
    view[...] = values
    assert not view.flags.c_contiguous or view.size <= 1
    return view


@dataclass(frozen=True)
class Problem:
    """Parameters, param groups and a gradient per parameter per step (``None`` skips a parameter)."""

    name: str
    dtype: str
    shapes: tuple[tuple[int, ...], ...]
    groups: tuple[dict[str, Any], ...] = ({},)
    """Hyperparameters of each group; parameter ``i`` belongs to group ``i % len(groups)``."""
    steps: int = 60
    strided: bool = False
    skip_every: int = 0
    """When nonzero, parameter 0 has no gradient on every ``skip_every``-th step."""
    non_finite: bool = False
    """Plant inf, -inf and NaN in some gradients."""
    seed: int = 0
    gradient_scale: float = 1.0
    tags: tuple[str, ...] = field(default=())

    def dtype_of(self, index: int) -> str:
        """Parameter ``index``'s dtype (one for all here; a subclass may mix them)."""
        return self.dtype

    def initial_parameters(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        arrays = [random_array(rng, shape, self.dtype_of(i)) for i, shape in enumerate(self.shapes)]
        return [strided_like(a) if self.strided else a for a in arrays]

    def group_members(self) -> list[list[int]]:
        return [list(range(g, len(self.shapes), len(self.groups))) for g in range(len(self.groups))]

    def gradients(self) -> list[list[np.ndarray | None]]:
        """``gradients()[step][parameter]``."""
        rng = np.random.default_rng(self.seed + 1)
        stream: list[list[np.ndarray | None]] = []
        for step in range(self.steps):
            row: list[np.ndarray | None] = []
            for index, shape in enumerate(self.shapes):
                g = random_array(rng, shape, self.dtype_of(index), self.gradient_scale)
                if self.non_finite and g.size and step % 7 == 3:
                    flat = g.reshape(-1)
                    flat[step % flat.size] = [np.inf, -np.inf, np.nan][step % 3]
                skipped = self.skip_every and index == 0 and step % self.skip_every == self.skip_every - 1
                row.append(None if skipped else (strided_like(g) if self.strided else g))
            stream.append(row)
        return stream
