"""A list and a dict that count their changes, so that "is it still what I checked?" costs O(1)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

__all__ = ["VersionedDict", "VersionedList"]

_MUTATORS: Final = (
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
)  # fmt: skip


class VersionedList(list[Any]):
    """A ``list`` whose ``version`` grows with every change made through its methods."""

    version: int = 0


def _counting(base: type, name: str) -> Callable[..., Any]:
    """``base``'s method ``name``, counting each call in the instance's ``version``."""
    method = getattr(base, name)

    @functools.wraps(method)
    def change(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.version += 1
        return method(self, *args, **kwargs)

    return change


for _name in _MUTATORS:
    setattr(VersionedList, _name, _counting(list, _name))


_DICT_MUTATORS: Final = (
    "__setitem__", "__delitem__", "__ior__", "pop", "popitem", "setdefault", "update", "clear",
)  # fmt: skip


class VersionedDict(dict[Any, Any]):
    """A ``dict`` whose ``version`` grows with every change made through its methods."""

    version: int = 0


for _name in _DICT_MUTATORS:
    setattr(VersionedDict, _name, _counting(dict, _name))
