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

SCHEMA_VERSION = 5
"""5 (2026-12-06): a comparison's ``not_run_here``, a scenario's ``compilation_seconds``, a pair's
``group`` (the report's column).
4 (2026-12-06): each comparison's ``mode`` (lockstep or trajectory) and coverage (``checked_values``
of ``stepped_values``), the selection's ``lockstep`` and ``full_coverage``.
3 (2026-12-06): the numpy profile's ids (``reference-numpy``, ``optimized-numba-numpy``, ...; they
ended in ``-fast``) and a user implementation's ``style``. Files of another version are refused."""


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
    first_divergence_values: list[str] | None = None
    """... and the left's and the right's value there, each in decimal and its bits in hex."""
    mode: str = "trajectory"
    """``"lockstep"``: the reference computed each step from the implementation's state before it
    (:mod:`conformance.lockstep`); ``"trajectory"``: the two ran side by side from the same start."""
    checked_values: int | None = None
    """Values (summed over the steps compared) at which the verdict compared the two sides ..."""
    stepped_values: int | None = None
    """... of the values the tensors held over those steps (one without a gradient included: it must
    not change); fewer are checked where a lockstep reference sampled large tensors."""

    diagnosis: str | None = None
    """For a failing bit-exact pair against the reference: the near miss of the claimed profile that
    reproduces the implementation, or the closest one (:mod:`conformance.diagnosis`)."""
    not_run_here: bool = False
    """Skipped because this machine lacks what a side needs (a CUDA device, numba, a C compiler),
    not by design."""

    def __str__(self) -> str:
        """One line: the verdict, the scenario, the pair, where it first diverged and why."""
        step = f" from step {self.first_divergence}" if self.first_divergence else ""
        reason = self.reason if len(self.reason) <= 500 else self.reason[:499] + "…"
        verdict = {"fails": "FAIL", "holds": "HOLDS", "finding": "FINDING", "skipped": "SKIPPED"}[self.status]
        return f"{verdict} {self.scenario}: {self.pair}{step}: {reason}"


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
    compilation_seconds: float = 0.0
    """Seconds spent compiling or loading compiled code (numba's kernels, once per process and
    kernel) while the scenario ran: left out of each implementation's ``seconds``."""


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

    def setup(self, scenario: str) -> str:
        """A scenario's dtype and hyperparameters, as a failure line ends: ``float32, lr=0.01, t0=20``."""
        found = next((s for s in self.scenarios if s.name == scenario), None)
        if found is None:
            return ""
        chosen = ", ".join(f"{name}={value!r}" for name, value in found.hyperparameters.items())
        return f"{found.dtype}{', ' + chosen if chosen else ''}"

    def failure_lines(self) -> list[str]:
        """One line per failure: the comparison, then the scenario's dtype and hyperparameters."""
        return [f"{failure} [{self.setup(failure.scenario)}]" for failure in self.failures]

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

    def summary_line(self, waited: float | None = None) -> str:
        """One line: the verdict, the counts, and the whole run's wall time (``waited``, where the
        caller knows how long the user waited, else the run's own ``seconds``)."""
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
        sampled = sum(
            1
            for c in self.comparisons
            if c.status in ("holds", "fails") and (c.checked_values or 0) < (c.stepped_values or 0)
        )
        if sampled:
            statistics += f"; {sampled} on sampled values"
        not_here = sum(1 for c in self.comparisons if c.status == "skipped" and c.not_run_here)
        skipped = f"{counts['skipped'] - not_here} skipped by design"
        if not_here:
            skipped += f", {not_here} not run here"
        return (
            f"{verdict}: {_counted(len(self.scenarios), 'scenario')}, "
            f"{_counted(len(self.comparisons), 'comparison')}: "
            f"{counts['holds']} hold, {counts['fails']} fail, {counts['finding']} expected divergence, "
            f"{skipped}{statistics} "
            f"(whole run {self.seconds if waited is None else waited:.1f} s)"
        )

    def brief(self, most: int = 1000) -> str:
        """The summary line and as many failures, one line each, as fit in ``most`` characters."""
        lines = [self.summary_line()]
        failures = self.failure_lines()
        for shown, failure in enumerate(failures):
            line, more = f"  {failure}", f"  ... and {len(failures) - shown} more failures"
            if len("\n".join([*lines, line])) + 1 + len(more) > most:
                lines.append(more)
                break
            lines.append(line)
        return "\n".join(lines)[:most]

    def __str__(self) -> str:
        return self.brief()

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, *, max_steps: int | None = None, max_depth: int | None = None) -> RunResult:
        """The result a ``results.json`` holds (as :meth:`to_json` wrote it), or ``ValueError`` naming
        the first field that is not what this version writes: every value is checked before anything
        is built (see :func:`conformance.results_check.check_json`)."""
        from conformance.results_check import check_json  # it knows these classes' fields

        check_json(data, max_steps=max_steps, max_depth=max_depth)
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


def read_json(
    path: Path,
    *,
    max_bytes: int | None = None,
    max_steps: int | None = None,
    max_depth: int | None = None,
) -> RunResult:
    """The result in a ``results.json``, or ``ValueError`` naming the file and what is wrong with it.

    The bounds, where given, are checked before what they bound is read: ``max_bytes`` before the
    file is parsed, ``max_depth`` (how deep arrays and objects nest; the top-level object is 1)
    while it is, and ``max_steps`` (a scenario's steps) before any object is built.
    """
    try:
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise ValueError(f"{path} holds {size:,} bytes, more than {max_bytes:,}")
        with path.open("rb") as file:  # one byte more than allowed at most, whatever stat said
            raw = file.read(-1 if max_bytes is None else max_bytes + 1)
    except OSError as error:
        raise ValueError(f"{path} cannot be read ({error.strerror or error})") from error
    if max_bytes is not None and len(raw) > max_bytes:
        raise ValueError(f"{path} holds more than {max_bytes:,} bytes")
    try:
        text = raw.decode("utf-8")
        del raw  # the bytes, the text and then the objects: at most two of them at a time
        data = json.loads(text)
        del text
    except RecursionError as error:  # json's parser recurses once per level
        deeper = "too deep to parse" if max_depth is None else f"deeper than {max_depth} levels"
        raise ValueError(f"{path}: its arrays and objects nest {deeper}") from error
    except ValueError as error:  # not UTF-8, not JSON, or an integer of more digits than Python reads
        raise ValueError(f"{path} is not JSON ({error})") from error
    try:
        return RunResult.from_json(data, max_steps=max_steps, max_depth=max_depth)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def write_json(result: RunResult, path: Path) -> None:
    """Write ``result`` to ``path`` as :meth:`RunResult.to_json` has it, streamed: neither a copy of
    the data nor the whole text is held in memory at once."""
    with path.open("w", encoding="utf-8") as file:
        json.dump(result, file, indent=1, allow_nan=False, default=_fields)
        file.write("\n")


def _fields(value: object) -> dict[str, Any]:
    """A dataclass's fields by name, for json to write: the values themselves, where
    ``dataclasses.asdict`` copies every list and dict."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"{type(value).__name__} is not JSON")
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
