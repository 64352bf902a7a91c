"""The policies a pair is judged by, and what counts as holding (the pairs: :mod:`conformance.registry`).

* **bit-exact**: the pair must not differ in a single bit (any NaN equals any NaN) at any step,
  in the parameters or the averages. Claimed for the reference and the optimized ASGD in each
  profile, for the torch profile against torch's for-loop path and for the torch-foreach profile
  against torch's foreach path.
* **bounded**: the pair may drift, with NaNs at the same positions, by at most a documented budget
  per dtype in *normwise* ULPs: ``max |a - b|`` over the array in units of the ULP of ``max |b|``.
  The element-wise ULP distance is reported too, but it cannot carry a budget: wherever a
  coordinate passes near zero, a tiny absolute drift is millions of ULPs of that coordinate.
* **finding**: a divergence that is the point of its scenario (the frozen step counter); it is
  measured and listed with the findings, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from conformance.metrics import PairMetrics

__all__ = [
    "BIT_EXACT",
    "COMPILED_VS_EAGER",
    "FINDING",
    "INDEPENDENT_VS_TORCH",
    "Pair",
    "Policy",
    "Verdict",
    "judge",
    "policy_for",
]


@dataclass(frozen=True)
class Policy:
    kind: str
    """``"bit-exact"``, ``"bounded"`` or ``"finding"``."""
    ulp_budget: dict[str, int] | None = None
    """For bounded pairs: the largest normwise ULP distance allowed, per dtype."""
    rationale: str = ""


BIT_EXACT: Final = Policy("bit-exact", rationale="the same rounding of the same operations")


def _budget(half: int, single: int, double: int) -> dict[str, int]:
    """A budget per dtype; in a scenario of mixed dtypes each tensor is held to its own dtype's."""
    return {"float16": half, "float32": single, "complex64": single, "float64": double, "complex128": double}


NUMPY_VS_TORCH: Final = Policy(
    "bounded",
    ulp_budget=_budget(2**4, 2**8, 2**36),
    rationale=(
        "the numpy profile rounds lines 3 and 6 twice where torch fuses them; for float64 torch "
        "also rounds eta and mu to float32, a relative change of up to 2**-24 in every step's eta, "
        "which the problem's dynamics may amplify; the budget leaves room for both, and the report "
        "shows what each scenario measured"
    ),
)
TORCH_PATHS_BUDGET: Final = _budget(2**4, 2**12, 2**38)
"""What torch's own two CPU paths need between them (foreach against for-loop)."""

FOREACH_VS_FORLOOP: Final = Policy(
    "bounded",
    ulp_budget=TORCH_PATHS_BUDGET,
    rationale=(
        "torch's foreach path folds lambd into the gradient and uses addcmul, always takes the "
        "averaging branch, and evaluates eta's schedule in float32 tensor arithmetic where the "
        "for-loop path uses binary64 (the report shows what each scenario measured)"
    ),
)
INDEPENDENT_VS_TORCH: Final = Policy(
    "bounded",
    ulp_budget=TORCH_PATHS_BUDGET,
    rationale=(
        "an implementation that claims no profile may order and round its operations as it likes; "
        "it is held to the budget that torch's own two CPU paths need (foreach against for-loop)"
    ),
)
COMPILED_VS_EAGER: Final = Policy(
    "bounded",
    ulp_budget=TORCH_PATHS_BUDGET,
    rationale=(
        "inductor fuses the step into one C++ loop and may contract or reorder its operations, and "
        "computes eta and mu as tensors inside the graph; it is held to the budget of torch's two "
        "eager CPU paths, and a finding says how far it is from the eager for-loop path"
    ),
)
DEVICE_VS_CPU: Final = Policy(
    "bounded",
    ulp_budget=TORCH_PATHS_BUDGET,
    rationale="CUDA kernels may fuse and vectorize differently from the CPU kernels",
)
FINDING: Final = Policy("finding", rationale="the divergence this scenario exists to show")


@dataclass(frozen=True)
class Pair:
    left: str
    right: str
    policy: Policy
    group: str | None = None
    """The bit-exact group the report shows as one column (a profile's pairs, a user's
    implementation's), or ``None``: a column of its own."""

    @property
    def name(self) -> str:
        return f"{self.left} vs {self.right}"


@dataclass(frozen=True)
class Verdict:
    holds: bool
    reason: str


def judge(policy: Policy, metrics: PairMetrics, dtype: str) -> Verdict:
    """Whether ``metrics`` satisfy ``policy`` for a scenario of ``dtype``, and why not."""
    if policy.kind == "finding":
        return Verdict(True, f"expected divergence: max {metrics.max_normwise_ulp:.3g} normwise ULP")
    if metrics.nan_mismatches:
        return Verdict(False, f"NaN at different positions ({metrics.nan_mismatches} scalars)")
    if policy.kind == "bit-exact":
        if metrics.differing_bits:
            first = metrics.first
            assert first is not None
            values = "" if first.values is None else f": {first.values[0]} vs {first.values[1]}"
            at = f" at {first.element}" if first.element else ""
            most = f" (max {metrics.max_ulp} ULP)" if metrics.max_ulp else ""
            return Verdict(
                False,
                f"{metrics.differing_bits} scalar-steps differ, first at step {first.step} in the "
                f"{first.quantity} of {first.tensor}{at}{values}{most}",
            )
        return Verdict(True, "identical bits at every step")
    assert policy.ulp_budget is not None
    if dtype in policy.ulp_budget:
        budget = policy.ulp_budget[dtype]
        measured = metrics.max_normwise_ulp
        if measured > budget:
            return Verdict(False, f"{measured:.3g} normwise ULP exceeds the budget of {budget}")
        return Verdict(True, f"{measured:.3g} normwise ULP within the budget of {budget}")
    # Tensors of several dtypes: each dtype's tensors against that dtype's budget.
    measured_by_dtype = metrics.normwise_ulp_by_dtype
    over = [d for d, measured in measured_by_dtype.items() if measured > policy.ulp_budget[d]]
    figures = "; ".join(
        f"{d} {measured:.3g} of {policy.ulp_budget[d]}" for d, measured in sorted(measured_by_dtype.items())
    )
    if over:
        return Verdict(False, f"normwise ULP exceeds the budget in the {', '.join(over)} tensors ({figures})")
    return Verdict(True, f"normwise ULP within each dtype's budget ({figures})")


def policy_for(pair: Pair, expected_divergence: tuple[str, ...]) -> Policy:
    """The pair's policy, or :data:`FINDING` where the scenario exists to show that pair diverge."""
    return FINDING if pair.name in expected_divergence else pair.policy
