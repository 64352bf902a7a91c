"""``conformance.check``: your implementation against the reference and torch, from your own tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.registry import ClaimsName, Style
    from conformance.results import RunResult
    from conformance.scenarios import Selection

__all__ = ["assert_conforms", "check"]

MOST_CHARACTERS = 1000
"""The longest message :func:`assert_conforms` raises, however many steps fail."""


def check(
    factory: Callable[..., Any] | str,
    claims: ClaimsName = "torch",
    full: bool = False,
    *,
    style: Style | None = None,
    only: str | None = None,
    jobs: int = 1,
    full_coverage: bool = False,
    selection: Selection | None = None,
) -> RunResult:
    """Run the quick (or ``full``) set through ``factory`` and what it claims to match; write nothing.

    ``factory`` follows the protocol of :mod:`conformance.external` (or is its ``MODULE:FACTORY``
    spec). With ``claims="torch"`` it must match the reference's torch profile and torch's for-loop
    path bit for bit, with ``"torch-foreach"`` the torch-foreach profile and torch's foreach path,
    with ``"numpy"`` the numpy profile (``"fast"``, its old name, is accepted), and with ``"none"``
    stay within the bounded budget of torch's for-loop path. The result's ``holds`` is the verdict
    (it needs at least one comparison judged); ``failures`` name the scenario, the pair, the step,
    the tensor and the element.
    Scenarios it declines with :class:`~conformance.Unsupported` are skipped with the reason.
    ``style`` (``"numpy"`` or ``"torch"``) says how the factory takes its parameters; without it
    the style is told from what the factory builds (:func:`conformance.external.detect_style`).
    With ``jobs=1`` the scenarios run in this process (a debugger stops in them); with
    ``jobs > 1`` in forked, supervised worker processes, where a factory that hangs or ends its
    process is failed and the run goes on. The reference judges each step from the factory's own
    state (lockstep); ``full_coverage`` makes it compute every value of the large tensors too.
    ``selection`` (``"smoke"``, ``"quick"`` or ``"full"``) names the set instead of ``full``: the
    smoke set takes seconds, for a unit test; the quick and full sets are for CI.
    """
    from conformance.external import ExternalImplementation, pairs_for
    from conformance.implementations import IMPLEMENTATIONS, Implementation
    from conformance.lockstep import Checking
    from conformance.registry import CLAIMED
    from conformance.run import run_conformance
    from conformance.scenarios import select_scenarios, selection_named

    chosen = selection_named(full, selection)
    if not select_scenarios(full=full, only=only, selection=selection):
        raise ValueError(f"no scenario of the {chosen} set matches only={only!r}")
    external = ExternalImplementation(factory, claims, style)
    external.factory()  # a spec is imported now: its error is the caller's, before anything runs
    torch_installed = importlib.util.find_spec("torch") is not None
    implementations: list[Implementation] = [
        i
        for i in IMPLEMENTATIONS
        if i.name in CLAIMED[external.claims].judges and (torch_installed or not i.name.startswith("torch-"))
    ]
    return run_conformance(
        full=full,
        only=only,
        selection=selection,
        jobs=jobs,
        statistics=False,
        implementations=[*implementations, external],
        pairs=pairs_for(external),
        command=f"conformance.check({external.name}, claims={claims!r}, selection={chosen!r})",
        checking=Checking(full_coverage=full_coverage),
    )


def assert_conforms(
    factory: Callable[..., Any] | str,
    claims: ClaimsName = "torch",
    selection: Selection = "quick",
    **options: Any,
) -> None:
    """:func:`check` for a test: nothing if every verdict holds, else an ``AssertionError`` whose
    message is the run's summary and its first failures, at most :data:`MOST_CHARACTERS` long.
    ``options`` are :func:`check`'s (``style``, ``only``, ``jobs``, ``full_coverage``)."""
    result = check(factory, claims, selection=selection, **options)
    if not result.holds:
        raise AssertionError(result.brief(MOST_CHARACTERS))
