"""Factories of the bring-your-own-implementation protocol, right and deliberately wrong, for the tests.

They live in an importable module so that ``--implementation tests.external_factories:NAME`` and
worker processes can find them by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import conformance
import optimized

FLIP_AT_STEP = 37


def torch_profile(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    """``optimized.ASGD`` in the torch profile: claims ``torch`` and keeps the claim."""
    return optimized.ASGD(params, numerics="torch", **hyperparameters)


def fast_profile(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    return optimized.ASGD(params, numerics="numpy", **hyperparameters)


class _FlipsOneBit(optimized.ASGD):
    """Flips the lowest bit of the first value of the tensor ``tensor`` after step ``at``."""

    def __init__(self, params: Any, *, tensor: int, at: int, **hyperparameters: Any) -> None:
        super().__init__(params, numerics="torch", **hyperparameters)
        self._tensor, self._at, self._steps = tensor, at, 0

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        loss = super().step(grads, closure=closure)
        self._steps += 1
        if self._steps == self._at:
            flat = [p for group in self.param_groups for p in group["params"]][self._tensor].reshape(-1)
            flat[-1:].view(np.uint8)[0] ^= 1
        return loss


def flips_a_bit_at_step_37(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    return _FlipsOneBit(params, tensor=0, at=FLIP_AT_STEP, **hyperparameters)


def flips_tensor_3_at_step_3(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    return _FlipsOneBit(params, tensor=3, at=3, **hyperparameters)


def torch_for_loop(params: Any, momentum: float, **hyperparameters: Any) -> Any:
    """torch's own ASGD as a torch-style factory (declines momentum, which it lacks)."""
    import torch

    if momentum:
        raise conformance.Unsupported("torch.optim.ASGD has no momentum")
    return torch.optim.ASGD(params, foreach=False, **hyperparameters)


def torch_foreach(params: Any, momentum: float, **hyperparameters: Any) -> Any:
    """torch's foreach path: claims no profile, stays within the bounded budget."""
    import torch

    if momentum:
        raise conformance.Unsupported("torch.optim.ASGD has no momentum")
    return torch.optim.ASGD(params, foreach=True, **hyperparameters)


def declines_everything(params: Any, **hyperparameters: Any) -> Any:
    raise conformance.Unsupported("this implementation runs nothing")


class _WideAverages(optimized.ASGD):
    def averages(self) -> list[np.ndarray]:
        return [average.astype(np.float64) for average in super().averages()]


def averages_in_float64(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    """Hands back averages of the wrong dtype (float64 for float32 parameters)."""
    return _WideAverages(params, numerics="torch", **hyperparameters)


def crashes_at_step_3(params: Any, **hyperparameters: Any) -> Any:
    optimizer = optimized.ASGD(params, numerics="torch", **hyperparameters)
    original, calls = optimizer.step, [0]

    def step(grads: Any = None) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise FloatingPointError("planted crash")
        return original(grads)

    optimizer.step = step  # type: ignore[method-assign]
    return optimizer


class _WrongThenDeclines(optimized.ASGD):
    """Wrong from step 1 (twice the lr), then declines at step 10: what ran must still be judged."""

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        super().__init__(params, numerics="torch", **{**hyperparameters, "lr": 2 * hyperparameters["lr"]})
        self._steps = 0

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        self._steps += 1
        if self._steps == 10:
            raise conformance.Unsupported("not after step 9")
        return super().step(grads, closure=closure)


def wrong_then_declines(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    return _WrongThenDeclines(params, **hyperparameters)


def exits_the_process(params: Any, **hyperparameters: Any) -> Any:
    raise SystemExit(0)


class _Hostile(optimized.ASGD):
    """The torch profile until step ``at``, where it does ``what`` instead of stepping."""

    def __init__(self, params: Any, *, at: int, what: Any, **hyperparameters: Any) -> None:
        super().__init__(params, numerics="torch", **hyperparameters)
        self._at, self._what, self._steps = at, what, 0

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        self._steps += 1
        if self._steps == self._at:
            self._what()
        return super().step(grads, closure=closure)


def _never_return() -> None:
    import threading

    threading.Event().wait()


def _keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def ends_the_process_at_step_3(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    """``os._exit(0)`` in the middle of a run: no exception, no report of its own, status 0."""
    import os

    return _Hostile(params, at=3, what=lambda: os._exit(0), **hyperparameters)


def hangs_at_step_3(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    """A step that never returns."""
    return _Hostile(params, at=3, what=_never_return, **hyperparameters)


def interrupts_itself_at_step_3(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    """A ``KeyboardInterrupt`` raised by the implementation's own code, not by a Ctrl-C."""
    return _Hostile(params, at=3, what=_keyboard_interrupt, **hyperparameters)


def raises_keyboard_interrupt(params: Any, **hyperparameters: Any) -> Any:
    raise KeyboardInterrupt


class _ReturnsHuge(optimized.ASGD):
    """The torch profile, but after step 3 one parameter value is +1.797e308 and another -1.797e308."""

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        loss = super().step(grads, closure=closure)
        self._steps = getattr(self, "_steps", 0) + 1
        if self._steps >= 3:
            flat = self.param_groups[0]["params"][0].reshape(-1)
            flat[0], flat[-1] = np.finfo(flat.dtype).max, -np.finfo(flat.dtype).max
        return loss


def returns_the_largest_values(params: Any, **hyperparameters: Any) -> optimized.ASGD:
    return _ReturnsHuge(params, numerics="torch", **hyperparameters)
