"""Render a run's results as one self-contained HTML page (Jinja2, inline CSS and SVG) plus JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from conformance.plots import ulp_plot_svg
from conformance.results import RunResult, write_json

__all__ = ["render_html", "write_report"]

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


_TEMPLATES.filters["ulp"] = _format_ulp


def render_html(result: RunResult) -> str:
    """The page for ``result``; all data comes from ``result``, plots are rendered here."""
    pair_names = [pair["name"] for pair in result.pairs]
    table: list[dict[str, Any]] = []
    for scenario in result.scenarios:
        cells = {c.pair: c for c in scenario.comparisons}
        table.append({"scenario": scenario, "cells": [cells.get(name) for name in pair_names]})
    plots = {scenario.name: ulp_plot_svg(scenario) for scenario in result.scenarios}
    return _TEMPLATES.get_template("report.html.j2").render(
        result=result, pair_names=pair_names, table=table, plots=plots
    )


def write_report(result: RunResult, directory: Path) -> Path:
    """Write ``index.html`` and ``results.json`` into ``directory``; returns the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    page = directory / "index.html"
    page.write_text(render_html(result), encoding="utf-8")
    write_json(result, directory / "results.json")
    return page
