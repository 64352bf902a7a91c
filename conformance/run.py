"""``run_conformance``: a selection of scenarios through the implementations, its results in memory.

The CLI parses its command line and calls this; :func:`conformance.check` calls it for a user's
implementation. Nothing is written here (:mod:`conformance.report` writes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from conformance.environment import describe_environment
from conformance.external import ExternalImplementation
from conformance.findings import derive_findings
from conformance.implementations import IMPLEMENTATIONS, Implementation
from conformance.lockstep import LOCKSTEP, Checking
from conformance.registry import PAIRS
from conformance.results import SCHEMA_VERSION, RunResult, ScenarioResult
from conformance.runner import run_scenarios
from conformance.scenarios import Selection, select_scenarios, selection_named
from conformance.scenarios import shard as select_shard
from conformance.statistics import PolyakJuditsky, polyak_juditsky
from conformance.verdicts import Pair

__all__ = ["run_conformance"]


def run_conformance(
    *,
    full: bool = False,
    only: str | None = None,
    selection: Selection | None = None,
    seed: int = 0,
    seeds: int = 1,
    shard: tuple[int, int] | None = None,
    jobs: int = 1,
    statistics: bool = True,
    implementations: Sequence[Implementation] = IMPLEMENTATIONS,
    pairs: Sequence[Pair] = PAIRS,
    command: str = "asgd-conformance",
    progress: bool = False,
    isolated: bool = False,
    timeout: float | None = None,
    checking: Checking = LOCKSTEP,
) -> RunResult:
    """Run a selection (or one shard of it) and return its results (nothing written). ``isolated``
    (always so with ``jobs > 1``) runs the scenarios in supervised worker processes, where an
    implementation that hangs (``timeout``) or ends its process fails and the run goes on."""
    started = time.perf_counter()
    cells = select_scenarios(full=full, only=only, seed=seed, seeds=seeds, selection=selection)
    index, count = shard or (1, 1)
    chosen = select_shard(cells, index, count)
    scenarios = [scenario for _, scenario in chosen]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scenarios), unit="scenario", file=sys.stderr, leave=False, desc="scenarios")
        if scenarios:
            bar.set_postfix_str(f"running {scenarios[0].name}")

    def done(result: ScenarioResult) -> None:
        assert bar is not None
        bar.update()
        bar.set_postfix_str(f"finished {result.name}" if bar.n < len(scenarios) else "")

    results = run_scenarios(
        scenarios,
        implementations=implementations,
        pairs=pairs,
        cells=[position for position, _ in chosen],
        jobs=jobs,
        isolated=isolated,
        timeout=timeout,
        on_done=done if bar is not None else None,
        checking=checking,
    )
    run_statistics = statistics and not only and index == 1
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
        selection={
            "set": selection_named(full, selection),
            "only": only,
            "seed": seed,
            "seeds": seeds,
            "jobs": jobs,
            "shard": None if shard is None else f"{index}/{count}",
            "cells": len(cells),
            "statistics": statistics,
            "lockstep": checking.lockstep,
            "full_coverage": checking.full_coverage,
        },
        environment=describe_environment(),
        implementations=[
            {
                "name": i.name,
                "description": i.description,
                **(_declared(i) if isinstance(i, ExternalImplementation) else {}),
            }
            for i in implementations
        ],
        pairs=[
            {
                "name": p.name,
                "policy": p.policy.kind,
                "ulp_budget": p.policy.ulp_budget,
                "rationale": p.policy.rationale,
                **({"group": p.group} if p.group else {}),
            }
            for p in pairs
            if {p.left, p.right} <= names
        ],
        scenarios=results,
        findings=derive_findings(results),
        statistics=statistics_result,
        seconds=time.perf_counter() - started,
    )


def _declared(implementation: ExternalImplementation) -> dict[str, str]:
    """What a user's implementation claims, and its style (as declared, or ``"detected"``)."""
    return {"claims": implementation.claims, "style": implementation.style or "detected"}
