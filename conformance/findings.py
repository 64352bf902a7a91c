"""Findings: measured differences that are documented behaviour, not failures.

Each is derived from the comparisons of a run, so its numbers are this run's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from conformance.registry import (
    COMPILED_VS_TORCH,
    DEVICE_PAIRS,
    TORCH_PATH,
    TORCH_PATHS,
    UNFUSED_VS_TORCH,
    pair_name,
    reference_id,
)
from conformance.results import Comparison, Finding, ScenarioResult

__all__ = ["derive_findings", "device_match"]


def _ran(scenario: ScenarioResult, pair: str) -> Comparison | None:
    for comparison in scenario.comparisons:
        if comparison.pair == pair and comparison.max_normwise_ulp is not None:
            return comparison
    return None


def _foreach_drift(scenarios: Sequence[ScenarioResult]) -> Finding | None:
    drifts = [(s, c) for s in scenarios if (c := _ran(s, TORCH_PATHS.name))]
    if not drifts:
        return None
    worst: dict[str, tuple[ScenarioResult, Comparison]] = {}
    for scenario, comparison in drifts:
        family = "float64" if scenario.dtype in ("float64", "complex128") else scenario.dtype
        if family not in worst or (comparison.max_normwise_ulp or 0) > (
            worst[family][1].max_normwise_ulp or 0
        ):
            worst[family] = (scenario, comparison)
    diverging = sum(1 for _, c in drifts if c.first_divergence is not None)
    modelled = [
        c
        for s, _ in drifts
        if (c := _ran(s, pair_name(reference_id("torch-foreach"), TORCH_PATH["torch-foreach"])))
    ]
    reproduced = (
        f" The torch-foreach profile reproduces the foreach path bit for bit in "
        f"{sum(c.status == 'holds' for c in modelled)} of the {len(modelled)} scenarios the "
        "reference ran."
        if modelled
        else ""
    )
    parts = [
        f"{family}: up to {c.max_normwise_ulp:.3g} normwise ULP ({c.max_ulp} element-wise, in {s.name})"
        for family, (s, c) in sorted(worst.items())
    ]
    return Finding(
        key="foreach-drift",
        title="torch's foreach path drifts from its for-loop path",
        detail=(
            f"In {diverging} of {len(drifts)} scenarios the two CPU paths of torch.optim.ASGD disagree, "
            "most from step 1: foreach folds lambd into the gradient and updates with addcmul, always takes "
            "the averaging branch, and evaluates eta's schedule in float32 tensor arithmetic (the step is a "
            "tensor there) where the for-loop path uses binary64. Worst drift per dtype: "
            + "; ".join(parts)
            + "."
            + reproduced
        ),
        scenarios=[s.name for s, c in drifts if c.first_divergence is not None],
    )


def device_match(scenario: ScenarioResult) -> str | None:
    """Which CPU path of torch the CUDA run of ``scenario`` matches bit for bit (``None``: no CUDA run)."""
    compared = [c for pair in DEVICE_PAIRS if (c := _ran(scenario, pair.name))]
    if not compared:
        return None
    identical = [c.right for c in compared if c.differing_scalar_steps == 0 and not c.nan_mismatches]
    if identical:
        return f"CUDA matches {' and '.join(identical)} bit for bit"
    closest = min(compared, key=lambda c: c.max_normwise_ulp or 0)
    return (
        f"CUDA matches neither CPU path bit for bit; closest: {closest.right} "
        f"({closest.max_normwise_ulp:.3g} normwise ULP)"
    )


def _device(scenarios: Sequence[ScenarioResult]) -> Finding | None:
    matches = [(s.name, match) for s in scenarios if (match := device_match(s))]
    if not matches:
        return None
    return Finding(
        key="cuda-path",
        title="Which CPU path of torch the CUDA run matches",
        detail=(
            "torch's default path on a CUDA device is foreach; the CUDA column is compared with both "
            "CPU paths. " + "; ".join(f"{name}: {match}" for name, match in matches) + "."
        ),
        scenarios=[name for name, _ in matches],
    )


def _counter_freeze(scenarios: Sequence[ScenarioResult]) -> Finding | None:
    late = [s for s in scenarios if s.start_step]
    details = []
    for scenario in late:
        steps = {
            run.name: run.final_step
            for run in scenario.implementations
            if run.status == "ran" and run.final_step is not None  # None: a state format not read
        }
        unfused, torch_forloop = UNFUSED_VS_TORCH.left, UNFUSED_VS_TORCH.right
        if torch_forloop in steps and unfused in steps:
            comparison = _ran(scenario, UNFUSED_VS_TORCH.name)
            drift = (
                "" if comparison is None else f", a drift of {comparison.max_normwise_ulp:.3g} normwise ULP"
            )
            details.append(
                f"{scenario.name}: after {scenario.steps} steps from step {scenario.start_step}, torch's "
                f"counter reads {steps[torch_forloop]:.0f} while the numpy profile's reads "
                f"{steps[unfused]:.0f}{drift}"
            )
    if not details:
        return None
    return Finding(
        key="step-counter-freeze",
        title="torch's float32 step counter freezes at 2**24, and eta and mu with it",
        detail=(
            "torch keeps the step in a float32 tensor, where 2**24 + 1 rounds back to 2**24 "
            "(pytorch#142378); from then on eta and mu no longer change and the average stops "
            "converging to the mean. The torch profile reproduces it bit for bit; the numpy profile "
            "counts exactly. " + "; ".join(details) + "."
        ),
        scenarios=[s.name for s in late],
    )


def _eta_float32(scenarios: Sequence[ScenarioResult]) -> Finding | None:
    doubles = [
        (s, c) for s in scenarios if s.dtype in ("float64", "complex128") and not s.start_step
        if (c := _ran(s, UNFUSED_VS_TORCH.name))
    ]  # fmt: skip
    singles = [
        c for s in scenarios if s.dtype in ("float32", "complex64") and not s.start_step
        if (c := _ran(s, UNFUSED_VS_TORCH.name))
    ]  # fmt: skip
    if not doubles:
        return None
    worst_double = max(c.max_normwise_ulp or 0 for _, c in doubles)
    worst_single = max((c.max_normwise_ulp or 0 for c in singles), default=0)
    exact = [
        s.name
        for s, _ in doubles
        if (c := _ran(s, pair_name(reference_id("torch"), TORCH_PATH["torch"]))) and c.status == "holds"
    ]
    return Finding(
        key="eta-float32-for-float64",
        title="torch rounds eta (and mu) to float32 even for float64 parameters",
        detail=(
            "torch's scalar state is float32 whatever the parameter dtype, so a float64 run uses eta "
            "rounded to float32, a relative error of up to 2**-24 in every step. Against the numpy profile "
            f"(binary64 eta) float64 trajectories drift by up to {worst_double:.3g} normwise ULP, while "
            f"float32 ones, where only the rounding of lines 3 and 6 differs, drift by at most "
            f"{worst_single:.3g}. The torch profile models the float32 eta and matches torch bit for bit "
            f"in {len(exact)} of {len(doubles)} float64 scenarios."
        ),
        scenarios=[s.name for s, _ in doubles],
    )


def _compiled_path(scenarios: Sequence[ScenarioResult]) -> Finding | None:
    compared = [(s, c) for s in scenarios if (c := _ran(s, COMPILED_VS_TORCH.name))]
    if not compared:
        return None
    parts = []
    for scenario, comparison in compared:
        if comparison.first_divergence is None:
            parts.append(f"{scenario.name}: identical bits at all {scenario.steps} steps")
            continue
        last = comparison.differing_per_step[-1] if comparison.differing_per_step else 0
        parts.append(
            f"{scenario.name}: differs from step {comparison.first_divergence}, "
            f"{last:,} parameter and average values differ after the last step, up to "
            f"{comparison.max_normwise_ulp:.3g} normwise ULP ({comparison.max_ulp} element-wise)"
        )
    diverging = sum(1 for _, c in compared if c.first_divergence is not None)
    return Finding(
        key="compiled-path",
        title="torch's compiled step against its eager for-loop step",
        detail=(
            f"torch.compile of torch.optim.ASGD.step (inductor, C++ on the CPU) differs from the eager "
            f"for-loop path in {diverging} of {len(compared)} scenarios: "
            + "; ".join(parts)
            + ". optimized.torch.ASGD keeps the eager bits inside a compiled training step (its step "
            "runs outside the graph)."
        ),
        scenarios=[s.name for s, _ in compared],
    )


def derive_findings(scenarios: Sequence[ScenarioResult]) -> list[Finding]:
    found = (
        _foreach_drift(scenarios),
        _compiled_path(scenarios),
        _counter_freeze(scenarios),
        _eta_float32(scenarios),
        _device(scenarios),
    )
    return [finding for finding in found if finding is not None]
