"""Per-scenario plots, rendered by matplotlib as inline SVG (no files, nothing fetched).

The upper panel shows, per step, the normwise ULP distance of every pair that is not bit-exact, in
the parameters (solid) and the averages (dashed), with the pair's budget as a dotted line. Each such
pair has its own colour from a colour-blind-safe palette (Okabe and Ito's, then Tol's) and its own
marker, the same in every plot of the page; no two pairs share a colour. The lower strip has a row
per bit-exact group (:mod:`conformance.columns`): a thin grey line when every pair of the group
holds, and a red tick at every step where any bit of any of its pairs differs. Red means that and
nothing else.

Every label is at least 9 points at the figure's own size, and the page draws the figure at its
full width, never smaller. A late run's steps are counted from its start (the axis says from where),
so that seven-digit step numbers do not run together. Names (of scenarios and pairs) are drawn as
plain text, never as mathtext or TeX; a series longer than :data:`_MOST_POINTS` is drawn as its
envelope, so a plot's size does not grow with the steps.
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Sequence
from typing import Any, Final

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator, SymmetricalLogLocator

from conformance.columns import Column, row_of
from conformance.results import Comparison, ScenarioResult

__all__ = ["pair_colours", "ulp_plot_svg"]

_COLOURS: Final = (
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#000000",  # Okabe and Ito, without red
    "#332288", "#999933", "#882255", "#44aa99", "#aa4499", "#ddcc77", "#117733", "#88ccee",  # Tol's muted
)  # fmt: skip
"""Colours for the pairs drawn in the upper panel; none is red, which marks differing bits."""
_MARKERS: Final = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h")
_DIFFERS: Final = "#c62828"
"""Red: bits differ."""
_QUIET: Final = "#9e9e9e"
"""A bit-exact group's line: no information, so no colour."""
_SMALLEST: Final = 9.0
"""The smallest label, in points."""
_LATE: Final = 10_000
"""A run that starts after this step counts its steps from its start on the axis."""


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
    tick_labels = _width_in_points(["10³⁰⁰"], _SMALLEST)
    left = max(_width_in_points(row_labels, _SMALLEST), tick_labels + 2 * _SMALLEST) + 12
    right = _width_in_points(legend, _SMALLEST) + 44 if legend else 12.0  # the handles before the labels
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - 30 / height,  # the title
        bottom=44 / height,  # the step numbers and their label
        hspace=0.3,  # the strip's title between the panels
    )


def _colour(index: int) -> str:
    """The ``index``-th pair's colour: the palette's, then hues spread around the circle (distinct,
    if no longer distinguishable to every eye: the markers tell those apart)."""
    if index < len(_COLOURS):
        return _COLOURS[index]
    hue = 0.1 + 0.8 * ((0.618034 * index) % 1.0)  # never within 36 degrees of red, which marks bits
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.55 + 0.3 * (index % 2))
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def pair_colours(pair_names: Sequence[str]) -> dict[str, str]:
    """One colour per pair, the same in every plot, no two alike."""
    colours: dict[str, str] = {}
    index = 0
    for name in pair_names:
        while (colour := _colour(index)) in colours.values() or colour == _DIFFERS:
            index += 1
        colours[name] = colour
        index += 1
    return colours


def _marker(colours: dict[str, str], pair: str) -> str:
    names = list(colours)
    return _MARKERS[names.index(pair) % len(_MARKERS)] if pair in colours else "o"


def _strip_rows(exact: Sequence[Comparison], columns: Sequence[Column]) -> dict[str, list[Comparison]]:
    """The bit-exact comparisons by the strip's rows: a group's together, a pair of no group alone."""
    rows: dict[str, list[Comparison]] = {}
    for comparison in exact:
        rows.setdefault(row_of(comparison, columns), []).append(comparison)
    return rows


def _differing(comparisons: Sequence[Comparison]) -> list[int]:
    """Values whose bits differ at each step, summed over ``comparisons``."""
    longest = max((len(c.differing_per_step) for c in comparisons), default=0)
    padded = [[*c.differing_per_step, *[0] * (longest - len(c.differing_per_step))] for c in comparisons]
    return [sum(column) for column in zip(*padded, strict=True)]


def ulp_plot_svg(scenario: ScenarioResult, colours: dict[str, str], columns: Sequence[Column] = ()) -> str:
    """The scenario's plot (see the module's docstring) as an inline ``<svg>``; ``columns`` group the
    bit-exact pairs into the strip's rows (none given: a row per pair)."""
    compared = [c for c in scenario.comparisons if c.max_normwise_ulp is not None]
    bounded = [c for c in compared if c.policy != "bit-exact"]
    rows = _strip_rows([c for c in compared if c.policy == "bit-exact"], columns)
    late = scenario.start_step > _LATE
    shift = scenario.start_step if late else 0  # the axis counts a late run's steps from its start
    first, last = scenario.start_step + 1 - shift, scenario.start_step + scenario.steps - shift
    # A Figure of its own, outside pyplot's registry: nothing is left open, even by an interrupt.
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": scenario.name, "font.size": _SMALLEST, "text.usetex": False}
    ):
        count = max(len(rows), 1)
        figure = Figure(figsize=(11, 3.9 + 0.22 * count))
        upper, strip = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [2.6, 0.25 + 0.22 * count]}
        )
        figure.suptitle(
            f"{_label(scenario.name)}: normwise ULP per step, and differing bits of the bit-exact pairs",
            fontsize=_SMALLEST + 1,
        )
        for c in bounded:
            colour, pair, marker = colours.get(c.pair, "#444444"), _label(c.pair), _marker(colours, c.pair)
            steps, values = _envelope(c.normwise_ulp_per_step_parameters, first)
            # each series as long as its implementations ran (fewer steps where one stopped)
            upper.plot(steps, values, color=colour, linewidth=1.3, drawstyle="steps-post", marker=marker,
                       markersize=5, markevery=max(1, len(steps) // 8), label=pair)  # fmt: skip
            upper.plot(*_envelope(c.normwise_ulp_per_step_averages, first), color=colour, linewidth=1.0,
                       linestyle="--", drawstyle="steps-post")  # fmt: skip
            if c.ulp_budget:
                upper.axhline(c.ulp_budget, color=colour, linestyle=":", linewidth=1.0)
        upper.set_yscale("symlog", linthresh=1)
        upper.yaxis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1))
        upper.yaxis.get_major_locator().set_params(numticks=7)
        upper.yaxis.set_minor_locator(NullLocator())
        upper.yaxis.set_major_formatter(FuncFormatter(_tick_label))
        upper.set_ylim(bottom=0)
        upper.set_ylabel("normwise ULP")
        if not bounded:
            upper.text(0.5, 0.5, "no bounded pair ran in this scenario", transform=upper.transAxes,
                       ha="center", va="center", color="#666666")  # fmt: skip
        labels = []
        for row, (title, members) in enumerate(rows.items()):
            alone = len(members) == 1 and title == members[0].pair
            labels.append(_label(title if alone else f"{title} ({len(members)})"))
            strip.plot([first, last], [row, row], color=_QUIET, linewidth=1.5, solid_capstyle="butt")
            steps, counts = _envelope(_differing(members), first)
            differing = counts > 0
            if differing.any():
                strip.scatter(steps[differing], np.full(int(differing.sum()), row), marker="|",
                              color=_DIFFERS, s=110, linewidths=2, zorder=3)  # fmt: skip
        strip.set_yticks(range(len(rows)), labels)
        strip.set_ylim(-0.6, count - 0.4)
        strip.invert_yaxis()
        strip.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        strip.set_xlabel(f"step after step {shift:,} (1 is step {shift + 1:,})" if late else "step")
        strip.set_title("bit-exact pairs by group: red where any bit differs", loc="left", fontsize=_SMALLEST)
        strip.ticklabel_format(axis="x", useOffset=False, style="plain")
        upper.grid(True, which="major", linewidth=0.3, alpha=0.6)
        strip.grid(True, axis="x", which="major", linewidth=0.3, alpha=0.6)
        legend = [_label(c.pair) for c in bounded]
        if legend:
            handles = upper.get_legend_handles_labels()[0]
            keys = [Line2D([], [], color="#444", linestyle=dash, linewidth=1.2) for dash in ("-", "--", ":")]
            keyed = ["parameters (solid)", "averages (dashed)", "budget (dotted)"]
            upper.legend([*handles, *keys], [*legend, *keyed], fontsize=_SMALLEST, loc="upper left",
                         bbox_to_anchor=(1.01, 1.0), frameon=False)  # fmt: skip
            legend += keyed
        _fit_margins(figure, labels, legend)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype for inline use
