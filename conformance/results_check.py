"""What a ``results.json`` from elsewhere must be before anything is built from it.

A merge reads files it did not write. Every value is checked against its dataclass field's type in
:mod:`conformance.results` (and against what the merge and the report do with it) before any
object is built, so that a malformed file is refused naming the field that is wrong, never failed
on half-way through a merge or a page.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

from conformance.results import SCHEMA_VERSION, Comparison, ImplementationRun, RunResult, ScenarioResult

__all__ = ["MAX_INTEGER", "check_json"]

MAX_INTEGER: Final = 2**53
"""The largest magnitude of an integer in a results.json (counts, steps, positions, seeds): beyond
it binary64, in which matplotlib's axes and JSON readers elsewhere hold numbers, is not exact."""

_CHOICES: Final[Mapping[tuple[type, str], frozenset[str]]] = {
    (Comparison, "status"): frozenset({"holds", "fails", "finding", "skipped"}),
    (Comparison, "policy"): frozenset({"bit-exact", "bounded", "finding"}),
    (ImplementationRun, "status"): frozenset({"ran", "skipped", "failed"}),
    (Comparison, "mode"): frozenset({"lockstep", "trajectory"}),
}
"""The string fields whose value decides something (a verdict, a count), and the values they take."""

_SERIES: Final = (
    "ulp_per_step_parameters",
    "ulp_per_step_averages",
    "normwise_ulp_per_step_parameters",
    "normwise_ulp_per_step_averages",
    "differing_per_step",
)
"""A comparison's per-step series: a value per step both implementations ran, so at most the
scenario's steps of them."""

_SHARD: Final = re.compile(r"([1-9][0-9]{0,15})/([1-9][0-9]{0,15})")
"""``--shard K/N`` as a run records it."""


@dataclass(frozen=True)
class _Record:
    """A JSON object that is not a dataclass: the types of its known fields, the fields it must have,
    and whether it may have others (of any plain JSON)."""

    fields: Mapping[str, Any]
    required: frozenset[str]
    others: bool = True


_SELECTION: Final = _Record(
    {"set": str, "only": str | None, "seed": int, "seeds": int, "jobs": int, "shard": str | None,
     "cells": int, "statistics": bool, "lockstep": bool, "full_coverage": bool, "merged": list[str | None]},
    frozenset({"set", "only", "seed", "seeds", "jobs", "shard", "cells", "statistics"}),
)  # fmt: skip
_ENVIRONMENT: Final = _Record(
    {"python": Any, "platform": Any, "numpy": Any, "torch": str | None, "scipy": Any, "numba": Any,
     "optimized_kernel": Any, "aten_cpu_capability": Any, "cuda": Any,
     "cpu": _Record({"model": Any, "flags": list[str]}, frozenset({"model", "flags"}))},
    frozenset({"python", "platform", "numpy", "torch", "scipy", "numba", "optimized_kernel",
               "aten_cpu_capability", "cuda", "cpu"}),
)  # fmt: skip
"""What the report's environment table and its torch warning read."""
_IMPLEMENTATION: Final = _Record({"name": str, "description": str}, frozenset({"name", "description"}))
_PAIR: Final = _Record(
    {"name": str, "policy": str, "ulp_budget": dict[str, int] | None, "rationale": str, "group": str | None},
    frozenset({"name", "policy", "ulp_budget", "rationale"}),
)
_LOOSE_FIELDS: Final[Mapping[type, Mapping[str, Any]]] = {
    RunResult: {
        "selection": _SELECTION,
        "environment": _ENVIRONMENT,
        "implementations": types.GenericAlias(list, (_IMPLEMENTATION,)),
        "pairs": types.GenericAlias(list, (_PAIR,)),
    }
}
"""Dataclass fields of loose types (``dict[str, Any]``, ``list[dict[str, str]]``): what the merge and
the report read in them."""


def check_json(data: Any, *, max_steps: int | None = None, max_depth: int | None = None) -> None:
    """Refuse with ``ValueError`` (naming the field, as in ``scenarios[2].comparisons[0].max_abs_error``)
    parsed JSON that is not a results.json of this version, or holds a scenario of more than
    ``max_steps`` steps, or nests deeper than ``max_depth`` (the top-level object is 1).

    Every field has the type of its dataclass field; integers are counts, steps, positions or seeds
    (``0 <= n <= MAX_INTEGER``); numbers are finite; strings are Unicode that UTF-8 can write; the
    per-step series are non-negative and no longer than their scenario; verdicts are one of their
    values; and the figures the report shows together are there together.
    """
    if type(data) is not dict:
        raise ValueError(f"the top level must be an object, got {_shown(data)}")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ValueError(f"schema_version is {_shown(version)}, this version reads {SCHEMA_VERSION}")
    _Checker(max_steps, max_depth).check(data, RunResult, "", 1)


@functools.cache
def _record_of(cls: type) -> _Record:
    """A dataclass's fields as a :class:`_Record` that allows no others (a field with a default may
    be left out)."""
    hints = get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    required = frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    return _Record({**fields, **_LOOSE_FIELDS.get(cls, {})}, required, others=False)


def _shown(value: object) -> str:
    """``value`` in at most 40 characters of JSON, for a one-line message."""
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _at(where: str, key: str | int) -> str:
    """The path of ``key`` inside the value at path ``where`` (``""``: the top level)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if not key.isidentifier():
        return f"{where}[{_shown(key)}]"
    return f"{where}.{key}" if where else key


def _writable(text: str) -> bool:
    """Whether UTF-8 can write ``text`` (JSON's ``\\ud800`` escapes read as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(value: Any) -> bool:
    """Whether ``value`` is an integer from 0 to MAX_INTEGER (not a bool)."""
    return type(value) is int and 0 <= value <= MAX_INTEGER


def _finite(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (an integer of at most MAX_INTEGER's magnitude)."""
    if type(value) is int:
        return -MAX_INTEGER <= value <= MAX_INTEGER
    return type(value) is float and math.isfinite(value)


def _non_negative(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number >= 0."""
    return _finite(value) and value >= 0


@dataclass(frozen=True)
class _Checker:
    """Walks parsed JSON along the type it must have (see :func:`check_json`)."""

    max_steps: int | None
    max_depth: int | None

    def check(self, value: Any, hint: Any, where: str, depth: int) -> None:
        """Refuse ``value``, at path ``where`` and nested ``depth`` deep, unless it is a ``hint``."""
        if get_origin(hint) in (Union, types.UnionType):
            if value is None and type(None) in get_args(hint):
                return
            (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
        if hint is Any:
            self._plain(value, where, depth)
        elif hint is str:
            if type(value) is not str or not _writable(value):
                raise ValueError(f"{where} must be a string, got {_shown(value)}")
        elif hint is bool:
            if type(value) is not bool:
                raise ValueError(f"{where} must be true or false, got {_shown(value)}")
        elif hint is int:
            if not _count(value):
                raise ValueError(f"{where} must be an integer from 0 to 2**53, got {_shown(value)}")
        elif hint is float:
            if not _finite(value):
                raise ValueError(f"{where} must be a finite number, got {_shown(value)}")
            if where.endswith("seconds") and value < 0:  # a time taken
                raise ValueError(f"{where} must be a number >= 0, got {_shown(value)}")
        elif get_origin(hint) is list:
            self._container(value, list, where, depth)
            (item,) = get_args(hint)
            if item in (int, float):  # a per-step series (or an lr change): maybe a million numbers
                if item is int:
                    self._series(value, _count, "an integer from 0 to 2**53", where)
                else:
                    self._series(value, _non_negative, "a finite number >= 0", where)
            else:
                for index, element in enumerate(value):
                    self.check(element, item, _at(where, index), depth + 1)
        elif get_origin(hint) is dict:
            self._container(value, dict, where, depth)
            for key, element in value.items():
                self.check(element, get_args(hint)[1], self._key(where, key), depth + 1)
        else:
            record = hint if isinstance(hint, _Record) else _record_of(hint)
            self._record(value, record, where, depth)
            self._rules(value, hint, where)

    def _container(self, value: Any, kind: type, where: str, depth: int) -> None:
        if type(value) is not kind:
            expected = "an array" if kind is list else "an object"
            raise ValueError(f"{where or 'the top level'} must be {expected}, got {_shown(value)}")
        if self.max_depth is not None and depth > self.max_depth:
            raise ValueError(f"{where} nests deeper than {self.max_depth} levels")

    @staticmethod
    def _key(where: str, key: str) -> str:
        if not _writable(key):
            raise ValueError(f"{where} has a key UTF-8 cannot write: {_shown(key)}")
        return _at(where, key)

    def _record(self, value: Any, record: _Record, where: str, depth: int) -> None:
        self._container(value, dict, where, depth)
        missing = sorted(record.required - value.keys())
        if missing:
            raise ValueError(f"{_at(where, missing[0])} is missing")
        for key, element in value.items():
            at = self._key(where, key)
            if key in record.fields:
                self.check(element, record.fields[key], at, depth + 1)
            elif record.others:
                self._plain(element, at, depth + 1)
            else:
                raise ValueError(f"{at} is not a field this version writes")

    def _rules(self, value: dict[str, Any], kind: object, where: str) -> None:
        """What the types of an object's fields leave unsaid: the values of its verdict fields; for
        a comparison, the errors shown with its normwise ULP; for a scenario, its steps within the
        bound, its series no longer than its steps, and its lr changes pairs; a shard's K/N."""
        for (owner, name), choices in _CHOICES.items():
            if owner is kind and value[name] not in choices:
                raise ValueError(f"{_at(where, name)} must be one of {', '.join(sorted(choices))}, "
                                 f"got {_shown(value[name])}")  # fmt: skip
        if kind is Comparison and value.get("max_normwise_ulp") is not None:
            for name in ("max_abs_error", "max_rel_error"):
                if value.get(name) is None:
                    raise ValueError(f"{_at(where, name)} must be a number where max_normwise_ulp is one")
        if kind is ScenarioResult:
            steps, bound = value["steps"], MAX_INTEGER if self.max_steps is None else self.max_steps
            if not 1 <= steps <= bound:
                raise ValueError(f"{where}.steps must be from 1 to {bound:,}, got {steps:,}")
            for index, comparison in enumerate(value["comparisons"]):
                for name in _SERIES:
                    if len(comparison.get(name, ())) > steps:
                        at = _at(_at(_at(where, "comparisons"), index), name)
                        raise ValueError(f"{at} has more values than the scenario's {steps:,} steps")
            for index, change in enumerate(value.get("lr_changes", ())):
                if len(change) != 2 or type(change[0]) is not int:
                    at = _at(_at(where, "lr_changes"), index)
                    raise ValueError(f"{at} must be [step, factor], got {_shown(change)}")
        if kind is _SELECTION and value["shard"] is not None:
            shard = _SHARD.fullmatch(value["shard"])
            if shard is None or int(shard[1]) > int(shard[2]):
                raise ValueError(f"{where}.shard must be K/N with 1 <= K <= N, got {_shown(value['shard'])}")

    @staticmethod
    def _series(values: list[Any], valid: Callable[[Any], bool], expected: str, where: str) -> None:
        """Refuse a list of numbers unless each is ``valid`` (``expected`` says what that is): one
        pass over them, and a second, for the message, only where one is not."""
        if not all(map(valid, values)):
            index = next(index for index, value in enumerate(values) if not valid(value))
            raise ValueError(f"{_at(where, index)} must be {expected}, got {_shown(values[index])}")

    def _plain(self, value: Any, where: str, depth: int) -> None:
        """Refuse a value of no fixed type (hyperparameters, environment, statistics details) unless
        it is JSON nested at most ``max_depth`` deep, its numbers finite, its integers of at most
        MAX_INTEGER's magnitude. Iterative: a deep value meets the bound, not the recursion limit."""
        pending = [(value, where, depth)]
        while pending:
            item, at, level = pending.pop()
            if type(item) is dict:
                self._container(item, dict, at, level)
                pending.extend((element, self._key(at, key), level + 1) for key, element in item.items())
            elif type(item) is list:
                self._container(item, list, at, level)
                pending.extend((element, _at(at, index), level + 1) for index, element in enumerate(item))
            elif type(item) is str:
                if not _writable(item):
                    raise ValueError(f"{at} is a string UTF-8 cannot write: {_shown(item)}")
            elif type(item) in (int, float):
                if not _finite(item):
                    raise ValueError(f"{at} must be a finite number of at most 2**53 if an integer, "
                                     f"got {_shown(item)}")  # fmt: skip
            elif item is not None and type(item) is not bool:
                raise ValueError(f"{at} must be JSON, got a {type(item).__name__}")
