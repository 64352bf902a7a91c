"""The production ASGD: the shared optimizer core over a compiled (numba) or NumPy kernel."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from optimized.backends import KERNELS, make_backend
from optimized.optimizer import ASGDOptimizer
from optimized.tensors import is_tensor
from optimized.threads import DEFAULT_THREADS

__all__ = ["ASGD"]

TENSORS_MOVED: str = (
    "optimized.ASGD steps NumPy arrays; for torch tensors use optimized.torch.ASGD, a "
    "torch.optim.Optimizer with torch.optim.ASGD's signature and defaults (this API's lr default is "
    "1e-3 and its second argument is momentum); tensors will be refused here in a later release"
)


def _warn_of_tensors(groups: Iterable[Mapping[str, Any]]) -> None:
    """One documented way for torch users: say so where tensors come to the NumPy API."""
    if any(is_tensor(p) for group in groups for p in group["params"]):
        warnings.warn(TENSORS_MOVED, FutureWarning, stacklevel=3)


class ASGD(ASGDOptimizer):
    """Averaged SGD (torch's algorithm plus heavy-ball momentum), in place, compiled.

    Same API and same bits as :class:`reference.ASGD` in each numerics profile: ``"numpy"``
    (NumPy's rounding, exact step counter; ``"fast"`` is its old name), ``"torch"`` (torch 2.13's
    CPU for-loop ASGD) or ``"torch-foreach"`` (``torch.optim.ASGD(foreach=True)`` on the CPU).

    ``kernel`` chooses the arithmetic: ``"numba"`` (one compiled pass per element), ``"numpy"``
    (the vectorized fallback) or ``"auto"`` (numba where it can be imported). Parameters that tile
    one buffer (see :func:`optimized.pack`) are updated as one flat range. ``kernel``,
    ``block_size`` (elements per NumPy block; by default 1 MiB of each array) and ``threads``
    never change a bit of the result.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        alpha: float = 0.75,
        t0: float = 1e6,
        lambd: float = 1e-4,
        maximize: bool = False,
        numerics: str = "numpy",
        *,
        kernel: str = "auto",
        block_size: int | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        if not isinstance(kernel, str) or kernel not in KERNELS:
            raise ValueError(f"Invalid kernel: {kernel!r} (must be one of {KERNELS})")
        if block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
        ):
            raise ValueError(f"Invalid block_size: {block_size!r} (must be None or an integer >= 1)")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"Invalid threads: {threads!r} (must be an integer >= 1)")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            alpha=alpha,
            t0=t0,
            lambd=lambd,
            maximize=maximize,
            numerics=numerics,
        )
        super().__init__(params, defaults, make_backend(kernel, block_size, threads))
        _warn_of_tensors(self.param_groups)

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (defaults fill the rest)."""
        super().add_param_group(param_group)
        _warn_of_tensors(self.param_groups[-1:])

    @property
    def threads(self) -> int:
        """Threads a large step is shared over."""
        threads: int = self._backend.threads  # type: ignore[attr-defined]
        return threads

    @property
    def block_size(self) -> int | None:
        """Elements per NumPy block (``None``: 1 MiB of each array)."""
        block_size: int | None = self._backend.block_size  # type: ignore[attr-defined]
        return block_size

    def __repr__(self) -> str:
        sizes = [len(group["params"]) for group in self.param_groups]
        return (
            f"optimized.ASGD({sum(sizes)} params in {len(sizes)} group(s), kernel={self.backend!r}, "
            f"threads={self.threads}, block_size={self.block_size})"
        )
