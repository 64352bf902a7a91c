"""Every validation rule, as a table: the call, the exception type, the message, and nothing changed.

Each row acts on a fresh optimizer that has already stepped (so there is state to corrupt) and
checks that parameters, state and hyperparameters are bit for bit what they were before.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class BadInput:
    description: str
    action: Callable[[Any], object]
    error: type[Exception]
    match: str


class Subject:
    """An optimizer in the middle of a run: two groups, momentum, averaging active."""

    def __init__(self, asgd_class: Any) -> None:
        self.asgd_class = asgd_class
        self.parameters = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], np.float64)]
        self.optimizer = asgd_class(
            [{"params": [self.parameters[0]], "momentum": 0.9}, {"params": [self.parameters[1]], "lr": 0.1}],
            t0=0,
        )
        for _ in range(2):
            self.optimizer.step(self.good_grads())

    def good_grads(self) -> list[np.ndarray | None]:
        return [np.ones((2, 3), np.float32), np.ones(2, np.float64)]

    def saved(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def snapshot(self) -> tuple[Any, ...]:
        state = self.optimizer.state_dict()
        arrays = [
            (k, i, v.tobytes())
            for i, entry in state["state"].items()
            for k, v in entry.items()
            if isinstance(v, np.ndarray)
        ]
        scalars = [
            (k, i, repr(v))
            for i, entry in state["state"].items()
            for k, v in entry.items()
            if not isinstance(v, np.ndarray)
        ]
        groups = [{k: repr(v) for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        return tuple(p.tobytes() for p in self.parameters), arrays, scalars, groups


def with_group_value(key: str, value: object) -> Callable[[Subject], object]:
    def act(s: Subject) -> object:
        saved = s.saved()
        saved["param_groups"][0][key] = value
        return s.optimizer.load_state_dict(saved)

    return act


def with_state_value(key: str, value: object) -> Callable[[Subject], object]:
    def act(s: Subject) -> object:
        saved = s.saved()
        saved["state"][0][key] = value
        # Make the second entry valid and changed, so a partial load would show.
        saved["state"][1]["ax"] = saved["state"][1]["ax"] + 1
        return s.optimizer.load_state_dict(saved)

    return act


def without_state_key(key: str) -> Callable[[Subject], object]:
    def act(s: Subject) -> object:
        saved = s.saved()
        del saved["state"][1][key]
        return s.optimizer.load_state_dict(saved)

    return act


def step_with(grads: Callable[[Subject], object]) -> Callable[[Subject], object]:
    return lambda s: s.optimizer.step(grads(s))


def edit_group_then_step(key: str, value: object, group: int = 1) -> Callable[[Subject], object]:
    def act(s: Subject) -> object:
        original = s.optimizer.param_groups[group][key]
        s.optimizer.param_groups[group][key] = value
        try:
            return s.optimizer.step(s.good_grads())
        finally:
            s.optimizer.param_groups[group][key] = original

    return act


def edit_group_keys_then_step(group: int, **changes: object) -> Callable[[Subject], object]:
    """Several values of one group changed together, then a step (the values restored after)."""

    def act(s: Subject) -> object:
        original = {key: s.optimizer.param_groups[group][key] for key in changes}
        s.optimizer.param_groups[group].update(changes)
        try:
            return s.optimizer.step(s.good_grads())
        finally:
            s.optimizer.param_groups[group].update(original)

    return act


def new_optimizer(*args: Any, **kwargs: Any) -> Callable[[Subject], object]:
    return lambda s: s.asgd_class(*args, **kwargs)


def p32() -> np.ndarray:
    return np.zeros(3, np.float32)


def read_only() -> np.ndarray:
    array = np.zeros(3, np.float32)
    array.flags.writeable = False
    return array


HYPERPARAMETER_ROWS = [
    BadInput(f"{name}={value!r}", new_optimizer([p32()], **{name: value}), ValueError,
             rf"Invalid {name}: {re.escape(repr(value))} \(must be finite and >= 0\)")
    for name in ("lr", "momentum", "weight_decay", "alpha", "lambd")
    for value in (-0.5, math.nan, math.inf, -math.inf)
] + [
    BadInput(f"{name}={value!r}", new_optimizer([p32()], **{name: value}), TypeError, rf"{name} must be a real number, got {re.escape(repr(value))}")
    for name in ("lr", "momentum", "weight_decay", "alpha", "lambd", "t0")
    for value in ("0.1", None, True)
] + [
    BadInput("t0=nan", new_optimizer([p32()], t0=math.nan), ValueError, r"Invalid t0: nan \(must not be NaN"),
    *[BadInput(f"{name}=10**400", new_optimizer([p32()], **{name: 10**400}), ValueError,
               rf"Invalid {name}: 1000+ \(beyond the range of a binary64 float\)")
      for name in ("lr", "t0", "weight_decay")],
    BadInput("param_groups edited to a huge lr", edit_group_then_step("lr", 10**400), ValueError, r"Invalid lr: 1000+ \(beyond"),
    BadInput("numerics as an array", new_optimizer([p32()], numerics=np.array(["numpy"])), TypeError,
             r"numerics must be a str, got array\(\['numpy'\]"),
    BadInput("maximize=1", new_optimizer([p32()], maximize=1), TypeError, r"maximize must be a bool, got 1 \(int\)"),
    BadInput("numerics='exact'", new_optimizer([p32()], numerics="exact"), ValueError,
             r"Invalid numerics: 'exact' \(must be one of \('numpy', 'torch', 'torch-foreach'\)\)"),
    BadInput("unknown group key", new_optimizer([{"params": [p32()], "lr_decay": 0.1}]), ValueError, "Unknown hyperparameter 'lr_decay'"),
    BadInput("invalid group value", new_optimizer([{"params": [p32()], "lr": -1.0}]), ValueError, r"Invalid lr: -1.0"),
]  # fmt: skip

PARAMETER_ROWS = [
    BadInput("empty params", new_optimizer([]), ValueError, "optimizer got an empty parameter list"),
    BadInput("a single array", new_optimizer(p32()), TypeError, "got a single ndarray"),
    BadInput("integer dtype", new_optimizer([np.zeros(3, np.int64)]), TypeError, r"params\[0\] has dtype int64; supported dtypes"),
    BadInput("longdouble", new_optimizer([np.zeros(3, np.longdouble)]), TypeError, r"params\[0\] has dtype float128|params\[0\] has dtype longdouble"),
    BadInput("float16 in the torch profile", new_optimizer([p32(), np.zeros(2, np.float16)], numerics="torch"), TypeError,
             r"params\[1\] has dtype float16; supported dtypes: float32, float64, complex64, complex128"),
    BadInput("a list", new_optimizer([[1.0, 2.0]]), TypeError, r"params\[0\] must be a numpy.ndarray or have an ndarray .data, got list"),
    BadInput("read-only", new_optimizer([read_only()]), ValueError, r"params\[0\] is read-only"),
    BadInput("a broadcast view", new_optimizer([np.lib.stride_tricks.as_strided(np.ones(1), (4,), (0,))]),
             ValueError, r"params\[0\] has several elements in one memory location"),
    BadInput("big-endian", new_optimizer([np.ones(4, ">f4")]), TypeError, r"params\[0\] has dtype float32 \(>f4, non-native byte order\)"),
    BadInput("big-endian in the torch profile", new_optimizer([p32(), np.ones(4, ">f8")], numerics="torch"), TypeError,
             r"params\[1\] has dtype float64 \(>f8, non-native byte order\)"),
    BadInput("np.matrix", new_optimizer([np.asmatrix(np.ones((2, 2)))]), TypeError, r"params\[0\] is a numpy.matrix, an ndarray subclass"),
    BadInput("a masked array", new_optimizer([np.ma.masked_array(np.ones(3))]), TypeError, r"params\[0\] is a numpy.ma.MaskedArray"),
    BadInput("overlapping parameters", new_optimizer([(b := np.zeros(12))[0:8], b[4:12:2]]), ValueError,
             r"params\[1\] shares memory with params\[0\]; parameters must not overlap"),
    BadInput("a view of a parameter", lambda s: s.asgd_class([s.parameters[0], s.parameters[0][:1]]), ValueError,
             r"params\[1\] shares memory with params\[0\]"),
    BadInput("add_param_group overlapping a parameter", lambda s: s.optimizer.add_param_group({"params": [s.parameters[1][1:]]}),
             ValueError, r"params\[2\] shares memory with params\[1\]"),
    BadInput("duplicate", lambda s: s.asgd_class([s.parameters[0], s.parameters[0]]), ValueError, r"params\[1\] appears more than once"),
    BadInput("add_param_group with a known parameter", lambda s: s.optimizer.add_param_group({"params": [s.parameters[1]]}),
             ValueError, r"params\[2\] appears more than once"),
    BadInput("add_param_group with a bad value", lambda s: s.optimizer.add_param_group({"params": [p32()], "alpha": -1}),
             ValueError, r"Invalid alpha: -1"),
    BadInput("add_param_group without params", lambda s: s.optimizer.add_param_group({"lr": 0.1}), ValueError, "must have a 'params' entry"),
]  # fmt: skip

STEP_ROWS = [
    BadInput("too few grads", step_with(lambda s: s.good_grads()[:1]), ValueError, "grads has 1 entries, but the optimizer has 2 params"),
    BadInput("wrong shape", step_with(lambda s: [np.ones((3, 2), np.float32), np.ones(2)]), ValueError,
             r"grads\[0\] has shape \(3, 2\), but its parameter has shape \(2, 3\)"),
    BadInput("wrong dtype (second gradient)", step_with(lambda s: [np.ones((2, 3), np.float32), np.ones(2, np.float32)]), TypeError,
             r"grads\[1\] has dtype float32, but its parameter has dtype float64"),
    BadInput("a list gradient", step_with(lambda s: [np.ones((2, 3), np.float32), [1.0, 1.0]]), TypeError,
             r"grads\[1\] must be a numpy.ndarray or None, got list"),
    BadInput("grads as one array", step_with(lambda s: np.ones(2)), TypeError, "grads must be a list of arrays or None, got ndarray"),
    BadInput("no grads for bare arrays", lambda s: s.optimizer.step(), TypeError, r"step\(\) needs grads= when a parameter is a bare array"),
    BadInput("param_groups edited to a bad lr", edit_group_then_step("lr", -0.1), ValueError, r"Invalid lr: -0.1"),
    BadInput("param_groups edited to a bad numerics", edit_group_then_step("numerics", "float"), ValueError, r"Invalid numerics: 'float'"),
    BadInput("weight decay beyond float32", edit_group_then_step("weight_decay", 1e39, group=0), ValueError,
             r"Invalid weight_decay: 1e\+39 for params\[0\] of dtype float32 \(beyond the range of binary32\)"),
    BadInput("weight decay above float32's largest (torch raises, though it rounds down)",
             edit_group_then_step("weight_decay", 3.4028235e38, group=0), ValueError,
             r"Invalid weight_decay: 3.4028235e\+38 for params\[0\] of dtype float32 \(beyond the range of binary32\)"),
    BadInput("lambd beyond float32 in the foreach formulation",
             edit_group_keys_then_step(0, numerics="torch-foreach", lambd=1e39), ValueError,
             r"Invalid lambd: 1e\+39 for params\[0\] of dtype float32 \(beyond the range of binary32\)"),
    BadInput("momentum beyond float32", edit_group_then_step("momentum", 1e39, group=0), ValueError,
             r"Invalid momentum: 1e\+39 for params\[0\] of dtype float32"),
    BadInput("the gradient is its parameter", step_with(lambda s: [s.parameters[0], np.ones(2)]), ValueError,
             r"grads\[0\] shares memory with params\[0\]; a gradient must not overlap a parameter"),
    BadInput("a gradient is a view of another parameter", step_with(lambda s: [np.ones((2, 3), np.float32), s.parameters[1][::-1]]),
             ValueError, r"grads\[1\] shares memory with params\[1\]"),
    BadInput("a masked gradient", step_with(lambda s: [np.ma.masked_array(np.ones((2, 3), np.float32), mask=True), np.ones(2)]),
             TypeError, r"grads\[0\] is a numpy.ma.MaskedArray, an ndarray subclass"),
    BadInput("a matrix gradient", step_with(lambda s: [np.asmatrix(np.ones((2, 3), np.float32)), np.ones(2)]),
             TypeError, r"grads\[0\] is a numpy.matrix, an ndarray subclass"),
    BadInput("a gradient of the other byte order", step_with(lambda s: [np.ones((2, 3), ">f4"), np.ones(2)]), TypeError,
             r"grads\[0\] has dtype float32 \(>f4, non-native byte order\), but its parameter has dtype float32$"),
]  # fmt: skip

STATE_ROWS = [
    BadInput("not a mapping", lambda s: s.optimizer.load_state_dict([]), TypeError, "state_dict must be a mapping, got list"),
    BadInput("no state", lambda s: s.optimizer.load_state_dict({"param_groups": []}), ValueError, "state_dict lacks 'state'"),
    BadInput("group count", lambda s: s.optimizer.load_state_dict({**s.saved(), "param_groups": s.saved()["param_groups"][:1]}),
             ValueError, "state_dict has 1 param groups, the optimizer has 2"),
    BadInput("group size", with_group_value("params", [0, 1]), ValueError, r"\['params'\] must list 1 parameter ids"),
    BadInput("group unknown key", with_group_value("foreach", None), ValueError, r"\[0\] has unknown keys \['foreach'\]"),
    BadInput("group bad value", with_group_value("lambd", -1e-4), ValueError, r"Invalid lambd: -0.0001"),
    BadInput("group missing value", lambda s: s.optimizer.load_state_dict(
        {**s.saved(), "param_groups": [{k: v for k, v in g.items() if k != "t0"} for g in s.saved()["param_groups"]]}),
        ValueError, r"lacks the hyperparameters \['t0'\]"),
    BadInput("unknown parameter id", lambda s: s.optimizer.load_state_dict({**s.saved(), "state": {**s.saved()["state"], 7: {}}}),
             ValueError, "entry for unknown parameter id 7"),
    BadInput("entry not a mapping", lambda s: s.optimizer.load_state_dict({**s.saved(), "state": {0: 3}}), TypeError,
             r"\[0\] must be a mapping, got int"),
    BadInput("missing ax", without_state_key("ax"), ValueError, r"\[1\] lacks \['ax'\]"),
    BadInput("unknown state key", with_state_value("exp_avg", np.zeros(2)), ValueError, r"has unknown keys \['exp_avg'\]"),
    BadInput("NaN step", with_state_value("step", math.nan), ValueError, r"Invalid state_dict\['state'\]\[0\]\['step'\]: nan"),
    BadInput("negative step", with_state_value("step", -1), ValueError, r"\['step'\]: -1 \(must be a finite integer >= 0\)"),
    BadInput("negative float step", with_state_value("step", -1.0), ValueError, r"\['step'\]: -1.0 \(must be a finite integer >= 0\)"),
    BadInput("step beyond binary64", with_state_value("step", 10**400), ValueError, r"\['step'\]: 1000+ \(beyond the range of a binary64 float\)"),
    BadInput("step beyond float32 in the torch profile", lambda s: s.optimizer.load_state_dict(
        {"state": {**s.saved()["state"], 0: {**s.saved()["state"][0], "step": 2**130}},
         "param_groups": [{**g, "numerics": "torch", "momentum": 0.0} for g in s.saved()["param_groups"]]}),
        ValueError, r"\['step'\]: 1361129467683753853853498429727072845824 \(beyond the range of torch's float32 counter\)"),
    BadInput("step whose next step is beyond binary64", with_state_value("step", 2**1024 - 2**970 - 1), ValueError,
             r"\['step'\]: \d+ \(beyond the range of a binary64 float\)"),
    BadInput("step that rounds to float32's infinity in the torch profile", lambda s: s.optimizer.load_state_dict(
        {"state": {**s.saved()["state"], 0: {**s.saved()["state"][0], "step": 2**128 - 2**103}},
         "param_groups": [{**g, "numerics": "torch", "momentum": 0.0} for g in s.saved()["param_groups"]]}),
        ValueError, r"\['step'\]: \d+ \(beyond the range of torch's float32 counter\)"),
    BadInput("unhashable saved id", with_group_value("params", [[0]]), TypeError, r"\['params'\] has an unhashable parameter id \[0\]"),
    BadInput("a saved id that cannot be hashed", with_group_value("params", [(0, [1])]), TypeError,
             r"\['params'\] has an unhashable parameter id \(0, \[1\]\)"),
    BadInput("eta beyond binary64", with_state_value("eta", 10**400), ValueError, r"\['eta'\]: 1000+ \(beyond the range of a binary64 float\)"),
    BadInput("step just below 2**1024", with_state_value("step", 2**1024 - 1), ValueError, r"\['step'\]: \d+ \(beyond the range of a binary64 float\)"),
    BadInput("fractional step", with_state_value("step", 2.5), ValueError, r"\['step'\]: 2.5"),
    BadInput("string step", with_state_value("step", "2"), TypeError, r"\['step'\] must be a real number, got str"),
    BadInput("negative eta", with_state_value("eta", -0.1), ValueError, r"\['eta'\]: -0.1 \(must be >= 0\)"),
    BadInput("NaN eta", with_state_value("eta", math.nan), ValueError, r"\['eta'\]: nan"),
    BadInput("infinite eta", with_state_value("eta", math.inf), ValueError, r"\['eta'\]: inf \(must be finite"),
    BadInput("eta beyond float32", with_state_value("eta", 1e300), ValueError,
             r"\['eta'\]: 1e\+300 \(beyond the range of the parameter's float32"),
    BadInput("eta beyond float32 in the torch profile", lambda s: s.optimizer.load_state_dict(
        {"state": {**s.saved()["state"], 1: {**s.saved()["state"][1], "eta": 1e39}},
         "param_groups": [{**g, "numerics": "torch", "momentum": 0.0} for g in s.saved()["param_groups"]]}),
        ValueError, r"\[1\]\['eta'\]: 1e\+39 \(beyond the range of torch's float32 clock\)"),
    BadInput("mu above 1", with_state_value("mu", 1.5), ValueError, r"\['mu'\]: 1.5 \(must be in \[0, 1\]\)"),
    BadInput("ax shape", with_state_value("ax", np.zeros((3, 2), np.float32)), ValueError, r"\['ax'\] has shape \(3, 2\)"),
    BadInput("ax dtype", with_state_value("ax", np.zeros((2, 3), np.float64)), TypeError, r"\['ax'\] has dtype float64"),
    BadInput("ax a list", with_state_value("ax", [[0.0] * 3] * 2), TypeError, r"\['ax'\] must be a numpy.ndarray, got list"),
    BadInput("ax a matrix", with_state_value("ax", np.asmatrix(np.zeros((2, 3), np.float32))), TypeError,
             r"\['ax'\] is a numpy.matrix, an ndarray subclass"),
    BadInput("buffer shape", with_state_value("momentum_buffer", np.zeros(6, np.float32)), ValueError, r"\['momentum_buffer'\] has shape \(6,\)"),
]  # fmt: skip


def averages_into_a_replaced_parameter(s: Subject) -> object:
    """A stepped parameter replaced by an array of another shape, then an averaged_parameters()
    block: its average cannot be swapped in, and no other parameter may be left holding its own."""
    group = s.optimizer.param_groups[1]
    original = group["params"][0]
    group["params"][0] = np.zeros(5, np.float64)
    try:
        with s.optimizer.averaged_parameters():
            pass
    finally:
        group["params"][0] = original
    return None


BLOCK_ROWS = [
    BadInput("averaged_parameters() over a replaced parameter", averages_into_a_replaced_parameter, ValueError,
             r"params\[1\] has shape \(5,\) and dtype float64, but its state was made for shape \(2,\)"),
]  # fmt: skip

ROWS = HYPERPARAMETER_ROWS + PARAMETER_ROWS + STEP_ROWS + STATE_ROWS + BLOCK_ROWS


@pytest.mark.parametrize("row", ROWS, ids=[row.description for row in ROWS])
def test_bad_input_raises_and_changes_nothing(row: BadInput, asgd_class: Any) -> None:
    subject = Subject(asgd_class)
    before = copy.deepcopy(subject.snapshot())
    with pytest.raises(row.error, match=row.match):
        row.action(subject)
    assert subject.snapshot() == before


def test_the_subject_is_mutable_so_the_unchanged_checks_mean_something(asgd_class: Any) -> None:
    """A valid load and a valid step do change the snapshot."""
    subject = Subject(asgd_class)
    before = subject.snapshot()
    saved = subject.saved()
    saved["state"][1]["ax"] = saved["state"][1]["ax"] + 1
    subject.optimizer.load_state_dict(saved)
    assert subject.snapshot() != before
    after_load = subject.snapshot()
    subject.optimizer.step(subject.good_grads())
    assert subject.snapshot() != after_load
