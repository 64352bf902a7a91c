"""The ASGD implementations that share the API, by name, for tests parametrized over all of them:
the reference and the optimized ASGD on each of its kernels."""

from __future__ import annotations

from typing import Any

import optimized
import reference


class OptimizedNumba(optimized.ASGD):
    """``optimized.ASGD(kernel="numba")``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, kernel="numba", **kwargs)


class OptimizedNumpy(optimized.ASGD):
    """``optimized.ASGD(kernel="numpy")``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, kernel="numpy", **kwargs)


OPTIMIZED: dict[str, Any] = {"numba": OptimizedNumba, "numpy": OptimizedNumpy}
"""The optimized ASGD on each kernel backend."""
ASGD_CLASSES: dict[str, Any] = {
    "reference": reference.ASGD,
    **{f"optimized-{k}": v for k, v in OPTIMIZED.items()},
}
