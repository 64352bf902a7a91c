"""The ASGD step compiled with numba: lines 2 to 7 in one pass over each element.

Importing this module imports numba; :mod:`optimized.backends` does so only when a step needs it.
Each combination of the step's choices (maximize, weight decay, momentum, averaging, fused, foreach)
is its own compiled loop, so no branch is left inside a loop and LLVM vectorizes it. The loops are built
lazily, compiled on first use and cached on disk (``cache=True``; numba falls back to a user cache
directory where the package is read-only).

Bits: ``fastmath`` stays off, so LLVM neither contracts ``a * b + c`` into a fused multiply-add nor
reorders anything, and each line rounds exactly as the specification says. The torch profile's fused
lines call LLVM's ``llvm.fma`` intrinsic, a correctly rounded fused multiply-add on every target.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

import numba
from numba.core import types
from numba.extending import intrinsic

__all__ = ["fma", "kernel"]


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


fma = cast(Callable[[Any, Any, Any], Any], _fma)
"""``a * b + c`` rounded once (LLVM's ``fma``), inside compiled code; numba has no ``math.fma``."""


@functools.cache
def kernel(
    dtype: str,
    maximize: bool,
    weight_decay: bool,
    momentum: bool,
    first_momentum_step: bool,
    averaging: bool,
    fused: bool,
    foreach: bool,
) -> Callable[..., int]:
    """The compiled loop for one combination of the step's choices, on arrays of ``dtype`` (the
    character of float32 or float64).

    It is called as ``loop(theta, grad, ax, buf, start, stop, wd, m, decay, lambd, eta, mu)`` on flat
    arrays of that dtype, with the coefficients as Python floats already rounded to it (numba
    takes Python floats faster than NumPy scalars; turning them back into the dtype is exact), and
    updates elements ``[start, stop)``; what it returns means nothing. The choices are constants of
    the loop, so the branches on them vanish at compile time.
    """
    scalar = numba.float32 if dtype == "f" else numba.float64

    @numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
    def loop(theta, grad, ax, buf, start, stop, wd, m, decay, lambd, eta, mu):  # type: ignore[no-untyped-def]
        # Views from start on: indices counted from 0 are known non-negative, so no wrap-around
        # test is left in the loop and LLVM vectorizes it.
        theta, grad, ax = theta[start:stop], grad[start:stop], ax[start:stop]
        wd, m, decay, lambd = scalar(wd), scalar(m), scalar(decay), scalar(lambd)
        eta, mu = scalar(eta), scalar(mu)
        if momentum:
            buf = buf[start:stop]
        nan_averages = 0
        for i in range(theta.size):
            t = theta[i]
            g = grad[i]
            a = ax[i]
            if maximize:  # 2
                g = -g
            if weight_decay:  # 3: g + wd * t
                if fused:
                    g = fma(wd, t, g)
                else:
                    g = g + wd * t
            if momentum:  # 4
                if first_momentum_step:
                    buf[i] = g
                else:
                    g = m * buf[i] + g
                    buf[i] = g
            if foreach:  # torch's foreach formulation of 5 to 7, each line one fused rounding
                g = fma(lambd, t, g)  # 5: g + lambd * t
                t = fma(-eta, g, t)  # 6: t - eta * g
                theta[i] = t
                ax[i] = fma(t - a, mu, a)  # 7: a + (t - a) * mu, at every step
                continue
            t = t * decay  # 5
            if fused:  # 6: t - eta * g
                t = fma(-eta, g, t)
            else:
                t = t - eta * g
            theta[i] = t
            if averaging:  # 7
                ax[i] = a + (t - a) * mu
            else:
                # ax = θ. The old ax is read all the same: a load-and-store stream is prefetched
                # by the hardware where a store-only one is not (20 % faster on the project's
                # machine); counting its NaNs keeps the read from being optimized away.
                ax[i] = t
                nan_averages += a != a
        return nan_averages

    compiled: Callable[..., int] = loop
    return compiled
