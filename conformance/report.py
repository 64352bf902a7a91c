"""Render a run's results as one self-contained HTML page (Jinja2, inline CSS and SVG) plus JSON."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from conformance.columns import layout
from conformance.comparisons import coverage
from conformance.environment import torch_warning
from conformance.plots import pair_colours, ulp_plot_svg
from conformance.results import Comparison, RunResult, write_json
from conformance.sampling import SEEDED, WHOLE_BELOW
from optimized.interrupts import interrupts_deferred

__all__ = [
    "REPORT_FILES",
    "InterruptedAfterWriting",
    "render_html",
    "unusable_report_directory",
    "write_report",
]

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("conformance", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _format_ulp(value: float | None) -> str:
    if value is None:
        return "–"
    if value == int(value) and value < 1e6:
        return f"{int(value)}"
    return f"{value:.3g}"


def _power_of_two(value: int | None) -> str:
    """A budget as the power of two it is (``2**36``), or as the integer it is."""
    if value is None:
        return "–"
    if value > 0 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return str(value)


def _budget_share(comparison: Comparison) -> str | None:
    """A bounded pair's largest normwise ULP as a share of its budget (``0.2 % of 2**8``), or ``None``."""
    if comparison.policy != "bounded" or not comparison.ulp_budget:
        return None
    share = 100 * (comparison.max_normwise_ulp or 0.0) / comparison.ulp_budget
    return f"{share:.2g} % of {_power_of_two(comparison.ulp_budget)}"


def _judged(comparison: Comparison) -> str:
    """The figure a cell's verdict was judged on, as the scenario's table shows it."""
    if comparison.policy == "bit-exact":
        differing = comparison.differing_scalar_steps or 0
        return "0 bits differ" if differing == 0 else f"{differing} scalar-steps differ"
    normwise, share = _format_ulp(comparison.max_normwise_ulp or 0.0), _budget_share(comparison)
    return f"{normwise} normwise ULP" if share is None else f"{normwise} ULP = {share}"


def _compact(comparison: Comparison) -> tuple[str, str]:
    """A summary cell's figure and, under it, what it is measured against (or where bits differ)."""
    if comparison.policy == "bit-exact":
        differing = comparison.differing_scalar_steps or 0
        if differing == 0:
            return "identical", ""
        return f"{differing} differ", f"from step {comparison.first_divergence}"
    normwise, share = f"{_format_ulp(comparison.max_normwise_ulp or 0.0)} ULP", _budget_share(comparison)
    if share is not None:
        return normwise, share
    return normwise, "expected" if comparison.policy == "finding" else "per dtype's budget"


def _divergence(comparison: Comparison) -> str:
    """Where bits first differ: step, quantity, tensor and element (or a dash)."""
    if not comparison.first_divergence:
        return "–"
    where = f"step {comparison.first_divergence}"
    if comparison.first_divergence_tensor is not None:
        where += (
            f", {comparison.first_divergence_quantity} of {comparison.first_divergence_tensor} "
            f"at {comparison.first_divergence_element}"
        )
    return where


def _checked(comparison: Comparison) -> str:
    """How the pair was checked, and on how much of what was stepped."""
    if comparison.checked_values is None or comparison.stepped_values is None:
        return comparison.mode
    if comparison.checked_values >= comparison.stepped_values:
        return f"{comparison.mode}, every value"
    checked, stepped = comparison.checked_values, comparison.stepped_values
    return f"{comparison.mode}, {coverage(checked, stepped)} of values ({checked:,} of {stepped:,})"


_TEMPLATES.filters["checked"] = _checked
_TEMPLATES.filters["compact"] = _compact
_TEMPLATES.globals.update(whole_below=f"{WHOLE_BELOW:,}", seeded=f"{SEEDED:,}")
_TEMPLATES.filters["ulp"] = _format_ulp
_TEMPLATES.filters["divergence"] = _divergence
_TEMPLATES.filters["power_of_two"] = _power_of_two
_TEMPLATES.filters["judged"] = _judged


@dataclass(frozen=True)
class _GroupVerdict:
    """A bit-exact group's cell: a mark, a few words, a note under them, and each pair's reason."""

    status: str
    mark: str
    text: str
    note: str
    title: str


def _group_verdict(cell: Sequence[Comparison]) -> _GroupVerdict:
    """One mark for a group's comparisons in a scenario: ✗ where any fails, ◆ where one is an
    expected divergence, ✓ where every one that ran holds, – where none ran."""
    ran = [c for c in cell if c.status != "skipped"]
    failing = [c for c in ran if c.status == "fails"]
    skipped = len(cell) - len(ran)
    title = "; ".join(f"{c.pair}: {c.reason}" for c in cell)
    aside = f"{skipped} not run" if skipped else ""
    if failing:
        steps = [c.first_divergence for c in failing if c.first_divergence]
        since = f"from step {min(steps)}" if steps else "a run failed"
        return _GroupVerdict("fails", "✗", f"{len(failing)} of {len(ran)} fail", since, title)
    if any(c.status == "finding" for c in ran):
        return _GroupVerdict("finding", "◆", "expected", aside, title)
    if not ran:
        return _GroupVerdict("skipped", "–", "not run", "", title)
    return _GroupVerdict("holds", "✓", f"{len(ran)} identical", aside, title)


_TEMPLATES.filters["group_verdict"] = _group_verdict


def render_html(result: RunResult) -> str:
    """The page for ``result``; all data comes from ``result``, plots are rendered here."""
    columns = layout(result)
    table: list[dict[str, Any]] = []
    for scenario in result.scenarios:
        by_pair = {c.pair: c for c in scenario.comparisons}
        cells = [(column, column.cell(by_pair)) for column in columns.columns]
        table.append({"scenario": scenario, "cells": cells})
    drawn = {c.pair for c in result.comparisons if c.policy != "bit-exact"}  # in the upper panels
    colours = pair_colours(
        [str(p["name"]) for p in result.pairs if p["name"] in drawn]
    )  # one each, page-wide
    plots = {scenario.name: ulp_plot_svg(scenario, colours, columns.columns) for scenario in result.scenarios}
    folded = set(columns.not_run_here)
    return _TEMPLATES.get_template("report.html.j2").render(
        result=result,
        layout=columns,
        not_run_here_count=sum(1 for c in result.comparisons if c.pair in folded),
        table=table,
        plots=plots,
        compilation_seconds=sum(s.compilation_seconds for s in result.scenarios),
        torch_warning=torch_warning(result.environment),
    )


REPORT_FILES = frozenset({"index.html", "results.json"})
_STAGING = ".asgd-report-"


def unusable_report_directory(directory: Path) -> str | None:
    """Why a report cannot be written to ``directory`` (replacing a report there is fine), or ``None``."""
    if directory.exists() and not directory.is_dir():
        return f"{directory} exists and is not a directory"
    if directory.is_dir():
        others = sorted(entry.name for entry in directory.iterdir() if entry.name not in REPORT_FILES)
        if others:
            listed = ", ".join(others[:3])
            return f"{directory} holds other files than a report ({listed}); choose a new directory"
    # The report is staged beside the directory, then moved into place: try that place for real
    # (permission bits say nothing to root, and some file systems refuse files whatever they say).
    existing = next((p for p in directory.parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{directory} cannot be created (no directory above it)"
    try:
        tempfile.TemporaryDirectory(prefix=_STAGING, dir=existing).cleanup()
    except OSError as error:
        return f"{directory} cannot be written ({error.strerror or error})"
    return None


class InterruptedAfterWriting(KeyboardInterrupt):
    """A Ctrl-C that came while the new report was being put in place: it is there, whole."""

    def __init__(self, page: Path) -> None:
        super().__init__(str(page))
        self.page = page


def write_report(result: RunResult, directory: Path) -> Path:
    """Write ``index.html`` and ``results.json`` into ``directory``; returns the page's path.

    Both are written into a new directory beside it, which then takes ``directory``'s place (a
    Ctrl-C is held back for the two renames), so ``directory`` holds a whole report, the new one or
    the one it held, whenever the run ends. A Ctrl-C held back until the new one is in place is
    raised as :class:`InterruptedAfterWriting`.
    """
    directory = directory.resolve()
    problem = unusable_report_directory(directory)
    if problem is not None:
        raise ValueError(problem)
    directory.parent.mkdir(parents=True, exist_ok=True)
    html = render_html(result)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=directory.parent))
    try:
        (staging / "index.html").write_text(html, encoding="utf-8")
        write_json(result, staging / "results.json")
        staging.chmod(directory.stat().st_mode & 0o7777 if directory.exists() else _default_directory_mode())
        committed = False
        try:
            with interrupts_deferred():
                if directory.exists():
                    retired = Path(tempfile.mkdtemp(prefix=_STAGING, dir=directory.parent))
                    os.replace(directory, retired / "old")
                    os.replace(staging, directory)
                    shutil.rmtree(retired)
                else:
                    os.replace(staging, directory)
                committed = True
        except KeyboardInterrupt as interrupt:
            if committed:  # held back during the renames, raised after them
                raise InterruptedAfterWriting(directory / "index.html") from interrupt
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory / "index.html"


def _default_directory_mode() -> int:
    """The mode ``mkdir`` gives a new directory under the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask
