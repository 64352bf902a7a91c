"""``asgd-conformance``: run the scenarios, write the report, exit 0 only if every verdict holds."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from conformance.clock import waited
from conformance.entry import EXIT_INTERRUPTED, EXIT_TERMINATED
from conformance.environment import torch_warning
from conformance.external import CLAIMS, STYLES, ExternalImplementation, pairs_for, split_spec
from conformance.implementations import IMPLEMENTATIONS, Implementation
from conformance.lockstep import Checking
from conformance.merge import bounds_text, merge_results
from conformance.registry import PAIRS
from conformance.report import InterruptedAfterWriting, unusable_report_directory, write_report
from conformance.results import RunResult
from conformance.run import run_conformance
from conformance.sampling import WHOLE_BELOW
from conformance.scenarios import Selection, select_scenarios
from conformance.scenarios import shard as select_shard
from conformance.workers import DEFAULT_TIMEOUT
from reference.numerics import DEPRECATED_NAMES

__all__ = ["main", "merge_main"]


EXIT_HOLDS, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_JOBS = 4 * (os.cpu_count() or 1)


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviations and suggests the option a typo meant."""

    def __init__(self, **options: Any) -> None:
        super().__init__(allow_abbrev=False, **options)

    def error(self, message: str) -> NoReturn:
        head, marker, unknown = message.partition("unrecognized arguments: ")
        if marker:
            message = head + marker + " ".join(self._with_suggestion(typed) for typed in unknown.split())
        super().error(message)

    def _with_suggestion(self, typed: str) -> str:
        """An unknown argument, with the option it was probably meant to be."""
        if not typed.startswith("-"):
            return typed
        close = difflib.get_close_matches(typed.split("=")[0], list(self._option_string_actions), n=1)
        return f"{typed} (did you mean {close[0]}?)" if close else typed


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asgd-conformance",
        description="Compare the reference, the optimized ASGD and torch.optim.ASGD step by step; "
        "write an HTML report and results.json.",
        epilog="Exit status: 0 every verdict holds, 1 a verdict failed (a hung or crashed "
        "implementation included), 2 a usage or environment error (nothing was run), 130 "
        "interrupted by Ctrl-C, 143 by SIGTERM (no partial report is left; the workers end too).",
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--quick", dest="full", action="store_false", help="the quick set (the default)")
    chosen.add_argument("--full", dest="full", action="store_true", help="every scenario, longer runs")
    chosen.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: one scenario for each line of the algorithm (for a unit test's loop)",
    )
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
        "--seeds", type=int, default=1, help="run every scenario with this many seeds (default 1)"
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        default=None,
        help="run the K-th of N deterministic shares of the scenario × seed cells (merge them with "
        "`asgd-conformance merge`); the statistics run in shard 1",
    )
    parser.add_argument(
        "--implementation",
        metavar="MODULE:FACTORY",
        action="append",
        default=[],
        help="your ASGD, joined to the matrix (repeatable); see docs/own-asgd.md for the protocol",
    )
    parser.add_argument(
        "--claims",
        choices=(*CLAIMS, *DEPRECATED_NAMES),
        action="append",
        default=[],
        help="what each --implementation claims, in order: the bits of the torch, torch-foreach or "
        "numpy profile, or none (bounded against torch); one value applies to all (default torch)",
    )
    parser.add_argument(
        "--style",
        choices=STYLES,
        action="append",
        default=[],
        help="how each --implementation takes its parameters, in order: numpy (arrays, step(grads), "
        "averages()) or torch (tensors, a torch.optim.Optimizer); one value applies to all "
        "(default: told from what the factory builds)",
    )
    parser.add_argument(
        "--no-statistics", dest="statistics", action="store_false", help="skip the Polyak–Juditsky check"
    )
    parser.add_argument(
        "--full-coverage",
        action="store_true",
        help="the reference computes every value of every tensor at every step (by default it "
        f"computes a seeded sample and every edge of each tensor of {WHOLE_BELOW:,} values or more)",
    )
    parser.add_argument(
        "--trajectory",
        action="store_true",
        help="the reference runs its own trajectory beside each implementation, every value at "
        "every step, instead of judging each step from the implementation's state (lockstep)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT,
        help="the longest one implementation may take on one scenario; one that takes longer is "
        f"failed as hung and the run goes on (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` as ``(K, N)`` with 1 ≤ K ≤ N, or ``ValueError`` saying what is wrong."""
    if text is None:
        return None
    index, slash, count = text.partition("/")
    if not slash or not index.isdigit() or not count.isdigit() or not 1 <= int(index) <= int(count):
        raise ValueError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(index), int(count)


def _per_implementation(option: str, values: Sequence[str], specs: Sequence[str], default: Any) -> list[Any]:
    """One ``option`` value per ``--implementation``: one given for all, one each, or the default."""
    if len(values) > 1 and len(values) != len(specs):
        raise ValueError(
            f"give one {option} for all implementations or one per --implementation "
            f"({len(specs)} implementations, {len(values)} {option})"
        )
    if values and not specs:
        raise ValueError(f"{option} needs an --implementation")
    return list(values) * len(specs) if len(values) == 1 else list(values) or [default] * len(specs)


def external_implementations(
    specs: Sequence[str], claims: Sequence[str], styles: Sequence[str] = ()
) -> list[ExternalImplementation]:
    """One implementation per ``--implementation``, with its ``--claims`` and ``--style``."""
    chosen_claims = _per_implementation("--claims", claims, specs, "torch")
    for old in sorted(set(chosen_claims) & DEPRECATED_NAMES.keys()):
        print(f"asgd-conformance: warning: --claims {old} is now {DEPRECATED_NAMES[old]}", file=sys.stderr)
    chosen_claims = [DEPRECATED_NAMES.get(claim, claim) for claim in chosen_claims]
    chosen_styles = _per_implementation("--style", styles, specs, None)
    for spec in specs:
        split_spec(spec, "--implementation")
    if len(set(specs)) != len(specs):
        raise ValueError("each --implementation may be given once")
    return [
        ExternalImplementation(spec, claim, style)
        for spec, claim, style in zip(specs, chosen_claims, chosen_styles, strict=True)
    ]


def print_outcome(result: RunResult, page: Path, limit: int = 20) -> int:
    """The summary line and the failures (at most ``limit``); returns the exit status."""
    warning = torch_warning(result.environment)
    if warning is not None:
        print(f"asgd-conformance: warning: {warning}", file=sys.stderr)
    print(f"asgd-conformance: {result.summary_line(waited())}; report: {page}")
    failures = result.failures
    for line in result.failure_lines()[:limit]:
        print(f"  {line}")
    if len(failures) > limit:
        print(f"  ... and {len(failures) - limit} more failures (see the report)")
    return EXIT_HOLDS if result.holds else EXIT_FAILED


def _default_out() -> Path:
    return Path("reports") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def main(
    argv: Sequence[str] | None = None, implementations: Sequence[Implementation] = IMPLEMENTATIONS
) -> int:
    """The CLI; returns the exit status (see the parser's epilog)."""
    arguments_list = list(sys.argv[1:] if argv is None else argv)
    if arguments_list[:1] == ["merge"]:
        return merge_main(arguments_list[1:])
    parser = _parser()
    arguments = parser.parse_args(arguments_list)  # exits with 2 on a malformed command line
    if arguments.trajectory and arguments.full_coverage:
        parser.error("--full-coverage is for lockstep checks; --trajectory computes every value anyway")
    if not 1 <= arguments.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be between 1 and {MAX_JOBS} (4 per CPU), got {arguments.jobs}")
    if arguments.seed < 0:
        parser.error(f"--seed must be >= 0, got {arguments.seed}")
    if arguments.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {arguments.seeds}")
    if not (math.isfinite(arguments.timeout) and arguments.timeout > 0):
        parser.error(f"--timeout must be a number of seconds > 0, got {arguments.timeout:g}")
    try:
        shard = parse_shard(arguments.shard)
        external = external_implementations(arguments.implementation, arguments.claims, arguments.style)
    except ValueError as error:
        parser.error(str(error))
    for implementation in external:  # imported here, before anything runs (the workers inherit it)
        try:
            implementation.factory()
        except (Exception, SystemExit) as error:
            parser.error(f"--implementation {implementation.name}: {type(error).__name__}: {error}")
    chosen: Selection = "smoke" if arguments.smoke else "full" if arguments.full else "quick"
    scenarios = select_scenarios(
        only=arguments.only, seed=arguments.seed, seeds=arguments.seeds, selection=chosen
    )
    if arguments.list:
        for _position, scenario in select_shard(scenarios, *(shard or (1, 1))):
            print(scenario.name)
        return EXIT_HOLDS
    if not scenarios:
        names = [scenario.name for scenario in select_scenarios(full=True)]
        close = difflib.get_close_matches(arguments.only or "", names, n=3)
        meant = f" (did you mean {' or '.join(close)}?)" if close else ""
        parser.error(
            f"no scenario of the {chosen} set matches --only {arguments.only!r}{meant}; "
            f"`asgd-conformance --list{'' if chosen == 'quick' else ' --' + chosen}` prints their names"
        )
    out = arguments.out or _default_out()
    problem = unusable_report_directory(out.resolve())
    if problem is not None:
        parser.error(f"--out: {problem}")
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    command = "asgd-conformance " + shlex.join(arguments_list)
    pairs = [*PAIRS, *(pair for implementation in external for pair in pairs_for(implementation))]
    with _sigterm_as_ctrl_c() as terminated:
        try:
            result = run_conformance(
                only=arguments.only,
                selection=chosen,
                seed=arguments.seed,
                seeds=arguments.seeds,
                shard=shard,
                jobs=arguments.jobs,
                statistics=arguments.statistics,
                implementations=[*implementations, *external],
                pairs=pairs,
                command=command.strip(),
                progress=interactive,
                isolated=True,
                timeout=arguments.timeout,
                checking=Checking(lockstep=not arguments.trajectory, full_coverage=arguments.full_coverage),
            )
            result = dataclasses.replace(result, seconds=waited())  # the start and the imports too
        except KeyboardInterrupt:
            return _interrupted(terminated, "no report was written")
        return _write_and_summarize(result, out, terminated)


def _write_and_summarize(result: RunResult, out: Path, terminated: list[int]) -> int:
    """Write the report and print the outcome (inside :func:`_sigterm_as_ctrl_c`); the exit status,
    with what became of the report if a Ctrl-C or SIGTERM came meanwhile."""
    try:
        page = write_report(result, out)
    except InterruptedAfterWriting as interrupt:
        return _interrupted(terminated, f"the report was written: {interrupt.page}")
    except KeyboardInterrupt:
        return _interrupted(terminated, "no report was written")
    if terminated:  # held back where SIGINT is ignored (nohup, a background job): not lost
        return _interrupted(terminated, f"the report was written: {page}")
    try:
        return print_outcome(result, page)
    except KeyboardInterrupt:
        return _interrupted(terminated, f"the report was written: {page}")


def _interrupted(terminated: list[int], what: str) -> int:
    """Say that the run was interrupted, and what became of the report; the exit status."""
    cause = "terminated (SIGTERM)" if terminated else "interrupted"
    print(f"asgd-conformance: {cause}; {what}", file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[list[int]]:
    """Inside the block a SIGTERM (a CI runner's cancel, ``kill``) ends the run as Ctrl-C does: it
    goes to SIGINT's handler, so that it is held back where a Ctrl-C is, and its
    ``KeyboardInterrupt`` stops the workers. The list yielded records the SIGTERMs received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def as_ctrl_c(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored or not Python's: a SIGTERM still ends the run
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def merge_main(argv: Sequence[str]) -> int:
    """``asgd-conformance merge DIR... --out DIR``: one report from the shards' ``results.json``."""
    parser = _Parser(
        prog="asgd-conformance merge",
        description="Combine the results.json of the shards of one run into one report.",
        epilog="Exit status: 0 every verdict of the whole holds, 1 one fails, 2 the shards do not "
        "make one whole run (missing, repeated or from different selections), or one is malformed or "
        f"beyond a bound (nothing is written). {bounds_text()}",
    )
    parser.add_argument("directories", nargs="+", type=Path, metavar="DIR", help="shard report directories")
    parser.add_argument(
        "--out", type=Path, default=None, help="report directory (default: reports/<UTC time>)"
    )
    arguments = parser.parse_args(argv)
    out = arguments.out or _default_out()
    problem = unusable_report_directory(out.resolve())
    if problem is not None:
        parser.error(f"--out: {problem}")
    try:
        result = merge_results(
            arguments.directories, command="asgd-conformance merge " + shlex.join(list(argv))
        )
    except ValueError as error:
        parser.error(str(error))
    with _sigterm_as_ctrl_c() as terminated:
        return _write_and_summarize(result, out, terminated)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
