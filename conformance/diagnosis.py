"""What is wrong, not only where: the near misses of a profile that reproduce a failing implementation.

When an implementation fails a bit-exact pair against the reference, the scenario runs again with
the implementation alone, judged in lockstep by variants of the claimed profile: the other profiles;
eta and mu kept in binary64 or in binary32; a step counter frozen at 2**24 or exact; with and
without fused multiply-adds; weight decay, lambda, maximize or momentum ignored; averaging starting
one step early or late; momentum as an exponential average or Nesterov's instead of torch SGD's.
A variant that agrees with the implementation bit for bit at every step is named ("matches the
torch profile with weight_decay ignored, bit for bit over all 25 steps"); otherwise the closest one
is (the latest first divergence, then the fewest differing values). Only on failure, only the
failing scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from conformance.implementations import Implementation
from conformance.near_miss_lines import Convention, Counter
from conformance.reference_judge import Variant
from conformance.registry import NUMERICS
from conformance.results import Comparison
from conformance.scenarios import Scenario
from conformance.sessions import Session
from conformance.verdicts import BIT_EXACT, Pair
from conformance.workloads import Workload
from reference.numerics import numerics_named
from reference.rounding import BINARY32, BINARY64

__all__ = ["NEAR_MISSES", "diagnosed", "near_misses"]


def _ignoring(name: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda group: {**group, name: value}


def _t0_moved(by: float) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda group: {**group, "t0": group["t0"] + by}


NEAR_MISSES: Final = (
    ("weight_decay ignored", _ignoring("weight_decay", 0.0)),
    ("lambd ignored", _ignoring("lambd", 0.0)),
    ("maximize ignored", _ignoring("maximize", False)),
    ("momentum ignored", _ignoring("momentum", 0.0)),
    ("averaging starting one step early", _t0_moved(-1)),
    ("averaging starting one step late", _t0_moved(1)),
)
"""Hyperparameter near misses: a name and how it changes each group's hyperparameters."""

CONVENTIONS: Final[tuple[tuple[str, Convention], ...]] = (
    ("momentum as an average (buf = m*buf + (1 - m)*g, from 0)", "average"),
    ("Nesterov momentum (g + m*buf)", "nesterov"),
)
"""Other momentum conventions than torch SGD's heavy ball (:mod:`conformance.near_miss_lines`)."""


def near_misses(profile: str) -> list[Variant]:
    """The variants of ``profile`` a diagnosis tries (the profile itself not among them)."""
    own = numerics_named(profile)
    variants = [
        Variant(f"the {other} profile", numerics_named(other)) for other in NUMERICS if other != profile
    ]
    counter: Counter = "exact" if own.exact_step_counter else "binary32"
    other_format = BINARY32 if own.scalar_format is BINARY64 else BINARY64
    variants.append(
        Variant(
            f"the {profile} profile with eta and mu kept in {other_format.name}",
            replace(own, scalar_format=other_format),
            counter=counter,  # the profile's own counter: only the clocks' format changes
        )
    )
    other_counter = (
        "a float32 step counter (frozen at 2**24)" if own.exact_step_counter else "an exact step counter"
    )
    variants.append(
        Variant(
            f"the {profile} profile with {other_counter}",
            counter="binary32" if own.exact_step_counter else "exact",
        )
    )
    fused = "without" if own.fused_multiply_add else "with"
    unfused = replace(own, fused_multiply_add=not own.fused_multiply_add)
    variants.append(Variant(f"the {profile} profile {fused} fused multiply-adds", unfused))
    variants += [Variant(f"the {profile} profile with {name}", None, change) for name, change in NEAR_MISSES]
    variants += [
        Variant(f"the {profile} profile with {name}", momentum=convention) for name, convention in CONVENTIONS
    ]
    return variants


class NearMiss(Implementation):
    """A variant of a profile, as a reference that judges in lockstep."""

    def __init__(self, profile: str, variant: Variant) -> None:
        self.name, self.description = variant.name, f"a near miss of the {profile} profile"
        self.reference_profile, self.variant = profile, variant

    def start(self, scenario: Scenario, workload: Workload) -> Session:
        raise AssertionError("a near miss judges in lockstep: it never runs a session of its own")


def _closeness(comparison: Comparison) -> tuple[int, int]:
    """How close a failing comparison came: the later its first divergence, the fewer values differ."""
    return comparison.first_divergence or 0, -(comparison.differing_scalar_steps or 0)


def _sampled(comparison: Comparison) -> bool:
    return (comparison.checked_values or 0) < (comparison.stepped_values or 0)


def diagnosis(
    scenario: Scenario,
    implementation: Implementation,
    profile: str,
    run: Callable[..., Any],
) -> str:
    """Which near miss of ``profile`` reproduces ``implementation`` on ``scenario`` (``run`` is the
    runner's ``run_scenario``, in lockstep with the run's coverage), in a sentence. The profile
    itself runs beside its near misses, so that one is called the closest only if it comes closer
    than the profile on the same values (one that computes what the profile does here, such as the
    other step counter before 2**24, is no closer)."""
    itself = NearMiss(profile, Variant(f"the {profile} profile"))
    tried = [itself, *(NearMiss(profile, variant) for variant in near_misses(profile))]
    pairs = [Pair(near.name, implementation.name, BIT_EXACT) for near in tried]
    result = run(scenario, [*tried, implementation], pairs, diagnose=False)
    judged = [c for c in result.comparisons if c.status in ("holds", "fails")]
    baseline = next((c for c in judged if c.left == itself.name), None)
    judged = [c for c in judged if c.left != itself.name]
    exact = [c for c in judged if c.status == "holds"]
    if exact:
        sampled = " (on sampled values of its large tensors)" if any(map(_sampled, exact)) else ""
        named = " and ".join(c.left for c in exact)
        return f"matches {named}, bit for bit over all {scenario.steps} steps{sampled}"
    if not judged:
        return "no near miss of the profile could be tried"
    closest = max(judged, key=_closeness)
    if baseline is not None and _closeness(closest) <= _closeness(baseline):
        return f"no near miss of the {profile} profile reproduces it or comes closer than the profile itself"
    return (
        f"no near miss reproduces it; the closest is {closest.left} "
        f"(first differs at step {closest.first_divergence}, {closest.differing_scalar_steps} values differ)"
    )


def diagnosed(
    scenario: Scenario,
    comparisons: Sequence[Comparison],
    implementations: Mapping[str, Implementation],
    profiles: Mapping[str, str],
    run: Callable[..., Any],
) -> list[Comparison]:
    """``comparisons``, each failing bit-exact one against a reference (``profiles``: a reference's
    name to its profile) with the diagnosis of the implementation it judged."""
    found = []
    for comparison in comparisons:
        judged = implementations.get(comparison.right)
        if comparison.status == "fails" and comparison.left in profiles and judged is not None:
            said = diagnosis(scenario, judged, profiles[comparison.left], run)
            comparison = replace(comparison, reason=f"{comparison.reason}; diagnosis: {said}", diagnosis=said)
        found.append(comparison)
    return found
