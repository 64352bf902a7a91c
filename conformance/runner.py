"""Run scenarios through the implementations and compare the pairs: scenarios → runs → verdicts.

Every implementation of a scenario is stepped in lock step: each computes its gradients at its own
parameters, steps, and then every pair is compared on that step's values. An implementation that
declines (:class:`~conformance.sessions.Unsupported`) is shown skipped with its reason; one that
raises, or hands back a parameter or average of the wrong shape or dtype, is shown failed with what
it did, and every pair it belongs to fails; the run goes on with the others.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from conformance.implementations import IMPLEMENTATIONS, Implementation
from conformance.metrics import PairMetrics
from conformance.registry import IDS, PAIRS, check_pairs
from conformance.results import Comparison, ImplementationRun, ScenarioResult
from conformance.scenarios import Scenario
from conformance.sessions import Session, Unsupported, group_lrs
from conformance.verdicts import Pair, judge, policy_for
from conformance.workloads import Gradients, Workload, make_workload

__all__ = ["Watch", "run_scenario", "run_scenarios"]


class Watch(Protocol):
    """What a supervisor is told of a run (:mod:`conformance.workers`): which implementation's
    code is running, from which step of the scenario, until when."""

    def enter(self, implementation: int, step: int) -> None:
        """The code of ``implementations[implementation]`` runs from now on (``step`` 0: starting)."""

    def leave(self) -> None:
        """The harness's own code runs from now on."""


class _Unwatched:
    def enter(self, implementation: int, step: int) -> None:
        pass

    def leave(self) -> None:
        pass


class _WrongOutput(Exception):
    """An implementation handed back values of the wrong kind."""


def _describe(error: BaseException) -> str:
    """An exception as one line: its type, its message and where in the implementation it rose."""
    if isinstance(error, _WrongOutput):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _checked(
    what: str, values: Any, expected: Sequence[tuple[np.dtype[Any], tuple[int, ...]]]
) -> list[np.ndarray]:
    """``values`` as NumPy arrays, each of the dtype and shape of its tensor, or :class:`_WrongOutput`."""
    arrays = list(values)
    if len(arrays) != len(expected):
        raise _WrongOutput(f"{what} gave {len(arrays)} arrays for {len(expected)} tensors")
    for index, (array, (dtype, shape)) in enumerate(zip(arrays, expected, strict=True)):
        if not isinstance(array, np.ndarray):
            raise _WrongOutput(f"{what}[{index}] is a {type(array).__name__}, not a numpy.ndarray")
        if array.dtype != dtype or array.shape != shape:
            raise _WrongOutput(
                f"{what}[{index}] is {array.dtype} of shape {array.shape}; expected {dtype} of shape {shape}"
            )
    return arrays


@dataclass
class _Running:
    """One implementation's progress through a scenario."""

    session: Session | None
    seconds: float = 0.0
    status: str = "ran"
    reason: str | None = None
    values: tuple[list[np.ndarray], list[np.ndarray]] | None = None
    evaluation: dict[str, float] = field(default_factory=dict)

    def stop(self, status: str, reason: str) -> None:
        self.session, self.status, self.reason, self.values = None, status, reason, None


class SharedGradients:
    """A scenario's gradients, computed once per point: implementations that agree bit for bit stand
    at the same point at each step, and a workload's gradient depends on the point and the step only
    (:class:`~conformance.workloads.Workload`). Each caller gets its own copies, so an implementation
    that writes into its gradients changes no one else's."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.step = -1
        self.known: dict[bytes, Gradients] = {}

    def at(self, parameters: Sequence[np.ndarray], step: int) -> Gradients:
        if step != self.step:  # one step's points at a time: the memory stays one step's
            self.step, self.known = step, {}
        key = _point(parameters)
        gradients = self.known.get(key)
        if gradients is None:  # kept as copies: nothing the workload returns may alias what a step changes
            gradients = self.known[key] = _copies(self.workload.gradients(parameters, step))
        return _copies(gradients)


def _copies(gradients: Gradients) -> Gradients:
    return [None if g is None else g.copy() for g in gradients]


def _point(parameters: Sequence[np.ndarray]) -> bytes:
    """A digest of the parameters' dtypes, shapes and bits."""
    digest = hashlib.blake2b(digest_size=32)
    for array in parameters:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)  # no copy where the array is contiguous
    return digest.digest()


def _advance(
    running: _Running, scenario: Scenario, shared: SharedGradients, index: int, expected: list[Any]
) -> None:
    """Step ``running`` once (``index`` counts from 1) and keep its values for the comparisons."""
    session = running.session
    assert session is not None
    changes = dict(scenario.lr_changes)
    if index in changes:
        for group, base in enumerate(group_lrs(scenario)):
            session.set_lr(group, base * changes[index])
    gradients = shared.at(session.parameters(), scenario.start_step + index - 1)
    started = time.perf_counter()
    session.step(gradients)
    running.seconds += time.perf_counter() - started
    running.values = (
        _checked("the parameters", session.parameters(), expected),
        _checked("averages()", session.averages(), expected),
    )
    if index == scenario.checkpoint_at:
        session.checkpoint(scenario.checkpoint_via)


_Errors = tuple[type[BaseException], ...]
_IMPLEMENTATION_ERRORS: _Errors = (Exception, SystemExit)  # a user's code may call sys.exit
_IN_A_WORKER: _Errors = (*_IMPLEMENTATION_ERRORS, KeyboardInterrupt)
"""In a worker process, which ignores Ctrl-C, a ``KeyboardInterrupt`` comes from an implementation."""


def _start(
    implementation: Implementation,
    scenario: Scenario,
    workload: Workload,
    errors: tuple[type[BaseException], ...],
) -> _Running:
    reason = implementation.skip_reason(scenario)
    if reason is not None:
        return _Running(None, status="skipped", reason=reason)
    try:
        return _Running(implementation.start(scenario, workload))
    except Unsupported as declined:
        return _Running(None, status="skipped", reason=str(declined))
    except errors as error:
        return _Running(None, status="failed", reason=f"could not start: {_describe(error)}")


def _compare(scenario: Scenario, pair: Pair, metrics: PairMetrics, runs: dict[str, _Running]) -> Comparison:
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
    failed = [name for name in (pair.left, pair.right) if runs[name].status == "failed"]
    if failed:
        reasons = "; ".join(f"{name} failed: {runs[name].reason}" for name in failed)
        return Comparison(**base, status="fails", reason=reasons)
    missing = [name for name in (pair.left, pair.right) if runs[name].status != "ran"]
    verdict = judge(policy, metrics, scenario.dtype)
    status = ("finding" if policy.kind == "finding" else "holds") if verdict.holds else "fails"
    reason = verdict.reason
    if missing:
        reasons = "; ".join(f"{name}: {runs[name].reason or 'not run'}" for name in missing)
        if not metrics.parameters.differing_per_step or verdict.holds:
            return Comparison(**base, status="skipped", reason=reasons)
        reason = (
            f"{verdict.reason} (then {reasons})"  # a decline does not hide what the steps before it showed
        )
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
    cell: int = 0,
    *,
    watch: Watch | None = None,
    excluded: Mapping[str, str] | None = None,
    in_a_worker: bool = False,
) -> ScenarioResult:
    """Run one scenario × seed cell through ``implementations`` and compare ``pairs`` at every step.

    ``watch`` is told whose code runs when; the implementations ``excluded`` name are not run and
    are shown failed with the reason given (one that hung or ended its process in an earlier try).
    ``in_a_worker``: in a worker process, which ignores Ctrl-C, a ``KeyboardInterrupt`` can only
    come from an implementation's code, and fails it; elsewhere it interrupts the run."""
    watch = watch or _Unwatched()
    errors = _IN_A_WORKER if in_a_worker else _IMPLEMENTATION_ERRORS
    excluded = excluded or {}
    workload = make_workload(scenario)
    shared = SharedGradients(workload)
    expected = [(array.dtype, array.shape) for array in workload.initial()]
    runs: dict[str, _Running] = {}
    for number, implementation in enumerate(implementations):
        if implementation.name in excluded:
            runs[implementation.name] = _Running(None, status="failed", reason=excluded[implementation.name])
            continue
        watch.enter(number, 0)
        runs[implementation.name] = _start(implementation, scenario, workload, errors)
        watch.leave()
    numbers = {implementation.name: number for number, implementation in enumerate(implementations)}
    check_pairs(pairs, IDS | numbers.keys())  # a pair of an id no one has is a mistake, not a choice
    compared = [pair for pair in pairs if pair.left in runs and pair.right in runs]
    metrics = {pair.name: PairMetrics() for pair in compared}
    for index in range(1, scenario.steps + 1):
        for name, running in runs.items():
            if running.session is None:
                continue
            watch.enter(numbers[name], index)
            try:
                _advance(running, scenario, shared, index, expected)
            except Unsupported as declined:
                running.stop("skipped", f"declined at step {index}: {declined}")
            except errors as error:
                running.stop("failed", f"at step {index}: {_describe(error)}")
            watch.leave()
        for pair in compared:
            left, right = runs[pair.left].values, runs[pair.right].values
            if left is not None and right is not None:
                metrics[pair.name].add(index, workload.names, left, right)
    implementation_runs = []
    for name, running in runs.items():
        scalars = None
        if running.session is not None:
            watch.enter(numbers[name], scenario.steps)
            try:
                scalars = running.session.scalars()
                parameters, averages = running.values or ([], [])
                last, averaged = workload.evaluate(parameters), workload.evaluate(averages)
                running.evaluation = {
                    **{f"{k} (last iterate)": v for k, v in last.items()},
                    **{f"{k} (averaged)": v for k, v in averaged.items()},
                }
            except errors as error:
                running.stop("failed", f"after the last step: {_describe(error)}")
            watch.leave()
        ran = running.status == "ran"
        implementation_runs.append(
            ImplementationRun(
                name,
                running.status,
                running.reason,
                seconds=running.seconds if ran else None,
                final_step=scalars[0] if scalars else None,
                final_eta=scalars[1] if scalars else None,
                final_mu=scalars[2] if scalars else None,
                evaluation=running.evaluation if ran else {},
            )
        )
    comparisons = [_compare(scenario, pair, metrics[pair.name], runs) for pair in compared]
    return ScenarioResult(
        name=scenario.name,
        problem=scenario.problem,
        dtype=scenario.dtype,
        hyperparameters=dict(scenario.hyper),
        steps=scenario.steps,
        seed=scenario.seed,
        size=scenario.elements,
        start_step=scenario.start_step,
        purpose=scenario.purpose,
        implementations=implementation_runs,
        comparisons=comparisons,
        tensors=list(workload.names),
        groups=[{"tensors": count, **overrides} for count, overrides in scenario.groups],
        lr_changes=[[step, factor] for step, factor in scenario.lr_changes],
        checkpoint_at=scenario.checkpoint_at,
        checkpoint_via=scenario.checkpoint_via,
        cell=cell,
    )


def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    implementations: Sequence[Implementation] = IMPLEMENTATIONS,
    pairs: Sequence[Pair] = PAIRS,
    cells: Sequence[int] | None = None,
    jobs: int = 1,
    isolated: bool = False,
    timeout: float | None = None,
    on_done: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Results in the order of ``scenarios``. ``cells`` numbers them within the whole selection
    (default 0, 1, …).

    With ``jobs > 1`` or ``isolated``, the cells run in supervised worker processes, the largest
    first (:mod:`conformance.workers`): an implementation that hangs (more than ``timeout``
    seconds on one scenario, by default :data:`~conformance.workers.DEFAULT_TIMEOUT`) or ends its
    process is shown failed and the run goes on. Otherwise they run here, one after another."""
    numbers = list(range(len(scenarios))) if cells is None else list(cells)
    if jobs <= 1 and not isolated:
        results: list[ScenarioResult] = []
        for scenario, cell in zip(scenarios, numbers, strict=True):
            results.append(run_scenario(scenario, implementations, pairs, cell))
            if on_done:
                on_done(results[-1])
        return results
    from conformance.workers import DEFAULT_TIMEOUT, run_supervised

    order = sorted(range(len(scenarios)), key=lambda i: -scenarios[i].elements * scenarios[i].steps)
    return run_supervised(
        scenarios,
        numbers,
        implementations,
        pairs,
        jobs=max(1, jobs),
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        order=order,
        on_done=on_done,
    )
