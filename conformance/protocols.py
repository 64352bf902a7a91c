"""What the harness asks of an implementation it checks, as typing Protocols.

A factory (:data:`Factory`) builds an optimizer of one of two styles. The required methods are what
every scenario uses; the optional ones are used by the scenarios that need them (param groups, an
lr change, a checkpoint, injected late-run state), and an optimizer without them declines those
scenarios with :class:`conformance.Unsupported`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ArrayOptimizer", "Factory", "TorchStyleOptimizer"]

Factory = Callable[..., Any]
"""``factory(params, **hyperparameters)``: an optimizer over ``params`` (a list of arrays or tensors, or
torch-style param-group dicts), given every hyperparameter of this project's API (``lr, momentum,
weight_decay, alpha, t0, lambd, maximize``) as keywords."""


@runtime_checkable
class ArrayOptimizer(Protocol):
    """The NumPy style: parameters are NumPy arrays, updated in place.

    Optional: ``param_groups`` (a list of dicts with ``"lr"``), ``state_dict()`` and
    ``load_state_dict(state)`` in torch's layout.
    """

    def step(self, grads: Sequence[np.ndarray | None]) -> Any:
        """One step; ``grads`` is aligned with the parameters of all groups, ``None`` skips one."""
        ...

    def averages(self) -> Sequence[np.ndarray]:
        """The averaged parameters, in parameter order."""
        ...


@runtime_checkable
class TorchStyleOptimizer(Protocol):
    """The torch style: ``torch.optim.Optimizer``'s interface over leaf tensors.

    ``state[p]["ax"]`` holds the average of ``p``; ``state_dict()``/``load_state_dict()`` are used
    by the checkpoint scenarios.
    """

    param_groups: list[dict[str, Any]]
    state: Any

    def step(self) -> Any:
        """One step, reading each parameter's ``.grad``."""
        ...
