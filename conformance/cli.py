"""``asgd-conformance``: run the scenarios, write the report, exit 0 only if every verdict holds."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from conformance.environment import describe_environment
from conformance.findings import derive_findings
from conformance.implementations import IMPLEMENTATIONS, Implementation
from conformance.report import write_report
from conformance.results import SCHEMA_VERSION, RunResult
from conformance.runner import run_scenarios
from conformance.scenarios import select_scenarios
from conformance.statistics import PolyakJuditsky, polyak_juditsky
from conformance.verdicts import PAIRS

__all__ = ["main", "run_conformance"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgd-conformance",
        description="Compare the reference, the optimized ASGD and torch.optim.ASGD step by step; "
        "write an HTML report and results.json.",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--quick", dest="full", action="store_false", help="the quick set (default, under a minute)"
    )
    chosen.add_argument("--full", dest="full", action="store_true", help="every scenario, longer runs")
    parser.add_argument(
        "--out", type=Path, default=None, help="report directory (default: reports/<UTC time>)"
    )
    parser.add_argument(
        "--only",
        metavar="PATTERN",
        default=None,
        help="scenarios whose name matches this glob or contains it",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="offset added to every scenario's seed (default 0)"
    )
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: up to 2)"
    )
    parser.add_argument(
        "--no-statistics", dest="statistics", action="store_false", help="skip the Polyak–Juditsky check"
    )
    return parser


def run_conformance(
    *,
    full: bool = False,
    only: str | None = None,
    seed: int = 0,
    jobs: int = 1,
    statistics: bool = True,
    implementations: Sequence[Implementation] = IMPLEMENTATIONS,
    command: str = "asgd-conformance",
    progress: bool = False,
) -> RunResult:
    """Run a selection and return its results (nothing written)."""
    started = time.perf_counter()
    scenarios = select_scenarios(full=full, only=only, seed=seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scenarios), unit="scenario", file=sys.stderr, leave=False)
    results = run_scenarios(
        scenarios,
        implementations=implementations,
        jobs=jobs,
        on_done=(lambda _: bar.update()) if bar else None,
    )
    if bar is not None:
        bar.close()
    names = {implementation.name for implementation in implementations}
    return RunResult(
        schema_version=SCHEMA_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
        selection={"set": "full" if full else "quick", "only": only, "seed": seed, "jobs": jobs},
        environment=describe_environment(),
        implementations=[{"name": i.name, "description": i.description} for i in implementations],
        pairs=[
            {
                "name": p.name,
                "policy": p.policy.kind,
                "ulp_budget": p.policy.ulp_budget,
                "rationale": p.policy.rationale,
            }
            for p in PAIRS
            if {p.left, p.right} <= names
        ],
        scenarios=results,
        findings=derive_findings(results),
        statistics=polyak_juditsky(PolyakJuditsky(seed=seed)) if statistics and not only else None,
        seconds=time.perf_counter() - started,
    )


def main(
    argv: Sequence[str] | None = None, implementations: Sequence[Implementation] = IMPLEMENTATIONS
) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.jobs < 1:
        _parser().error(f"--jobs must be at least 1, got {arguments.jobs}")
    out = arguments.out or Path("reports") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    command = "asgd-conformance " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    result = run_conformance(
        full=arguments.full,
        only=arguments.only,
        seed=arguments.seed,
        jobs=arguments.jobs,
        statistics=arguments.statistics,
        implementations=implementations,
        command=command.strip(),
        progress=interactive,
    )
    page = write_report(result, out)
    print(f"asgd-conformance: {result.summary_line()}; report: {page}")
    for failure in result.failures:
        step = f" from step {failure.first_divergence}" if failure.first_divergence else ""
        print(f"  FAIL {failure.scenario}: {failure.pair}{step}: {failure.reason}")
    return 0 if result.holds else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
