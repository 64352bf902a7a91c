"""A pair's verdict in one scenario, from its metrics and how each side's run ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from conformance.lockstep import Lockstep
from conformance.metrics import PairMetrics
from conformance.results import Comparison
from conformance.scenarios import Scenario
from conformance.verdicts import Pair, judge, policy_for

__all__ = ["SAMPLED", "Outcome", "compare", "coverage"]

SAMPLED: Final = "a seeded sample and every edge of each large tensor, every value of the small ones"
"""What a sampled lockstep verdict covers, in words (:mod:`conformance.sampling`)."""


@dataclass(frozen=True)
class Outcome:
    """How one implementation's run of a scenario ended."""

    status: str
    """``"ran"``, ``"skipped"`` or ``"failed"``."""
    reason: str | None = None
    not_run_here: bool = False
    """Skipped because this machine lacks what it needs (a device, a library), not by design."""


def coverage(checked: int, stepped: int) -> str:
    """``checked`` of ``stepped`` values as a share, never rounded up to 100%."""
    if checked >= stepped:
        return "100%"
    share = 100 * checked / stepped
    return f"{share:.3g}%" if share < 99.9 else "99.9%"


def compare(
    scenario: Scenario,
    pair: Pair,
    metrics: PairMetrics,
    runs: Mapping[str, Outcome],
    lockstep: Lockstep | None = None,
) -> Comparison:
    """The verdict on ``pair`` in ``scenario`` from its ``metrics`` and how each side's run ended;
    ``lockstep``: the reference judged the pair step by step (with the coverage it states)."""
    policy = policy_for(pair, scenario.expected_divergence)
    base: dict[str, Any] = {
        "scenario": scenario.name,
        "pair": pair.name,
        "left": pair.left,
        "right": pair.right,
        "policy": policy.kind,
        # None for a scenario of mixed dtypes: each dtype's tensors have their own budget (in the reason).
        "ulp_budget": None if policy.ulp_budget is None else policy.ulp_budget.get(scenario.dtype),
    }
    steps_compared = len(metrics.parameters.max_ulp_per_step)
    if lockstep is None:  # both trajectories, every value at every step both ran
        compared_values = steps_compared * scenario.elements
        base.update(mode="trajectory", checked_values=compared_values, stepped_values=compared_values)
    else:
        base.update(mode="lockstep", checked_values=lockstep.checked, stepped_values=lockstep.stepped)
    failed = [name for name in (pair.left, pair.right) if runs[name].status == "failed"]
    if failed:
        reasons = "; ".join(f"{name} failed: {runs[name].reason}" for name in failed)
        return Comparison(**base, status="fails", reason=reasons)
    if lockstep is not None and lockstep.failure is not None and not metrics.differing_bits:
        return Comparison(**base, status="fails", reason=lockstep.failure)
    missing = [name for name in (pair.left, pair.right) if runs[name].status != "ran"]
    verdict = judge(policy, metrics, scenario.dtype)
    status = ("finding" if policy.kind == "finding" else "holds") if verdict.holds else "fails"
    reason = verdict.reason
    if missing:
        reasons = "; ".join(f"{name}: {runs[name].reason or 'not run'}" for name in missing)
        if not metrics.parameters.differing_per_step or verdict.holds:
            here = all(runs[name].not_run_here for name in missing)  # else skipped by design anyway
            return Comparison(**base, status="skipped", reason=reasons, not_run_here=here)
        reason = (
            f"{verdict.reason} (then {reasons})"  # a decline does not hide what the steps before it showed
        )
    if lockstep is not None and lockstep.checked < lockstep.stepped and not missing:
        reason += f" (on {coverage(lockstep.checked, lockstep.stepped)} of the values held: {SAMPLED})"
    if lockstep is not None and lockstep.failure is not None:  # what the steps before it showed, then why
        status, reason = "fails", f"{reason}; then {lockstep.failure}"
    first = metrics.first
    return Comparison(
        **base,
        status=status,
        reason=reason,
        max_ulp=metrics.max_ulp,
        max_ulp_parameters=metrics.parameters.max_ulp,
        max_ulp_averages=metrics.averages.max_ulp,
        first_divergence=metrics.first_divergence,
        first_divergence_quantity=None if first is None else first.quantity,
        first_divergence_tensor=None if first is None else first.tensor,
        first_divergence_element=None if first is None else first.element,
        first_divergence_values=None if first is None or first.values is None else list(first.values),
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
            a + b + metrics.extra_per_step.get(step, 0)
            for step, (a, b) in enumerate(
                zip(metrics.parameters.differing_per_step, metrics.averages.differing_per_step, strict=True),
                start=1,
            )
        ],
    )
