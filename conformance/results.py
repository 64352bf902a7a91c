"""The data of a conformance run: plain dataclasses that serialize to ``results.json``.

Everything the report shows is here; rendering (``conformance.report``) only reads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "Comparison",
    "Finding",
    "ImplementationRun",
    "RunResult",
    "ScenarioResult",
    "StatisticsResult",
    "read_json",
    "write_json",
]

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ImplementationRun:
    name: str
    status: str
    """``"ran"``, ``"skipped"`` (with the reason it declined) or ``"failed"`` (with what went wrong)."""
    reason: str | None = None
    seconds: float | None = None
    final_step: float | None = None
    final_eta: float | None = None
    final_mu: float | None = None
    evaluation: dict[str, float] = field(default_factory=dict)
    """The workload's figures of merit at the last iterate and at the averages (e.g. held-out accuracy)."""


@dataclass(frozen=True)
class Comparison:
    scenario: str
    pair: str
    left: str
    right: str
    policy: str
    status: str
    """``"holds"``, ``"fails"``, ``"finding"`` (reported, not judged) or ``"skipped"``."""
    reason: str
    ulp_budget: int | None = None
    max_ulp: int | None = None
    max_ulp_parameters: int | None = None
    max_ulp_averages: int | None = None
    first_divergence: int | None = None
    differing_scalar_steps: int | None = None
    nan_mismatches: int | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    max_normwise_ulp: float | None = None
    ulp_per_step_parameters: list[int] = field(default_factory=list)
    ulp_per_step_averages: list[int] = field(default_factory=list)
    normwise_ulp_per_step_parameters: list[float] = field(default_factory=list)
    normwise_ulp_per_step_averages: list[float] = field(default_factory=list)
    differing_per_step: list[int] = field(default_factory=list)
    """Real scalars whose bits differ at each step, parameters and averages together."""
    first_divergence_quantity: str | None = None
    """Where bits first differ: ``"parameters"`` or ``"averages"``, ..."""
    first_divergence_tensor: str | None = None
    """... the tensor's name ..."""
    first_divergence_element: str | None = None
    """... and the element's index, e.g. ``[12, 3]`` (``.real``/``.imag`` for complex tensors)."""


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    problem: str
    dtype: str
    hyperparameters: dict[str, Any]
    steps: int
    seed: int
    size: int
    start_step: int
    purpose: str
    implementations: list[ImplementationRun]
    comparisons: list[Comparison]
    tensors: list[str] = field(default_factory=list)
    """The tensors' names (shapes included for the many-tensor workloads)."""
    groups: list[dict[str, Any]] = field(default_factory=list)
    """Param groups beyond the scenario's hyperparameters: ``{"tensors": n, **overrides}``."""
    lr_changes: list[list[float]] = field(default_factory=list)
    """``[step, factor]``: before that step each group's lr became its initial lr times factor."""
    checkpoint_at: int = 0
    checkpoint_via: str = "state_dict"
    cell: int = 0
    """This scenario × seed cell's position in the whole selection (shards keep it; merge sorts by it)."""


@dataclass(frozen=True)
class Finding:
    """Something measured that is not a failure: a documented difference between implementations."""

    key: str
    title: str
    detail: str
    scenarios: list[str]


@dataclass(frozen=True)
class StatisticsResult:
    """The Polyak–Juditsky check on noisy least squares (see ``conformance.statistics``)."""

    holds: bool
    summary: str
    details: dict[str, Any]


@dataclass(frozen=True)
class RunResult:
    schema_version: int
    created: str
    command: str
    selection: dict[str, Any]
    environment: dict[str, Any]
    implementations: list[dict[str, str]]
    pairs: list[dict[str, Any]]
    scenarios: list[ScenarioResult]
    findings: list[Finding]
    statistics: StatisticsResult | None
    seconds: float

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for s in self.scenarios for c in s.comparisons]

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.status == "fails"]

    @property
    def judged(self) -> int:
        """Comparisons that ran (holding, failing or an expected divergence)."""
        return sum(1 for c in self.comparisons if c.status != "skipped")

    @property
    def unjudged(self) -> list[str]:
        """Implementations brought to be checked (they carry ``claims``) that no comparison judged."""
        judged = {name for c in self.comparisons if c.status != "skipped" for name in (c.left, c.right)}
        return [i["name"] for i in self.implementations if "claims" in i and i["name"] not in judged]

    @property
    def holds(self) -> bool:
        """Every verdict holds; and in a whole run (not one shard of it), at least one comparison was
        judged, and every implementation brought to be checked was judged somewhere."""
        whole = not self.selection.get("shard")
        vacuous = whole and (self.judged == 0 or bool(self.unjudged))
        return not self.failures and not vacuous and (self.statistics is None or self.statistics.holds)

    def summary_line(self) -> str:
        counts = {status: 0 for status in ("holds", "fails", "finding", "skipped")}
        for comparison in self.comparisons:
            counts[comparison.status] += 1
        statistics = (
            "" if self.statistics is None else f"; statistics {'hold' if self.statistics.holds else 'FAIL'}"
        )
        verdict = "PASS" if self.holds else "FAIL"
        failed = sum(1 for s in self.scenarios for run in s.implementations if run.status == "failed")
        if failed:
            statistics += f"; {failed} implementation run{'s' if failed > 1 else ''} failed"
        if self.unjudged and not self.selection.get("shard"):
            statistics += f"; judged in no scenario: {', '.join(self.unjudged)}"
        return (
            f"{verdict}: {len(self.scenarios)} scenarios, {len(self.comparisons)} comparisons: "
            f"{counts['holds']} hold, {counts['fails']} fail, {counts['finding']} expected divergence, "
            f"{counts['skipped']} skipped{statistics} "
            f"(whole run {self.seconds:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        """The result a ``results.json`` holds (as :meth:`to_json` wrote it)."""
        scenarios = [
            ScenarioResult(
                **{
                    **scenario,
                    "implementations": [ImplementationRun(**run) for run in scenario["implementations"]],
                    "comparisons": [Comparison(**comparison) for comparison in scenario["comparisons"]],
                }
            )
            for scenario in data["scenarios"]
        ]
        statistics = data["statistics"]
        return cls(
            **{
                **data,
                "scenarios": scenarios,
                "findings": [Finding(**finding) for finding in data["findings"]],
                "statistics": None if statistics is None else StatisticsResult(**statistics),
            }
        )


def read_json(path: Path) -> RunResult:
    """The result in a ``results.json``."""
    return RunResult.from_json(json.loads(path.read_text(encoding="utf-8")))


def write_json(result: RunResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n")
