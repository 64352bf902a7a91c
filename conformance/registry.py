"""Every implementation the harness knows, by id; every pair it compares; what each claim means.

The ids are derived, not written out: the reference in each numerics profile, the optimized ASGD in
each profile on each kernel, torch's own paths, and ``optimized.torch.ASGD`` on each of torch's CPU
paths. So are the pairs: each profile's reference against the optimized ASGD on every kernel, and,
for a profile that models a torch path, everything in that profile against that path, bit for bit.
A new profile is a new entry of :data:`NUMERICS` (and its rounding in the two implementations);
nothing here names it again. Every id a pair or a claim names is checked when this module is
imported: a misspelled id is an error, not a pair that never runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from conformance.verdicts import (
    BIT_EXACT,
    COMPILED_VS_EAGER,
    DEVICE_VS_CPU,
    FOREACH_VS_FORLOOP,
    INDEPENDENT_VS_TORCH,
    NUMPY_VS_TORCH,
    Pair,
    Policy,
)

__all__ = [
    "CLAIMED",
    "CLAIMS",
    "COMPILED_VS_TORCH",
    "DEVICE_PAIRS",
    "IDS",
    "KERNELS",
    "NUMERICS",
    "PAIRS",
    "STYLES",
    "TORCH_PATH",
    "TORCH_PATHS",
    "UNFUSED_VS_TORCH",
    "Claim",
    "ClaimsName",
    "KernelName",
    "NumericsName",
    "Style",
    "check_pairs",
    "optimized_id",
    "pair_name",
    "reference_id",
]

NumericsName = Literal["numpy", "torch", "torch-foreach"]
"""A numerics profile of the reference and the optimized ASGD."""
KernelName = Literal["numba", "numpy"]
"""A kernel of the optimized ASGD."""
ClaimsName = Literal["torch", "torch-foreach", "numpy", "none"]
"""What a user's implementation claims to match bit for bit (``"none"``: nothing; bounded)."""
Style = Literal["numpy", "torch"]
"""How a user's factory takes its parameters (see :mod:`conformance.protocols`)."""

NUMERICS: Final[tuple[NumericsName, ...]] = get_args(NumericsName)
KERNELS: Final[tuple[KernelName, ...]] = get_args(KernelName)
CLAIMS: Final[tuple[ClaimsName, ...]] = get_args(ClaimsName)
STYLES: Final[tuple[Style, ...]] = get_args(Style)

TORCH_PATH: Final[dict[NumericsName, str]] = {"torch": "torch-forloop", "torch-foreach": "torch-foreach"}
"""The CPU path of ``torch.optim.ASGD`` that a profile reproduces bit for bit."""
OPTIMIZED_TORCH: Final[dict[NumericsName, str]] = {
    "torch": "optimized-torch-forloop",
    "torch-foreach": "optimized-torch-foreach",
}
"""``optimized.torch.ASGD`` on the path a torch profile models."""
TORCH_COMPILED, TORCH_CUDA = "torch-compiled", "torch-cuda"


def reference_id(numerics: NumericsName) -> str:
    return f"reference-{numerics}"


def optimized_id(kernel: KernelName, numerics: NumericsName) -> str:
    return f"optimized-{kernel}-{numerics}"


IDS: Final[frozenset[str]] = frozenset(
    {reference_id(numerics) for numerics in NUMERICS}
    | {optimized_id(kernel, numerics) for kernel in KERNELS for numerics in NUMERICS}
    | set(TORCH_PATH.values())
    | set(OPTIMIZED_TORCH.values())
    | {TORCH_COMPILED, TORCH_CUDA}
)


def _derived_pairs() -> tuple[Pair, ...]:
    pairs: list[Pair] = []
    for numerics in NUMERICS:
        reference, group = reference_id(numerics), profile_group(numerics)
        pairs += [Pair(reference, optimized_id(kernel, numerics), BIT_EXACT, group) for kernel in KERNELS]
        path = TORCH_PATH.get(numerics)
        if path is not None:
            pairs.append(Pair(reference, path, BIT_EXACT, group))
            pairs += [Pair(optimized_id(kernel, numerics), path, BIT_EXACT, group) for kernel in KERNELS]
            pairs.append(Pair(OPTIMIZED_TORCH[numerics], path, BIT_EXACT, group))
            pairs.append(Pair(reference, OPTIMIZED_TORCH[numerics], BIT_EXACT, group))
    return (
        *pairs,
        UNFUSED_VS_TORCH,
        TORCH_PATHS,
        COMPILED_VS_TORCH,
        *(Pair(TORCH_CUDA, path, DEVICE_VS_CPU) for path in TORCH_PATH.values()),
    )


def profile_group(numerics: NumericsName) -> str:
    """The report's column for the bit-exact pairs of a profile."""
    return f"{numerics} profile"


def pair_name(left: str, right: str) -> str:
    """The name a pair of these two ids has in the results."""
    return f"{left} vs {right}"


UNFUSED_VS_TORCH: Final = Pair(optimized_id("numba", "numpy"), TORCH_PATH["torch"], NUMPY_VS_TORCH)
"""The NumPy-rounding profile against torch's for-loop path: bounded, and measured by the findings."""
TORCH_PATHS: Final = Pair(TORCH_PATH["torch-foreach"], TORCH_PATH["torch"], FOREACH_VS_FORLOOP)
"""torch's own two CPU paths against each other."""
COMPILED_VS_TORCH: Final = Pair(TORCH_COMPILED, TORCH_PATH["torch"], COMPILED_VS_EAGER)


@dataclass(frozen=True)
class Claim:
    """What a user's implementation is compared with under a claim, and how it is judged."""

    judges: tuple[str, ...]
    policy: Policy

    def pairs(self, name: str) -> list[Pair]:
        """The pairs that judge the implementation ``name``: a reference on the left of it, a
        torch path on its right (the order the report reads)."""
        group = name if self.policy.kind == "bit-exact" else None
        return [
            Pair(judge, name, self.policy, group)
            if judge.startswith("reference-")
            else Pair(name, judge, self.policy, group)
            for judge in self.judges
        ]


def _claimed() -> dict[str, Claim]:
    """A profile's claim: bit for bit with its reference and the torch path it models, if any;
    no claim: within the budget of torch's own two CPU paths, against the for-loop path."""
    claimed: dict[str, Claim] = {
        numerics: Claim(
            (reference_id(numerics), *([TORCH_PATH[numerics]] if numerics in TORCH_PATH else [])), BIT_EXACT
        )
        for numerics in NUMERICS
    }
    claimed["none"] = Claim((TORCH_PATH["torch"],), INDEPENDENT_VS_TORCH)
    if set(claimed) != set(CLAIMS):
        raise ValueError(f"the claims {sorted(CLAIMS)} are not the profiles and 'none': {sorted(claimed)}")
    return claimed


CLAIMED: Final[dict[str, Claim]] = _claimed()


def check_pairs(pairs: Iterable[Pair], known: Iterable[str]) -> None:
    """Refuse a pair that names an implementation id not in ``known``."""
    ids = frozenset(known)
    for pair in pairs:
        for name in (pair.left, pair.right):
            if name not in ids:
                raise ValueError(f"pair {pair.name!r} names {name!r}, which is no implementation's id")


PAIRS: Final = _derived_pairs()
check_pairs(PAIRS, IDS)
_SOME_USER = "module:factory"
check_pairs((pair for claim in CLAIMED.values() for pair in claim.pairs(_SOME_USER)), IDS | {_SOME_USER})

DEVICE_PAIRS: Final = tuple(pair for pair in PAIRS if pair.left == TORCH_CUDA)
"""The CUDA column against each CPU path of torch: the report says which one it matches bit for bit."""
