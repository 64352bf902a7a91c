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

from conformance.environment import describe_environment, torch_warning
from conformance.findings import derive_findings
from conformance.implementations import IMPLEMENTATIONS, Implementation
from conformance.report import unusable_report_directory, write_report
from conformance.results import SCHEMA_VERSION, RunResult, ScenarioResult
from conformance.runner import run_scenarios
from conformance.scenarios import select_scenarios
from conformance.statistics import PolyakJuditsky, polyak_juditsky
from conformance.verdicts import PAIRS

__all__ = ["main", "run_conformance"]


EXIT_HOLDS, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_JOBS = 4 * (os.cpu_count() or 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgd-conformance",
        description="Compare the reference, the optimized ASGD and torch.optim.ASGD step by step; "
        "write an HTML report and results.json.",
        epilog="Exit status: 0 every verdict holds, 1 a verdict failed, 2 a usage or environment "
        "error (nothing was run), 130 interrupted (no partial report is left).",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--quick", dest="full", action="store_false", help="the quick set (the default)")
    chosen.add_argument("--full", dest="full", action="store_true", help="every scenario, longer runs")
    parser.set_defaults(full=False)
    parser.add_argument(
        "--list", action="store_true", help="print the names of the selected scenarios and exit"
    )
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

        bar = tqdm(total=len(scenarios), unit="scenario", file=sys.stderr, leave=False, desc="scenarios")
        if scenarios:
            bar.set_postfix_str(f"running {scenarios[0].name}")

    def done(result: ScenarioResult) -> None:
        assert bar is not None
        bar.update()
        following = scenarios[bar.n] if bar.n < len(scenarios) else None
        bar.set_postfix_str(f"running {following.name}" if following else "")

    results = run_scenarios(
        scenarios, implementations=implementations, jobs=jobs, on_done=done if bar is not None else None
    )
    run_statistics = statistics and not only
    if bar is not None and run_statistics:
        bar.set_description_str(f"Polyak–Juditsky statistics ({PolyakJuditsky(seed=seed).runs} runs)")
        bar.set_postfix_str("")
    statistics_result = polyak_juditsky(PolyakJuditsky(seed=seed)) if run_statistics else None
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
        statistics=statistics_result,
        seconds=time.perf_counter() - started,
    )


def main(
    argv: Sequence[str] | None = None, implementations: Sequence[Implementation] = IMPLEMENTATIONS
) -> int:
    """The CLI; returns the exit status (see the parser's epilog)."""
    parser = _parser()
    arguments = parser.parse_args(argv)  # exits with 2 on a malformed command line
    if not 1 <= arguments.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be between 1 and {MAX_JOBS} (4 per CPU), got {arguments.jobs}")
    if arguments.seed < 0:
        parser.error(f"--seed must be >= 0, got {arguments.seed}")
    scenarios = select_scenarios(full=arguments.full, only=arguments.only, seed=arguments.seed)
    if arguments.list:
        for scenario in scenarios:
            print(scenario.name)
        return EXIT_HOLDS
    chosen = "full" if arguments.full else "quick"
    if not scenarios:
        parser.error(
            f"no scenario of the {chosen} set matches --only {arguments.only!r}; "
            f"`asgd-conformance --list{' --full' if arguments.full else ''}` prints their names"
        )
    out = arguments.out or Path("reports") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    problem = unusable_report_directory(out.resolve())
    if problem is not None:
        parser.error(f"--out: {problem}")
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    command = "asgd-conformance " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
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
    except KeyboardInterrupt:
        print("asgd-conformance: interrupted; no report was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    warning = torch_warning(result.environment)
    if warning is not None:
        print(f"asgd-conformance: warning: {warning}", file=sys.stderr)
    print(f"asgd-conformance: {result.summary_line()}; report: {page}")
    for failure in result.failures:
        step = f" from step {failure.first_divergence}" if failure.first_divergence else ""
        print(f"  FAIL {failure.scenario}: {failure.pair}{step}: {failure.reason}")
    return EXIT_HOLDS if result.holds else EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
