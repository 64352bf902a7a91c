"""Per-scenario plots, rendered by matplotlib as inline SVG (no files, nothing fetched).

The upper panel shows, per step, the normwise ULP distance of every pair that is not bit-exact, in
the parameters (solid) and the averages (dashed), with the pair's budget as a dotted line in its
colour. The lower strip has a row per bit-exact pair: a thin line in the pair's colour, and a red
mark, sized by their number, at every step where any bit differs; a bare line is the claim holding.
A pair has the same colour in every plot of the page.

Names (of scenarios and pairs) are drawn as plain text, never as mathtext or TeX; a series longer
than :data:`_MOST_POINTS` is drawn as its envelope, so a plot's size does not grow with the steps.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, Final

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter

from conformance.results import ScenarioResult

__all__ = ["pair_colours", "ulp_plot_svg"]

_COLOURS = (
    "#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#66408f", "#00798c", "#8d6a9f", "#6b4226",
    "#e377c2", "#7f7f7f", "#17becf", "#bcbd22",
)  # fmt: skip


_MOST_POINTS: Final = 2000
"""The most points a series is drawn with. A longer one is drawn as the largest value in each of
this many runs of consecutive steps: a plot is about 700 pixels wide, and the peaks stay. (The
longest scenario runs 1,500 steps; a results.json a merge reads may hold a million.)"""

_HIGHEST: Final = 1e300
"""The highest value a plot draws; a higher one is drawn at it (near binary64's largest,
matplotlib's arithmetic on the axis limits overflows)."""

_LONGEST_LABEL: Final = 200
"""The most characters of a name a plot draws."""


def _label(name: str) -> str:
    """``name`` as matplotlib is to draw it, whatever it holds: cut to :data:`_LONGEST_LABEL`
    characters, and each ``$`` escaped (two start mathtext, whose parser raises on most text)."""
    if len(name) > _LONGEST_LABEL:
        name = name[: _LONGEST_LABEL - 1] + "…"
    return name.replace("$", r"\$")


def _envelope(values: Sequence[float], first_step: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``values``, one per step from ``first_step`` on, as at most :data:`_MOST_POINTS` points
    ``(steps, values)``: each the first step of a run of consecutive steps and the largest value in
    the run (a run of one step where there are few enough), at most :data:`_HIGHEST`."""
    series = np.minimum(np.asarray(values, dtype=np.float64), _HIGHEST)
    width = max(1, -(-len(series) // _MOST_POINTS))
    starts = np.arange(0, len(series), width)
    if width > 1:
        series = np.maximum.reduceat(series, starts)
    return first_step + starts, series


_SUPERSCRIPT: Final = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_label(value: float, _position: object = None) -> str:
    """A tick of the ULP axis in plain text: a power of ten as ``10³`` (matplotlib's own labels are
    mathtext, whose parser takes a third of the time a plot takes to draw)."""
    if value == 0:
        return "0"
    exponent = math.log10(abs(value))
    if exponent == round(exponent):
        return ("\N{MINUS SIGN}" if value < 0 else "") + "10" + str(round(exponent)).translate(_SUPERSCRIPT)
    return f"{value:g}"


def _width_in_points(texts: Sequence[str], size: float) -> float:
    """The widest of ``texts`` as matplotlib draws it in plain text at ``size`` points."""
    measure = TextToPath()
    font = FontProperties(size=size)
    return max((measure.get_text_width_height_descent(t, font, ismath=False)[0] for t in texts), default=0.0)


def _fit_margins(figure: Figure, row_labels: Sequence[str], legend: Sequence[str]) -> None:
    """Margins that hold the strip's row labels on the left and the legend on the right, measured
    from the texts themselves (a layout engine would draw the whole figure once more to find them)."""
    width, height = (72 * inches for inches in figure.get_size_inches())
    left = max(_width_in_points(row_labels, 6), 30.0) + 14  # the labels, the ticks and the y axis's label
    right = _width_in_points(legend, 7) + 36 if legend else 10.0  # the handles before the labels
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - 24 / height,  # the title
        bottom=34 / height,  # the step numbers and their label
        hspace=0.18,  # the strip's title between the panels
    )


def pair_colours(pair_names: Sequence[str]) -> dict[str, str]:
    """One colour per pair, the same in every plot."""
    return {name: _COLOURS[index % len(_COLOURS)] for index, name in enumerate(pair_names)}


def ulp_plot_svg(scenario: ScenarioResult, colours: dict[str, str]) -> str:
    """The scenario's plot (see the module's docstring) as an inline ``<svg>``."""
    compared = [c for c in scenario.comparisons if c.max_normwise_ulp is not None]
    bounded = [c for c in compared if c.policy != "bit-exact"]
    exact = [c for c in compared if c.policy == "bit-exact"]
    first, last = scenario.start_step + 1, scenario.start_step + scenario.steps
    # A Figure of its own, outside pyplot's registry: nothing is left open, even by an interrupt.
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": scenario.name, "font.size": 8, "text.usetex": False}
    ):
        rows = max(len(exact), 1)
        figure = Figure(figsize=(10, 2.8 + 0.16 * rows))
        upper, strip = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [2.6, 0.2 + 0.16 * rows]}
        )
        figure.suptitle(
            f"{_label(scenario.name)}: normwise ULP per step, and differing bits of the bit-exact pairs"
        )
        for c in bounded:
            colour, pair = colours.get(c.pair, "#444444"), _label(c.pair)
            # each series as long as its implementations ran (fewer steps where one stopped)
            upper.plot(*_envelope(c.normwise_ulp_per_step_parameters, first), color=colour, linewidth=1.2,
                       drawstyle="steps-post", label=f"{pair} (parameters)")  # fmt: skip
            upper.plot(*_envelope(c.normwise_ulp_per_step_averages, first), color=colour, linewidth=1.0,
                       linestyle="--", drawstyle="steps-post", label=f"{pair} (averages)")  # fmt: skip
            if c.ulp_budget:
                upper.axhline(c.ulp_budget, color=colour, linestyle=":", linewidth=1.0,
                              label=f"budget of {pair}")  # fmt: skip
        upper.set_yscale("symlog", linthresh=1)
        upper.yaxis.set_major_formatter(FuncFormatter(_tick_label))
        upper.set_ylim(bottom=0)
        upper.set_ylabel("normwise ULP")
        if not bounded:
            upper.text(0.5, 0.5, "no bounded pair ran in this scenario", transform=upper.transAxes,
                       ha="center", va="center", color="#666666")  # fmt: skip
        for row, c in enumerate(exact):
            colour = colours.get(c.pair, "#444444")
            strip.plot([first, last], [row, row], color=colour, linewidth=2.0, solid_capstyle="butt")
            steps, counts = _envelope(c.differing_per_step, first)
            differing = counts > 0
            if differing.any():
                sizes = np.minimum(200, 20 + 10 * counts[differing])
                strip.scatter(steps[differing], np.full(int(differing.sum()), row), marker="|",
                              color="#c62828", s=sizes, zorder=3)  # fmt: skip
        strip.set_yticks(range(len(exact)), [_label(c.pair) for c in exact], fontsize=6)
        strip.set_ylim(-0.7, max(len(exact), 1) - 0.3)
        strip.invert_yaxis()
        strip.set_xlabel("step")
        strip.set_title("bit-exact pairs: red where any bit differs", fontsize=7, loc="left")
        strip.ticklabel_format(axis="x", useOffset=False, style="plain")
        upper.grid(True, which="major", linewidth=0.3, alpha=0.6)
        strip.grid(True, axis="x", which="major", linewidth=0.3, alpha=0.6)
        legend = upper.get_legend_handles_labels()[1]
        if legend:
            upper.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _fit_margins(figure, [_label(c.pair) for c in exact], legend)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype for inline use
