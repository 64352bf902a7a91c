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
from typing import Any, Final, cast

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic
from numba.np.numpy_support import carray

__all__ = ["ROW_COLUMNS", "address_as_pointer", "fill_row", "fma", "kernel"]


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


fma = cast(Callable[[Any, Any, Any], Any], _fma)
"""``a * b + c`` rounded once (LLVM's ``fma``), inside compiled code; numba has no ``math.fma``."""


ROW_COLUMNS: Final = ("theta", "grad", "ax", "buf", "start", "stop")
"""The columns of a table of rows (int64): the addresses of element 0 of a flat parameter, its
gradient, average and momentum buffer (unread without momentum), and the element range
``[start, stop)`` of them to update."""


@intrinsic
def _address_as_pointer(typingctx: Any, address: Any) -> Any:
    if not isinstance(address, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(address), codegen


address_as_pointer = cast(Callable[[int], Any], _address_as_pointer)
"""An address (an integer) as a ``void *``, inside compiled code."""


@numba.njit(nogil=True, cache=True)
def fill_row(table, row, theta, grad, ax, buf, start, stop):  # type: ignore[no-untyped-def]
    """Write the addresses of flat arrays and a range of them into row ``row`` of a table (one
    compiled call instead of four slow ``ndarray.ctypes`` lookups)."""
    table[row, 0] = theta.ctypes.data
    table[row, 1] = grad.ctypes.data
    table[row, 2] = ax.ctypes.data
    table[row, 3] = buf.ctypes.data
    table[row, 4] = start
    table[row, 5] = stop


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

    It is called as ``rows(table, wd, m, decay, lambd, eta, mu)``, on a table of rows
    (:data:`ROW_COLUMNS`) whose arrays are flat and of that dtype and stay alive through the call,
    with the coefficients as Python floats already rounded to it (numba takes Python floats faster
    than NumPy scalars; turning them back into the dtype is exact). It updates each row's range in
    place; what it returns means nothing. The choices are constants of the loop, so the branches on
    them vanish at compile time. A table lets one call step many small tensors, whose step is
    otherwise the cost of calling into compiled code.
    """
    scalar = numba.float32 if dtype == "f" else numba.float64
    element = np.dtype(dtype)
    itemsize = element.itemsize

    @numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy", boundscheck=False)
    def rows(table, wd, m, decay, lambd, eta, mu):  # type: ignore[no-untyped-def]
        wd, m, decay, lambd = scalar(wd), scalar(m), scalar(decay), scalar(lambd)
        eta, mu = scalar(eta), scalar(mu)
        nan_averages = 0
        for row in range(table.shape[0]):
            start, stop = table[row, 4], table[row, 5]
            size = stop - start
            offset = start * itemsize
            # Arrays from start on: indices counted from 0 are known non-negative, so no
            # wrap-around test is left in the loop and LLVM vectorizes it.
            theta = carray(address_as_pointer(table[row, 0] + offset), size, element)
            grad = carray(address_as_pointer(table[row, 1] + offset), size, element)
            ax = carray(address_as_pointer(table[row, 2] + offset), size, element)
            buf = theta
            if momentum:
                buf = carray(address_as_pointer(table[row, 3] + offset), size, element)
            for i in range(size):
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
                    # ax = θ. The old ax is read all the same: a load-and-store stream is
                    # prefetched by the hardware where a store-only one is not (20 % faster on the
                    # project's machine); counting its NaNs keeps the read from being optimized away.
                    ax[i] = t
                    nan_averages += a != a
        return nan_averages

    compiled: Callable[..., int] = rows
    return compiled
