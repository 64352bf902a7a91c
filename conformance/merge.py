"""Combine the shards of one run into the whole, as ``coverage combine`` does for coverage data.

Shards of a run (``--shard K/N``) each hold every N-th scenario × seed cell with its position in the
whole selection. Their union, sorted by position, is the unsharded run's list of scenarios; the
findings are derived again from it, and the statistics come from shard 1, which runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from conformance.findings import derive_findings
from conformance.results import SCHEMA_VERSION, RunResult, read_json

__all__ = ["merge_results"]

_SAME_SELECTION = ("set", "only", "seed", "seeds", "cells", "statistics")


def _load(directory: Path) -> RunResult:
    path = directory / "results.json"
    if not path.is_file():
        raise ValueError(f"{directory} holds no results.json")
    try:
        result = read_json(path)
        if not isinstance(result.selection, dict) or not all(
            isinstance(s.cell, int) for s in result.scenarios
        ):
            raise TypeError("its selection or cells are malformed")
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not a results.json of this version ({error})") from error
    if result.schema_version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema version {result.schema_version}, this merge reads {SCHEMA_VERSION}"
        )
    return result


def merge_results(directories: Sequence[Path], *, command: str = "asgd-conformance merge") -> RunResult:
    """The whole run the shard reports in ``directories`` make up, or ``ValueError`` saying why not."""
    shards = [_load(directory) for directory in directories]
    first = shards[0].selection
    count = int(str(first.get("shard") or "1/1").split("/")[1])
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
        index, _, of = str(selection.get("shard") or "1/1").partition("/")
        if int(of) != count:
            raise ValueError(f"{directory} is shard {index}/{of}, the others are of {count}")
        if int(index) in seen:
            raise ValueError(f"shard {index}/{count} given twice: {seen[int(index)]} and {directory}")
        seen[int(index)] = directory
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise ValueError(f"shards {', '.join(f'{k}/{count}' for k in missing)} are missing")
    scenarios = sorted((s for result in shards for s in result.scenarios), key=lambda s: s.cell)
    if len({s.cell for s in scenarios}) != len(scenarios) or len(scenarios) != first.get("cells"):
        raise ValueError(f"the shards hold {len(scenarios)} cells, the selection {first.get('cells')}")
    statistics = next((r.statistics for r in shards if r.statistics is not None), None)
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
        seconds=sum(r.seconds for r in shards),
    )
