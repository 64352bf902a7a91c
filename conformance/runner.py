"""Run scenarios through the implementations and compare the pairs: scenarios → runs → verdicts.

Every implementation of a scenario is stepped in lock step: each computes its gradients at its own
parameters, steps, and then every pair is compared on that step's values. An implementation that
declines (:class:`~conformance.sessions.Unsupported`) is shown skipped with its reason; one that
raises, or hands back a parameter or average of the wrong shape or dtype, is shown failed with what
it did, and every pair it belongs to fails; the run goes on with the others.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from conformance.comparisons import Outcome, compare
from conformance.compilation import compiling_between, watch_compilation
from conformance.diagnosis import diagnosed
from conformance.implementations import COMPILED_TAG, IMPLEMENTATIONS, Implementation
from conformance.lockstep import LOCKSTEP, Checking, Lockstep
from conformance.metrics import PairMetrics
from conformance.reference_judge import ReferenceJudge
from conformance.registry import IDS, PAIRS, check_pairs
from conformance.results import ImplementationRun, ScenarioResult
from conformance.scenarios import Scenario
from conformance.sessions import Session, Unsupported, group_lrs
from conformance.shared_gradients import SharedGradients
from conformance.verdicts import Pair, policy_for
from conformance.workloads import Workload, make_workload

__all__ = ["Checking", "Watch", "run_scenario", "run_scenarios"]


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
    not_run_here: bool = False
    """Skipped because this machine lacks what it needs (a device, a library), not by design."""
    compiling: float = 0.0
    """Seconds of its steps spent compiling (:mod:`conformance.compilation`), not in ``seconds``."""

    def stop(self, status: str, reason: str) -> None:
        self.session, self.status, self.reason, self.values = None, status, reason, None


def _switch(watch: Watch, reference: int, implementation: int, to_reference: bool, index: int) -> None:
    watch.enter(reference if to_reference else implementation, index)


def _lrs_at(scenario: Scenario, index: int) -> list[float]:
    """Each group's lr at step ``index``: its initial lr times the factor of the last change so far."""
    factor = next((f for step, f in sorted(scenario.lr_changes, reverse=True) if step <= index), 1.0)
    return [base * factor for base in group_lrs(scenario)]


def _advance(
    running: _Running,
    scenario: Scenario,
    shared: SharedGradients,
    index: int,
    expected: list[Any],
    checks: Sequence[Lockstep] = (),
) -> None:
    """Step ``running`` once (``index`` counts from 1) and keep its values for the comparisons;
    each of ``checks`` judges the step from the state before it."""
    session = running.session
    assert session is not None
    changes = dict(scenario.lr_changes)
    lrs = _lrs_at(scenario, index)
    if index in changes:
        for group, lr in enumerate(lrs):
            session.set_lr(group, lr)
    gradients = shared.at(session.parameters(), scenario.start_step + index - 1)
    for check in checks:
        check.before(session, gradients, lrs, index)
    started = time.perf_counter()
    session.step(gradients)
    ended = time.perf_counter()
    compiled = compiling_between(started, ended)
    running.seconds += ended - started - compiled
    running.compiling += compiled
    running.values = (
        _checked("the parameters", session.parameters(), expected),
        _checked("averages()", session.averages(), expected),
    )
    for check in checks:
        check.after(session, running.values, index)
    if index == scenario.checkpoint_at:
        session.checkpoint(scenario.checkpoint_via)


_Errors = tuple[type[BaseException], ...]
_IMPLEMENTATION_ERRORS: _Errors = (Exception, SystemExit)  # a user's code may call sys.exit
_IN_A_WORKER: _Errors = (*_IMPLEMENTATION_ERRORS, KeyboardInterrupt)
"""In a worker process, which ignores Ctrl-C, a ``KeyboardInterrupt`` comes from an implementation."""


def _skipped(implementation: Implementation, reason: str) -> _Running:
    """An implementation that does not run the scenario, and whether for want of this machine."""
    return _Running(
        None, status="skipped", reason=reason, not_run_here=reason == implementation.unavailable()
    )


def _start(
    implementation: Implementation,
    scenario: Scenario,
    workload: Workload,
    errors: tuple[type[BaseException], ...],
) -> _Running:
    reason = implementation.skip_reason(scenario)
    if reason is not None:
        return _skipped(implementation, reason)
    try:
        return _Running(implementation.start(scenario, workload))
    except Unsupported as unsupported:
        return _Running(None, status="skipped", reason=str(unsupported))
    except errors as error:
        gap = implementation.declines(scenario, error) if isinstance(error, Exception) else None
        if gap is not None:
            return _Running(None, status="skipped", reason=gap)
        return _Running(None, status="failed", reason=f"could not start: {_describe(error)}")


def _judged_in_lockstep(
    implementation: Implementation, pairs: Sequence[Pair], checking: Checking, scenario: Scenario
) -> bool:
    """Whether a reference judges its pairs in lockstep: each is bit-exact with it on the left."""
    mine = [pair for pair in pairs if implementation.name in (pair.left, pair.right)]
    return (
        checking.lockstep
        and implementation.reference_profile is not None
        and all(
            pair.left == implementation.name
            and policy_for(pair, scenario.expected_divergence).kind == "bit-exact"
            for pair in mine
        )
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
    checking: Checking = LOCKSTEP,
    diagnose: bool = True,
) -> ScenarioResult:
    """Run one scenario × seed cell through ``implementations`` and compare ``pairs`` at every step.

    A reference judges its pairs in lockstep (:mod:`conformance.lockstep`) unless ``checking``
    says otherwise or one of its pairs is not bit-exact; every other pair compares the two
    implementations' trajectories at every step, in full.
    ``watch`` is told whose code runs when; the implementations ``excluded`` name are not run and
    are shown failed with the reason given (one that hung or ended its process in an earlier try).
    ``in_a_worker``: in a worker process, which ignores Ctrl-C, a ``KeyboardInterrupt`` can only
    come from an implementation's code, and fails it; elsewhere it interrupts the run."""
    watch = watch or _Unwatched()
    watch_compilation()
    errors = _IN_A_WORKER if in_a_worker else _IMPLEMENTATION_ERRORS
    excluded = excluded or {}
    workload = make_workload(scenario)
    shared = SharedGradients(workload)
    initial = workload.initial()
    expected = [(array.dtype, array.shape) for array in initial]
    runs: dict[str, _Running] = {}
    judges: dict[str, ReferenceJudge] = {}
    for number, implementation in enumerate(implementations):
        if implementation.name in excluded:
            runs[implementation.name] = _Running(None, status="failed", reason=excluded[implementation.name])
            continue
        if _judged_in_lockstep(implementation, pairs, checking, scenario):
            reason = implementation.skip_reason(scenario)
            runs[implementation.name] = _Running(None) if reason is None else _skipped(implementation, reason)
            if reason is None:
                assert implementation.reference_profile is not None
                judges[implementation.name] = ReferenceJudge(
                    implementation.reference_profile,
                    scenario,
                    initial,
                    full_coverage=checking.full_coverage,
                    variant=implementation.variant,
                )
            continue
        watch.enter(number, 0)
        runs[implementation.name] = _start(implementation, scenario, workload, errors)
        watch.leave()
    numbers = {implementation.name: number for number, implementation in enumerate(implementations)}
    check_pairs(pairs, IDS | numbers.keys())  # a pair of an id no one has is a mistake, not a choice
    compared = [pair for pair in pairs if pair.left in runs and pair.right in runs]
    metrics = {pair.name: PairMetrics() for pair in compared}
    locksteps = {  # the reference's time is its own, and so is a hang in it: the watch switches to it
        pair.name: Lockstep(
            judges[pair.left],
            workload.names,
            metrics[pair.name],
            functools.partial(_switch, watch, numbers[pair.left], numbers[pair.right]),
        )
        for pair in compared
        if pair.left in judges
    }
    checks = {
        name: [locksteps[p.name] for p in compared if p.right == name and p.name in locksteps]
        for name in runs
    }
    for index in range(1, scenario.steps + 1):
        for name, running in runs.items():
            if running.session is None:
                continue
            watch.enter(numbers[name], index)
            try:
                _advance(running, scenario, shared, index, expected, checks[name])
            except Unsupported as declined:
                running.stop("skipped", f"declined at step {index}: {declined}")
            except errors as error:
                running.stop("failed", f"at step {index}: {_describe(error)}")
            watch.leave()
        for pair in compared:
            left, right = runs[pair.left].values, runs[pair.right].values
            if left is not None and right is not None and pair.name not in locksteps:
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
        if name in judges:  # a reference that judged in lockstep: its time is its computations'
            clocks = judges[name].last_clocks
            running.seconds = judges[name].seconds
            scalars = None if clocks is None else (float(clocks[0]), float(clocks[1]), float(clocks[2]))
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
    outcomes = {
        name: Outcome(running.status, running.reason, running.not_run_here) for name, running in runs.items()
    }
    comparisons = [
        compare(scenario, pair, metrics[pair.name], outcomes, locksteps.get(pair.name)) for pair in compared
    ]
    if diagnose:  # what is wrong, for each failing pair against a reference: only now, only here
        stepped = {
            i.name: i for i in implementations if outcomes[i.name].status == "ran" and i.name not in judges
        }
        profiles = {  # the references, judging in lockstep or (--trajectory) running beside
            i.name: i.reference_profile for i in implementations if i.reference_profile is not None
        }
        in_lockstep = Checking(lockstep=True, full_coverage=checking.full_coverage)  # the run's coverage
        rerun = functools.partial(run_scenario, checking=in_lockstep)
        comparisons = diagnosed(scenario, comparisons, stepped, profiles, rerun)
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
        compilation_seconds=sum(running.compiling for running in runs.values()),
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
    checking: Checking = LOCKSTEP,
) -> list[ScenarioResult]:
    """Results in the order of ``scenarios``. ``cells`` numbers them within the whole selection
    (default 0, 1, …); ``checking`` says how the reference's pairs are checked.

    With ``jobs > 1`` or ``isolated``, the cells run in supervised worker processes, the largest
    first (:mod:`conformance.workers`): an implementation that hangs (more than ``timeout``
    seconds on one scenario, by default :data:`~conformance.workers.DEFAULT_TIMEOUT`) or ends its
    process is shown failed and the run goes on. Otherwise they run here, one after another."""
    numbers = list(range(len(scenarios))) if cells is None else list(cells)
    if jobs <= 1 and not isolated:
        results: list[ScenarioResult] = []
        for scenario, cell in zip(scenarios, numbers, strict=True):
            results.append(run_scenario(scenario, implementations, pairs, cell, checking=checking))
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
        checking=checking,
        warms=["torch.compile" if COMPILED_TAG in scenario.tags else None for scenario in scenarios],
    )
