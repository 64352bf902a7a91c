"""The runner computes a scenario's gradient once per point and step, and hands each implementation
its own copy: implementations that agree bit for bit share the work, and none can change another's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from conformance.shared_gradients import SharedGradients
from conformance.workloads import Gradients


class CountingWorkload:
    """A gradient that depends on the point and the step, and a count of the evaluations."""

    def __init__(self) -> None:
        self.calls = 0

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        self.calls += 1
        return [p * 2 + step for p in parameters] + [None]


def test_one_evaluation_per_point_and_step() -> None:
    workload = CountingWorkload()
    shared = SharedGradients(workload)  # type: ignore[arg-type]
    here = [np.array([1.0, 2.0], np.float32)]
    there = [np.array([1.0, 2.5], np.float32)]
    first, second = shared.at(here, 0), shared.at([here[0].copy()], 0)
    assert workload.calls == 1 and first[0].tobytes() == second[0].tobytes() and first[1] is None
    shared.at(there, 0)
    assert workload.calls == 2  # another point
    shared.at(here, 1)
    assert workload.calls == 3  # another step
    negative_zero = [np.array([-0.0, 2.0], np.float32)]
    shared.at([np.array([0.0, 2.0], np.float32)], 1)
    shared.at(negative_zero, 1)
    assert workload.calls == 5  # points are told apart by their bits, -0.0 from +0.0


def test_each_caller_gets_its_own_copy() -> None:
    shared = SharedGradients(CountingWorkload())  # type: ignore[arg-type]
    point = [np.array([1.0, 2.0])]
    mine = shared.at(point, 0)
    assert mine[0] is not None
    mine[0][...] = np.nan  # an implementation that writes into its gradient
    theirs = shared.at(point, 0)
    assert theirs[0] is not None and theirs[0].tolist() == [2.0, 4.0]


class AliasingWorkload:
    """A workload whose gradient is the parameter array itself."""

    def gradients(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        return list(parameters)


def test_a_gradient_that_aliases_a_parameter_is_kept_as_it_was() -> None:
    shared = SharedGradients(AliasingWorkload())  # type: ignore[arg-type]
    first_point = [np.array([1.0, 2.0])]
    shared.at(first_point, 0)
    first_point[0] -= 0.5  # the first implementation's step changes its parameters
    theirs = shared.at([np.array([1.0, 2.0])], 0)  # a second implementation at the same point
    assert theirs[0] is not None and theirs[0].tolist() == [1.0, 2.0]
