"""The report's columns: each bit-exact group of pairs as one column, every other pair as its own.

A group is the bit-exact pairs of one numerics profile (the reference, the optimized ASGD's kernels,
torch's path and ``optimized.torch.ASGD``, which claim the same bits) or of one user implementation
(against its reference and torch's path); its cell is a mark for all of them, with each pair's
verdict one click away. Bounded pairs and the pairs a scenario expects to diverge carry figures and
keep a column each. Pairs that ran in no scenario because this machine lacks what they need (torch-cuda
without a CUDA device) get no column: the report folds them into one line that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conformance.results import Comparison, RunResult

__all__ = ["Column", "Layout", "layout"]


@dataclass(frozen=True)
class Column:
    title: str
    pairs: tuple[str, ...]
    grouped: bool
    """A bit-exact group shown as marks (else one pair's figures)."""

    def cell(self, comparisons: dict[str, Comparison]) -> list[Comparison]:
        """This column's comparisons among one scenario's (by pair name)."""
        return [comparisons[name] for name in self.pairs if name in comparisons]


@dataclass(frozen=True)
class Layout:
    columns: list[Column]
    not_run_here: list[str]
    """The pairs folded away: run in no scenario, and not run here in at least one (torch-cuda
    without a CUDA device: skipped by design too where torch's CPU paths are, as with momentum)."""
    not_run_here_reasons: list[str]
    """Why: the reasons of the implementations among them that ran in no scenario, each once."""


def _group_of(pair: dict[str, object]) -> str | None:
    group = pair.get("group")
    return group if isinstance(group, str) and pair.get("policy") == "bit-exact" else None


def layout(result: RunResult) -> Layout:
    """The columns of ``result``'s summary, in the order of its pairs (a group where its first pair is)."""
    comparisons: dict[str, list[Comparison]] = {}
    for comparison in result.comparisons:
        comparisons.setdefault(comparison.pair, []).append(comparison)
    folded = [  # ran nowhere, and not for want of this machine alone (the rest skipped by design)
        name
        for name, seen in comparisons.items()
        if all(c.status == "skipped" for c in seen) and any(c.not_run_here for c in seen)
    ]
    runs = [run for scenario in result.scenarios for run in scenario.implementations]
    never_ran = {run.name for run in runs} - {run.name for run in runs if run.status != "skipped"}
    sides = [side for name in folded for c in comparisons[name][:1] for side in (c.left, c.right)]
    reasons = list(
        dict.fromkeys(
            f"{run.name}: {run.reason}" for run in runs if run.name in never_ran and run.name in sides
        )
    )
    members: dict[tuple[str, bool], list[str]] = {}  # (title, grouped): the pairs, in order
    for pair in result.pairs:
        name, group = str(pair["name"]), _group_of(pair)
        if name not in folded:
            members.setdefault((name, False) if group is None else (group, True), []).append(name)
    columns = [Column(title, tuple(names), grouped) for (title, grouped), names in members.items()]
    return Layout(columns, folded, reasons)


def row_of(comparison: Comparison, columns: Sequence[Column]) -> str:
    """The title of the column ``comparison`` belongs to (its pair's name where none holds it)."""
    return next((c.title for c in columns if comparison.pair in c.pairs), comparison.pair)
