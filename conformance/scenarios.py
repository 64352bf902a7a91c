"""The scenario matrix, declared as data in the spirit of torch's ``OptimizerInfo``.

A scenario is a problem, a hyperparameter set, a dtype, a number of steps and a seed. The quick set
(the default) runs in well under a minute on two cores; the full set adds longer runs, more dtypes
and larger problems. torch's own ASGD test configurations stop before averaging starts (t0 >= 100
with about 20 steps), so most scenarios here use a small ``t0`` to exercise the averaging branch.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

__all__ = [
    "LATE_START",
    "MIXED",
    "MIXED_DTYPES",
    "SCENARIOS",
    "SMOKE",
    "Scenario",
    "Selection",
    "select_scenarios",
    "selection_named",
    "shard",
]

LATE_START: Final = 2**24 - 2
"""Where the late-run scenario injects its state: two steps before torch's float32 counter freezes."""

MIXED: Final = "mixed"
"""The dtype of a many-tensor scenario whose tensors take the :data:`MIXED_DTYPES` in turn."""
MIXED_DTYPES: Final = ("float32", "float64", "complex64", "complex128")


@dataclass(frozen=True)
class Scenario:
    name: str
    problem: str
    dtype: str
    hyper: Mapping[str, Any]
    steps: int
    seed: int = 0
    size: int = 16
    """Values of the tensor (one-tensor problems) or hidden units (``digits-mlp``)."""
    start_step: int = 0
    """Nonzero: every implementation starts from injected state at this step."""
    quick: bool = True
    purpose: str = ""
    expected_divergence: tuple[str, ...] = ()
    """Pairs (``"left vs right"``) whose divergence is the point of the scenario: reported, not judged."""
    tags: tuple[str, ...] = field(default=())
    shapes: tuple[tuple[int, ...], ...] = ()
    """The tensors of a ``many-tensors`` problem."""
    groups: tuple[tuple[int, Mapping[str, Any]], ...] = ()
    """Param groups as (number of tensors, hyperparameter overrides), in tensor order; () is one group."""
    lr_changes: tuple[tuple[int, float], ...] = ()
    """(step, factor): before that step every group's lr becomes its initial lr times factor."""
    checkpoint_at: int = 0
    """Nonzero: after this step the state goes out, a fresh optimizer loads it and goes on."""
    checkpoint_via: str = "state_dict"
    """``"state_dict"``, or ``"torch"``: the checkpoint also passes through a torch.save file of torch's format."""

    @property
    def dtypes(self) -> tuple[str, ...]:
        """Every dtype among the scenario's tensors."""
        return MIXED_DTYPES if self.dtype == MIXED else (self.dtype,)

    def with_seed(self, seed: int) -> Scenario:
        return replace(self, seed=self.seed + seed)

    @property
    def elements(self) -> int:
        """Values stepped per step (an upper bound: some gradients are ``None``)."""
        if self.shapes:
            return sum(math.prod(shape) for shape in self.shapes)
        if self.problem == "digits-mlp":
            return 64 * self.size + self.size + self.size * 10 + 10
        return self.size


AVERAGING: Final = {"lr": 0.01, "t0": 20}


def resnet50_shapes() -> tuple[tuple[int, ...], ...]:
    """The 161 parameter shapes of torchvision's ResNet-50 (25,557,032 values): the convolutions
    and the classifier's weight first, then the batch norms' weights and biases and the classifier's
    bias (so that two param groups can hold them, as weight decay is usually given)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [
                (planes, inplanes, 1, 1),
                (planes,),
                (planes,),
                (planes, planes, 3, 3),
                (planes,),
                (planes,),
            ]
            shapes += [(4 * planes, planes, 1, 1), (4 * planes,), (4 * planes,)]
            if block == 0:  # the downsampling shortcut
                shapes += [(4 * planes, inplanes, 1, 1), (4 * planes,), (4 * planes,)]
            inplanes = 4 * planes
    shapes += [(1000, 2048), (1000,)]
    return (*(s for s in shapes if len(s) > 1), *(s for s in shapes if len(s) == 1))


RESNET50: Final = resnet50_shapes()
_RESNET50_WEIGHTS: Final = sum(1 for shape in RESNET50 if len(shape) > 1)

_QUICK: Final = (
    Scenario("random-f32-averaging", "random-stream", "float32", AVERAGING, 200, purpose="averaging active from step 22",
             tags=("compiled",)),
    Scenario("random-f64-averaging", "random-stream", "float64", AVERAGING, 200, purpose="eta is float32 in torch even for float64",
             tags=("compiled",)),
    Scenario("random-f16-averaging", "random-stream", "float16", {"lr": 0.01, "t0": 20}, 150, purpose="float16: numpy profile and torch only"),
    Scenario("random-c64-averaging", "random-stream", "complex64", {**AVERAGING, "weight_decay": 0.01}, 150, size=8, tags=("smoke",)),
    Scenario("random-c128-averaging", "random-stream", "complex128", AVERAGING, 150, size=8),
    Scenario("lsq-f32-averaging", "least-squares", "float32", {"lr": 0.02, "t0": 50, "weight_decay": 1e-3}, 200, size=8),
    Scenario("lsq-f64-averaging", "least-squares", "float64", {"lr": 0.02, "t0": 50}, 200, size=8),
    Scenario("rosenbrock-f32", "rosenbrock", "float32", {"lr": 1e-3, "t0": 100, "lambd": 1e-3}, 200, size=6),
    Scenario("logistic-f32-maximize", "logistic", "float32", {"lr": 0.05, "t0": 30, "maximize": True, "weight_decay": 1e-3},
             150, size=8, purpose="maximize flips the gradient (ascent on the log-loss)", tags=("compiled",)),
    Scenario("momentum-f32", "least-squares", "float32", {"lr": 0.01, "t0": 30, "momentum": 0.9}, 200, size=8,
             purpose="heavy-ball momentum; torch's ASGD has none", tags=("smoke",)),
    Scenario("lambd-alpha-extreme", "random-stream", "float32", {"lr": 0.5, "t0": 10, "lambd": 1.0, "alpha": 2.0}, 150, tags=("smoke",)),
    Scenario("lambd-alpha-zero", "random-stream", "float32", {"lr": 0.01, "t0": 10, "lambd": 0.0, "alpha": 0.0}, 150),
    Scenario("lr-zero", "random-stream", "float32", {"lr": 0.0, "t0": 5}, 60, purpose="lr = 0 leaves theta unchanged"),
    Scenario("late-run-f32", "random-stream", "float32", {"lr": 0.01, "t0": LATE_START - 10}, 8, start_step=LATE_START,
             purpose="torch's float32 step counter freezes at 2**24, and eta and mu with it",
             expected_divergence=("optimized-numba-numpy vs torch-forloop",), tags=("smoke",)),
    Scenario("many-tensors-f32", "many-tensors", "float32", {"lr": 0.01, "t0": 3, "lambd": 1e-3}, 8,
             shapes=((30_007,), (64, 32), (32,), (10, 32), (10,), (3, 3, 3)),
             groups=((3, {}), (3, {"lr": 0.02, "weight_decay": 1e-3, "t0": 2})), lr_changes=((7, 0.5),), checkpoint_at=5,
             purpose="six tensors in two groups, one of 30,007 values (torch's vectorized body and its scalar tail); "
                     "None gradients; lr halved before step 7; a checkpoint after step 5 while averaging", tags=("smoke",)),
    Scenario("many-tensors-f64-handover", "many-tensors", "float64", {"lr": 0.01, "t0": 2}, 12,
             shapes=((4096,), (17, 5), (3,), (2, 2, 2, 2), (1,), ()),
             groups=((2, {"t0": 4}), (4, {"lr": 0.005, "weight_decay": 0.01})), lr_changes=((4, 2.0), (9, 0.25)),
             checkpoint_at=6, checkpoint_via="torch",
             purpose="a 0-d tensor among six; the checkpoint after step 6 passes through a torch.save file in torch's format"),
    Scenario("many-tensors-mixed", "many-tensors", MIXED, {"lr": 0.02, "t0": 3, "lambd": 1e-2, "alpha": 0.6}, 40,
             shapes=((1500,), (6, 5), (7,), (3, 3), (), (40,), (2, 3)),
             groups=((5, {"weight_decay": 0.01}), (2, {"lr": 0.05, "maximize": True, "alpha": 3.0})),
             checkpoint_at=20,
             purpose="float32, float64, complex64 and complex128 tensors in one group (torch's foreach groups "
                     "them by dtype), weight decay, maximize, alpha 0.6 and 3; a checkpoint while averaging"),
    Scenario("digits-mlp-f32", "digits-mlp", "float32", {"lr": 0.1, "t0": 100}, 200,
             purpose="a torch nn MLP on scikit-learn's digits, gradients from autograd; held-out accuracy per implementation"),
    Scenario("digits-mlp-f64", "digits-mlp", "float64", {"lr": 0.1, "t0": 100}, 200,
             purpose="the MLP in float64, where torch rounds eta and mu to float32"),
    # torch's own test configurations (common_optimizers.optim_inputs_func_asgd), run to 25 steps.
    Scenario("torch-config-default", "random-stream", "float32", {"lr": 1e-2}, 25, tags=("torch-config",)),
    Scenario("torch-config-lambd", "random-stream", "float32", {"lr": 1e-2, "lambd": 0.1}, 25, tags=("torch-config",)),
    Scenario("torch-config-t0", "random-stream", "float32", {"lr": 1e-2, "t0": 100}, 25, tags=("torch-config",)),
    Scenario("torch-config-wd-maximize", "random-stream", "float64", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, 25,
             tags=("torch-config", "smoke")),
)  # fmt: skip

_FULL_ONLY: Final = (
    Scenario("random-f32-long", "random-stream", "float32", {"lr": 0.01, "t0": 100}, 1500, size=32, quick=False),
    Scenario("lsq-f32-long", "least-squares", "float32", {"lr": 0.01, "t0": 200}, 1500, size=16, quick=False),
    Scenario("random-c128-lambd", "random-stream", "complex128", {"lr": 0.01, "t0": 50, "lambd": 0.1}, 600, quick=False),
    Scenario("rosenbrock-f64", "rosenbrock", "float64", {"lr": 1e-3, "t0": 100}, 800, size=8, quick=False),
    Scenario("logistic-f64-wd", "logistic", "float64", {"lr": 0.05, "t0": 50, "weight_decay": 0.01}, 800, quick=False),
    Scenario("momentum-f64", "least-squares", "float64", {"lr": 0.005, "t0": 100, "momentum": 0.99}, 800, quick=False),
    Scenario("momentum-f16", "random-stream", "float16", {"lr": 0.01, "t0": 50, "momentum": 0.5}, 400, quick=False),
    Scenario("torch-config-lr", "random-stream", "float32", {"lr": 0.02}, 25, quick=False, tags=("torch-config",)),
    Scenario("torch-config-maximize", "random-stream", "float32", {"lr": 1e-2, "maximize": True}, 25, quick=False,
             tags=("torch-config",)),
    Scenario("torch-config-weight-decay", "random-stream", "float32", {"lr": 1e-2, "weight_decay": 0.1}, 25, quick=False,
             tags=("torch-config",)),
    Scenario("many-tensors-f32-large", "many-tensors", "float32", {"lr": 0.01, "t0": 2, "lambd": 1e-3}, 6,
             shapes=((2_000_000,), (1000, 300), (300,), (10, 300), (10,), (5, 5)),
             groups=((3, {}), (3, {"lr": 0.02, "weight_decay": 1e-3, "t0": 1})), lr_changes=((5, 0.5),), checkpoint_at=4,
             quick=False, purpose="a 2,000,000-value tensor among six (threads in the optimized kernel)"),
    Scenario("many-tensors-c64", "many-tensors", "complex64", {"lr": 0.01, "t0": 5, "weight_decay": 1e-3}, 40,
             shapes=((3000,), (20, 7), (5,), (3, 3), (1,), ()), groups=((3, {}), (3, {"lambd": 1e-2})),
             lr_changes=((20, 0.1),), checkpoint_at=25, checkpoint_via="torch", quick=False),
    Scenario("digits-mlp-f32-long", "digits-mlp", "float32", {"lr": 0.05, "t0": 300, "weight_decay": 1e-4}, 800,
             size=24, quick=False),
    Scenario("random-f32-compiled-large", "random-stream", "float32", {"lr": 1e-3, "t0": 0, "weight_decay": 1e-4}, 10,
             size=10_000_000, quick=False, tags=("compiled",),
             purpose="10,000,000 values, weight decay, averaging from the first step: torch's compiled step against eager"),
    Scenario("resnet50-shapes-f32", "many-tensors", "float32", {"lr": 0.05, "t0": 2, "lambd": 1e-4}, 5,
             shapes=RESNET50, groups=((_RESNET50_WEIGHTS, {"weight_decay": 1e-4}), (len(RESNET50) - _RESNET50_WEIGHTS, {})),
             quick=False,
             purpose="ResNet-50's 161 parameter shapes (25,557,032 float32 values) in two groups, weight decay on "
                     "the weights only; the reference judges every implementation in lockstep on sampled values"),
    Scenario("late-run-f64", "random-stream", "float64", {"lr": 0.01, "t0": LATE_START - 10}, 8, start_step=LATE_START,
             quick=False, purpose="the frozen counter with float64 parameters",
             expected_divergence=("optimized-numba-numpy vs torch-forloop",)),
)  # fmt: skip

SCENARIOS: Final = _QUICK + _FULL_ONLY


Selection = Literal["smoke", "quick", "full"]
"""A set of scenarios: ``smoke`` (a few seconds: one scenario for each line of the algorithm and
for groups, checkpoints, complex values and the frozen counter), ``quick`` or ``full``."""
SMOKE: Final = "smoke"
"""The tag of the smoke set's scenarios."""


def selection_named(full: bool, selection: Selection | None) -> Selection:
    """The set a caller chose: ``selection`` if given, else the full or the quick set."""
    return selection or ("full" if full else "quick")


def select_scenarios(
    *,
    full: bool = False,
    only: str | None = None,
    seed: int = 0,
    seeds: int = 1,
    selection: Selection | None = None,
) -> list[Scenario]:
    """The quick set (or all with ``full``, or the set ``selection`` names), filtered by a glob
    ``only``, each repeated with ``seeds`` seeds (offsets ``seed`` to ``seed + seeds - 1``): the
    run's scenario × seed cells.

    With more than one seed a cell's name says its offset (``lsq-f32-averaging@seed2``).
    """
    named = selection_named(full, selection)
    chosen = [s for s in SCENARIOS if named == "full" or (s.quick and (named == "quick" or SMOKE in s.tags))]
    if only:
        chosen = [s for s in chosen if fnmatch.fnmatchcase(s.name, only) or only in s.name]
    if seeds == 1:
        return [s.with_seed(seed) for s in chosen]
    return [
        replace(s.with_seed(offset), name=f"{s.name}@seed{offset}")
        for s in chosen
        for offset in range(seed, seed + seeds)
    ]


def shard(cells: Sequence[Scenario], index: int, count: int) -> list[tuple[int, Scenario]]:
    """Shard ``index`` of ``count`` (1-based): every ``count``-th cell, each with its position."""
    return [(position, cell) for position, cell in enumerate(cells) if position % count == index - 1]
