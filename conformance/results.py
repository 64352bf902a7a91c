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
    "write_json",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ImplementationRun:
    name: str
    status: str
    """``"ran"`` or ``"skipped"``."""
    reason: str | None = None
    seconds: float | None = None
    final_step: float | None = None
    final_eta: float | None = None
    final_mu: float | None = None


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
    def holds(self) -> bool:
        return not self.failures and (self.statistics is None or self.statistics.holds)

    def summary_line(self) -> str:
        counts = {status: 0 for status in ("holds", "fails", "finding", "skipped")}
        for comparison in self.comparisons:
            counts[comparison.status] += 1
        statistics = (
            "" if self.statistics is None else f"; statistics {'hold' if self.statistics.holds else 'FAIL'}"
        )
        verdict = "PASS" if self.holds else "FAIL"
        return (
            f"{verdict}: {len(self.scenarios)} scenarios, {len(self.comparisons)} comparisons: "
            f"{counts['holds']} hold, {counts['fails']} fail, {counts['finding']} expected divergence, "
            f"{counts['skipped']} skipped{statistics} "
            f"(whole run {self.seconds:.1f} s)"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_json(result: RunResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n")
