"""Run a problem through an implementation and yield what it holds after every step.

Each driver yields, after each step, ``(parameters, averages)`` as lists of fresh arrays, so
trajectories of different implementations can be compared step by step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from optimized.hyperparameters import DEFAULTS
from tests.streams import Problem

Snapshot = tuple[list[np.ndarray], list[np.ndarray]]

TORCH_HYPERPARAMETERS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")


def run_numpy_optimizer(optimizer_class: Any, problem: Problem, **defaults: Any) -> Iterator[Snapshot]:
    """Drive ``reference.ASGD`` or ``optimized.ASGD`` (the shared API) through ``problem``."""
    parameters = problem.initial_parameters()
    members = problem.group_members()
    groups = [
        {"params": [parameters[i] for i in m], **h} for m, h in zip(members, problem.groups, strict=True)
    ]
    optimizer = optimizer_class(groups, **defaults)
    order = [i for m in members for i in m]  # the optimizer's parameter order
    for gradients in problem.gradients():
        optimizer.step([gradients[i] for i in order])
        averages = dict(zip(order, optimizer.averages(), strict=True))
        yield [p.copy() for p in parameters], [averages[i] for i in range(len(parameters))]


def run_torch(problem: Problem, *, foreach: bool = False, **defaults: Any) -> Iterator[Snapshot]:
    """Drive ``torch.optim.ASGD`` through ``problem``; ``lr`` defaults to ours, not torch's 1e-2."""
    import torch

    # Fresh arrays of the problem's layout, so a strided problem gives torch strided tensors too.
    parameters = [torch.from_numpy(p).requires_grad_() for p in problem.initial_parameters()]
    members = problem.group_members()
    groups = []
    for member, hyper in zip(members, problem.groups, strict=True):
        merged = {**DEFAULTS, **defaults, **hyper}
        groups.append(
            {"params": [parameters[i] for i in member], **{k: merged[k] for k in TORCH_HYPERPARAMETERS}}
        )
    optimizer = torch.optim.ASGD(groups, foreach=foreach)
    for gradients in problem.gradients():
        for parameter, gradient in zip(parameters, gradients, strict=True):
            parameter.grad = None if gradient is None else torch.from_numpy(gradient)
        optimizer.step()
        with torch.no_grad():
            averages = [
                optimizer.state[p]["ax"].numpy().copy() if p in optimizer.state else p.detach().numpy().copy()
                for p in parameters
            ]
            yield [p.detach().numpy().copy() for p in parameters], averages
