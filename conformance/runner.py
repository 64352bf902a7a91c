"""Run scenarios through the implementations and compare the pairs: scenarios → runs → verdicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from conformance.implementations import IMPLEMENTATIONS, Implementation, Trajectory
from conformance.metrics import compare_trajectories
from conformance.results import Comparison, ImplementationRun, ScenarioResult
from conformance.scenarios import Scenario
from conformance.verdicts import PAIRS, Pair, judge, policy_for

__all__ = ["run_scenario", "run_scenarios"]


def _compare(
    scenario: Scenario, pair: Pair, trajectories: dict[str, Trajectory], skipped: dict[str, str]
) -> Comparison:
    policy = policy_for(pair, scenario.expected_divergence)
    base: dict[str, Any] = {
        "scenario": scenario.name,
        "pair": pair.name,
        "left": pair.left,
        "right": pair.right,
        "policy": policy.kind,
        "ulp_budget": None if policy.ulp_budget is None else policy.ulp_budget[scenario.dtype],
    }
    missing = [name for name in (pair.left, pair.right) if name not in trajectories]
    if missing:
        reasons = "; ".join(f"{name}: {skipped.get(name, 'not run')}" for name in missing)
        return Comparison(**base, status="skipped", reason=reasons)
    metrics = compare_trajectories(trajectories[pair.left], trajectories[pair.right])
    verdict = judge(policy, metrics, scenario.dtype)
    return Comparison(
        **base,
        status=("finding" if policy.kind == "finding" else "holds") if verdict.holds else "fails",
        reason=verdict.reason,
        max_ulp=metrics.max_ulp,
        max_ulp_parameters=metrics.parameters.max_ulp,
        max_ulp_averages=metrics.averages.max_ulp,
        first_divergence=metrics.first_divergence,
        differing_scalar_steps=metrics.differing_bits,
        nan_mismatches=metrics.nan_mismatches,
        max_abs_error=max(metrics.parameters.max_abs, metrics.averages.max_abs),
        max_rel_error=max(metrics.parameters.max_rel, metrics.averages.max_rel),
        max_normwise_ulp=metrics.max_normwise_ulp,
        ulp_per_step_parameters=metrics.parameters.max_ulp_per_step,
        ulp_per_step_averages=metrics.averages.max_ulp_per_step,
        normwise_ulp_per_step_parameters=metrics.parameters.normwise_ulp_per_step,
        normwise_ulp_per_step_averages=metrics.averages.normwise_ulp_per_step,
        differing_per_step=[
            a + b
            for a, b in zip(
                metrics.parameters.differing_per_step, metrics.averages.differing_per_step, strict=True
            )
        ],
    )


def run_scenario(
    scenario: Scenario,
    implementations: Sequence[Implementation] = IMPLEMENTATIONS,
    pairs: Sequence[Pair] = PAIRS,
) -> ScenarioResult:
    trajectories: dict[str, Trajectory] = {}
    skipped: dict[str, str] = {}
    runs = []
    for implementation in implementations:
        reason = implementation.skip_reason(scenario)
        if reason is not None:
            skipped[implementation.name] = reason
            runs.append(ImplementationRun(implementation.name, "skipped", reason))
            continue
        trajectory = implementation.run(scenario)
        trajectories[implementation.name] = trajectory
        runs.append(
            ImplementationRun(
                implementation.name,
                "ran",
                seconds=trajectory.seconds,
                final_step=trajectory.final_step,
                final_eta=trajectory.final_eta,
                final_mu=trajectory.final_mu,
            )
        )
    known = {implementation.name for implementation in implementations}
    comparisons = [
        _compare(scenario, pair, trajectories, skipped) for pair in pairs if {pair.left, pair.right} <= known
    ]
    return ScenarioResult(
        name=scenario.name,
        problem=scenario.problem,
        dtype=scenario.dtype,
        hyperparameters=dict(scenario.hyper),
        steps=scenario.steps,
        seed=scenario.seed,
        size=scenario.size,
        start_step=scenario.start_step,
        purpose=scenario.purpose,
        implementations=runs,
        comparisons=comparisons,
    )


def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    implementations: Sequence[Implementation] = IMPLEMENTATIONS,
    jobs: int = 1,
    on_done: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Results in the order of ``scenarios``; with ``jobs > 1`` scenarios run in processes."""
    results: list[ScenarioResult] = []
    if jobs <= 1:
        for scenario in scenarios:
            results.append(run_scenario(scenario, implementations))
            if on_done:
                on_done(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_scenario, scenario, implementations) for scenario in scenarios]
        for future in futures:
            results.append(future.result())
            if on_done:
                on_done(results[-1])
    return results
