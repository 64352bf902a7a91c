"""Near misses that no profile and no hyperparameter expresses: another momentum convention, another
step counter.

The diagnosis (:mod:`conformance.diagnosis`) tries them beside the other profiles and the ignored
hyperparameters. Each changes one line of the spec and keeps the rest of it: the lines are computed
with the spec's own rounding (:mod:`reference.rounding`) and coefficients
(:class:`reference.asgd.Coefficients`).

* **Momentum** (line 4): the spec's is torch SGD's heavy ball, ``buf = g`` at the first step, then
  ``buf = momentum * buf + g``, and ``g = buf``. ``"average"`` is the exponential average many ports
  write, ``buf = momentum * buf + (1 - momentum) * g`` from ``buf = 0``, each operation rounded;
  ``"nesterov"`` is torch SGD's ``nesterov=True``, ``g = g + momentum * buf`` after the buffer's
  update (one rounding where the profile fuses).
* **Step counter** (line 1): the torch profiles count in float32, which stops at 2**24; the numpy
  profile counts exactly. ``"exact"`` and ``"binary32"`` count the other way, and eta and mu after
  the step follow that count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from reference.asgd import Coefficients
from reference.numerics import Numerics
from reference.rounding import BINARY32, add, convert, format_of, mul
from reference.state import ParameterState

__all__ = ["Convention", "Counter", "counted", "with_momentum_convention"]

Convention = Literal["average", "nesterov"]
Counter = Literal["exact", "binary32"]


def _reals(array: np.ndarray) -> list[float]:
    """The real scalars of ``array`` in C order (a complex value is its two parts)."""
    flat = np.ascontiguousarray(array).ravel()
    if flat.dtype.kind == "c":
        flat = flat.view(np.finfo(flat.dtype).dtype)
    return [float(value) for value in flat.tolist()]


def _array_like(array: np.ndarray, reals: list[float]) -> np.ndarray:
    """``reals`` (values of ``array``'s real format) as an array of ``array``'s dtype and shape."""
    real = np.finfo(array.dtype).dtype if array.dtype.kind == "c" else array.dtype
    return np.array(reals, dtype=real).view(array.dtype).reshape(array.shape)


def with_momentum_convention(
    convention: Convention,
    theta: np.ndarray,
    gradient: np.ndarray,
    buffer: np.ndarray | None,
    group: Mapping[str, Any],
    state: ParameterState,
    numerics: Numerics,
) -> tuple[np.ndarray, np.ndarray]:
    """Lines 2 to 4 of one parameter's step with ``convention``'s momentum: the gradient that lines
    5 to 7 take (with maximize, weight decay and momentum already applied) and the new buffer
    (``buffer`` ``None``: the first step with momentum)."""
    fmt = format_of(theta.dtype)
    c = Coefficients.of(fmt, group, state, numerics)
    complement = convert(fmt, 1.0 - float(group["momentum"]))
    thetas, gradients = _reals(theta), _reals(gradient)
    buffers: list[float | None] = [None] * len(thetas) if buffer is None else list(_reals(buffer))
    stepped, held = [], []
    for t, g, b in zip(thetas, gradients, buffers, strict=True):
        if c.maximize:
            g = -g  # 2
        if c.has_weight_decay:
            g = c.multiply_add(fmt, g, c.weight_decay, t)  # 3: g + wd * theta
        if convention == "average":  # 4: buf = momentum * buf + (1 - momentum) * g, from 0
            b = add(fmt, mul(fmt, c.momentum, 0.0 if b is None else b), mul(fmt, complement, g))
            g = b
        else:  # 4: torch SGD's buffer, then g + momentum * buf
            b = g if b is None else add(fmt, mul(fmt, c.momentum, b), g)
            g = c.multiply_add(fmt, g, c.momentum, b)
        stepped.append(g)
        held.append(b)
    return _array_like(theta, stepped), _array_like(theta, held)


def counted(
    counter: Counter, before: Any, group: Mapping[str, Any], numerics: Numerics
) -> tuple[int | float, float, float]:
    """``step``, ``eta`` and ``mu`` after a step from the count ``before`` when the counter counts
    the ``counter`` way: eta and mu in ``numerics``'s format from that count."""
    if counter == "exact":
        step: int | float = int(before) + 1
    else:
        step = add(BINARY32, convert(BINARY32, float(before)), 1.0)  # stays at 2**24
    eta, mu = numerics.schedule(
        step, lr=group["lr"], lambd=group["lambd"], alpha=group["alpha"], t0=group["t0"]
    )
    return step, eta, mu
