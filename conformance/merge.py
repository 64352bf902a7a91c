"""Combine the shards of one run into the whole, as ``coverage combine`` does for coverage data.

Shards of a run (``--shard K/N``) each hold every N-th scenario × seed cell with its position in the
whole selection. Their union, sorted by position, is the unsharded run's list of scenarios; the
findings are derived again from it, and the statistics come from shard 1, which runs them.

A merge reads files it did not write, so it reads them within bounds (below), each checked before
what it bounds is read or allocated, and checks every value before it builds anything
(:func:`conformance.results_check.check_json`): a file beyond a bound, or malformed, is refused with
``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from conformance.findings import derive_findings
from conformance.results import SCHEMA_VERSION, RunResult, read_json

__all__ = ["MAX_DEPTH", "MAX_RESULTS_BYTES", "MAX_SHARDS", "MAX_STEPS", "bounds_text", "merge_results"]

MAX_RESULTS_BYTES: Final = 256 * 2**20
"""The most bytes a shard's results.json, and all the shards of a merge together, may hold. The full
set writes about 11 MB per seed; a merge holds its shards' data in memory (about three times its
size as JSON) and writes it as one results.json, which this bound lets a merge read again."""

MAX_SHARDS: Final = 1024
"""The most shards a merge combines (the N of ``--shard K/N``): one file is read per shard. A run
has about 40 cells per seed of the full set, so more shards than this would mostly be empty."""

MAX_STEPS: Final = 1_000_000
"""The most steps a scenario may have run: the longest scenario runs 1,500. Its plot and its per-step
series (five per comparison, each no longer than the steps) grow with it."""

MAX_DEPTH: Final = 32
"""The deepest arrays and objects may nest in a results.json (its top-level object is 1): a
results.json nests 6 deep. Parsing, checking, writing and rendering recurse once per level; this
keeps them far from Python's recursion limit."""

_SAME_SELECTION = ("set", "only", "seed", "seeds", "cells", "statistics", "lockstep", "full_coverage")
_MISSING_LISTED = 10
"""How many missing shards a refusal names; it counts the rest."""


def bounds_text() -> str:
    """The bounds a merge reads within, in words (for ``--help``)."""
    return (
        f"Each results.json, and the shards together, may hold at most {MAX_RESULTS_BYTES // 2**20} MiB, "
        f"a scenario at most {MAX_STEPS:,} steps, arrays and objects may nest at most {MAX_DEPTH} deep, "
        f"and a run at most {MAX_SHARDS:,} shards."
    )


def _results_file(directory: Path) -> Path:
    path = directory / "results.json"
    if not path.is_file():
        raise ValueError(f"{directory} holds no results.json")
    return path


def _shard(result: RunResult) -> tuple[int, int]:
    """``(K, N)`` of a shard's ``--shard K/N`` (an unsharded run is ``(1, 1)``); checked well-formed
    when it was read."""
    index, _, count = (result.selection["shard"] or "1/1").partition("/")
    return int(index), int(count)


def merge_results(directories: Sequence[Path], *, command: str = "asgd-conformance merge") -> RunResult:
    """The whole run the shard reports in ``directories`` make up, or ``ValueError`` saying why not."""
    if len(directories) > MAX_SHARDS:
        raise ValueError(f"{len(directories):,} shards given, a merge combines at most {MAX_SHARDS:,}")
    paths = [_results_file(directory) for directory in directories]
    try:
        sizes = [path.stat().st_size for path in paths]
    except OSError as error:
        raise ValueError(f"{error.filename} cannot be read ({error.strerror or error})") from error
    for path, size in zip(paths, sizes, strict=True):
        if size > MAX_RESULTS_BYTES:
            raise ValueError(f"{path} holds {size:,} bytes, more than {MAX_RESULTS_BYTES:,}")
    if (total := sum(sizes)) > MAX_RESULTS_BYTES:
        raise ValueError(
            f"the shards hold {total:,} bytes together, a merge reads at most {MAX_RESULTS_BYTES:,}"
        )
    shards = [
        read_json(path, max_bytes=MAX_RESULTS_BYTES, max_steps=MAX_STEPS, max_depth=MAX_DEPTH)
        for path in paths
    ]
    first = shards[0].selection
    count = _shard(shards[0])[1]
    if count > MAX_SHARDS:
        raise ValueError(f"{directories[0]} is a shard of {count:,}, a merge combines at most {MAX_SHARDS:,}")
    seen: dict[int, Path] = {}
    for directory, result in zip(directories, shards, strict=True):
        selection = result.selection
        different = [key for key in _SAME_SELECTION if selection.get(key) != first.get(key)]
        if [i["name"] for i in result.implementations] != [i["name"] for i in shards[0].implementations]:
            different.append("implementations")
        if [p["name"] for p in result.pairs] != [p["name"] for p in shards[0].pairs]:
            different.append("pairs")
        if different:
            raise ValueError(
                f"{directory} is a shard of another selection (its {', '.join(different)} differ)"
            )
        index, of = _shard(result)
        if of != count:
            raise ValueError(f"{directory} is shard {index}/{of}, the others are of {count}")
        if index in seen:
            raise ValueError(f"shard {index}/{count} given twice: {seen[index]} and {directory}")
        seen[index] = directory
    missing = [index for index in range(1, count + 1) if index not in seen]
    if missing:
        listed = ", ".join(f"{index}/{count}" for index in missing[:_MISSING_LISTED])
        more = f" and {len(missing) - _MISSING_LISTED} more" if len(missing) > _MISSING_LISTED else ""
        raise ValueError(f"shards {listed}{more} are missing")
    scenarios = sorted((s for result in shards for s in result.scenarios), key=lambda s: s.cell)
    if len({s.cell for s in scenarios}) != len(scenarios) or len(scenarios) != first["cells"]:
        raise ValueError(f"the shards hold {len(scenarios)} cells, the selection {first['cells']}")
    statistics = next((r.statistics for r in shards if r.statistics is not None), None)
    seconds = sum(r.seconds for r in shards)
    if not math.isfinite(seconds):
        raise ValueError("the shards' run times add up to more than binary64 holds")
    return RunResult(
        schema_version=SCHEMA_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
        selection={**first, "shard": None, "merged": [r.selection["shard"] for r in shards]},
        environment=shards[0].environment,
        implementations=shards[0].implementations,
        pairs=shards[0].pairs,
        scenarios=scenarios,
        findings=derive_findings(scenarios),
        statistics=statistics,
        seconds=seconds,
    )
