"""``load_state_dict`` under corrupted dicts: a clear ValueError or TypeError, and never a partial load."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

CORRUPT_VALUES = st.sampled_from(
    [
        None,
        "x",
        -1,
        2.5,
        math.nan,
        math.inf,
        -0.5,
        [],
        {},
        np.zeros(7),
        np.zeros((2, 3), np.float16),
        True,
        object(),
    ]
)


def saved_state(asgd_class: Any) -> tuple[Any, list[np.ndarray], dict[str, Any]]:
    params = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5])]
    optimizer = asgd_class(
        [{"params": [params[0]], "momentum": 0.9}, {"params": [params[1]], "lr": 0.1}], t0=0
    )
    for _ in range(3):
        optimizer.step([np.ones((2, 3), np.float32), np.ones(2)])
    return optimizer, params, optimizer.state_dict()


@st.composite
def corruptions(draw: st.DrawFn, saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with one to three things broken: a key removed or added, a value replaced."""
    corrupted = copy.deepcopy(saved)

    def value() -> Any:
        return copy.deepcopy(draw(CORRUPT_VALUES))  # a fresh [] or {} each time: the tests mutate them

    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "group", "state", "entry"]))
        if where == "top":
            key = draw(st.sampled_from(["state", "param_groups"]))
            corrupted[key] = value()
        elif (
            where == "group" and isinstance(corrupted.get("param_groups"), list) and corrupted["param_groups"]
        ):
            group = corrupted["param_groups"][draw(st.integers(0, len(corrupted["param_groups"]) - 1))]
            if isinstance(group, dict):
                key = draw(st.sampled_from([*group, "unknown"]))
                if draw(st.booleans()):
                    group.pop(key, None)
                else:
                    group[key] = value()
        elif where == "state" and isinstance(corrupted.get("state"), dict):
            corrupted["state"][draw(st.sampled_from([5, "0", -1]))] = copy.deepcopy(
                draw(st.sampled_from([{}, None, 3]))
            )
        elif isinstance(corrupted.get("state"), dict) and corrupted["state"]:
            entry = corrupted["state"][draw(st.sampled_from(sorted(corrupted["state"], key=repr)))]
            if isinstance(entry, dict):
                key = draw(st.sampled_from(["step", "eta", "mu", "ax", "momentum_buffer", "exp_avg"]))
                if draw(st.booleans()):
                    entry.pop(key, None)
                else:
                    entry[key] = value()
    return corrupted


def snapshot(optimizer: Any, params: list[np.ndarray]) -> Any:
    state = optimizer.state_dict()
    return (
        [p.tobytes() for p in params],
        {
            i: {k: v.tobytes() if isinstance(v, np.ndarray) else repr(v) for k, v in e.items()}
            for i, e in state["state"].items()
        },
        [{k: repr(v) for k, v in g.items()} for g in state["param_groups"]],
    )


@given(data=st.data())
def test_corrupted_state_dicts_give_clear_errors_and_change_nothing(
    asgd_class: Any, data: st.DataObject
) -> None:
    optimizer, params, saved = saved_state(asgd_class)
    corrupted = data.draw(corruptions(saved))
    before = snapshot(optimizer, params)
    try:
        optimizer.load_state_dict(corrupted)
    except (ValueError, TypeError) as error:
        assert str(error), "an error must say what is wrong"
        assert snapshot(optimizer, params) == before
    else:
        # Some corruptions are harmless (an unused key removed is not one of them); what loads must
        # then be a valid state that the optimizer can step.
        optimizer.step([np.ones((2, 3), np.float32), np.ones(2)])
