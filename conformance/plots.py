"""Per-scenario plots, rendered by matplotlib as inline SVG (no files, nothing fetched).

The upper panel shows, per step, the normwise ULP distance of every pair that is not bit-exact, in
the parameters (solid) and the averages (dashed), with the pair's budget as a dotted line in its
colour. The lower strip has a row per bit-exact pair: a thin line in the pair's colour, and a red
mark, sized by their number, at every step where any bit differs; a bare line is the claim holding.
A pair has the same colour in every plot of the page.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

from conformance.results import ScenarioResult

__all__ = ["pair_colours", "ulp_plot_svg"]

_COLOURS = (
    "#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#66408f", "#00798c", "#8d6a9f", "#6b4226",
    "#e377c2", "#7f7f7f", "#17becf", "#bcbd22",
)  # fmt: skip


def pair_colours(pair_names: Sequence[str]) -> dict[str, str]:
    """One colour per pair, the same in every plot."""
    return {name: _COLOURS[index % len(_COLOURS)] for index, name in enumerate(pair_names)}


def ulp_plot_svg(scenario: ScenarioResult, colours: dict[str, str]) -> str:
    """The scenario's plot (see the module's docstring) as an inline ``<svg>``."""
    compared = [c for c in scenario.comparisons if c.max_normwise_ulp is not None]
    bounded = [c for c in compared if c.policy != "bit-exact"]
    exact = [c for c in compared if c.policy == "bit-exact"]
    steps = list(range(scenario.start_step + 1, scenario.start_step + scenario.steps + 1))
    # A Figure of its own, outside pyplot's registry: nothing is left open, even by an interrupt.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": scenario.name, "font.size": 8}):
        rows = max(len(exact), 1)
        figure = Figure(figsize=(10, 2.8 + 0.16 * rows))
        upper, strip = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [2.6, 0.2 + 0.16 * rows]}
        )
        figure.suptitle(f"{scenario.name}: normwise ULP per step, and differing bits of the bit-exact pairs")
        for c in bounded:
            colour = colours.get(c.pair, "#444444")
            ran = steps[: len(c.normwise_ulp_per_step_parameters)]  # fewer where an implementation stopped
            upper.plot(ran, c.normwise_ulp_per_step_parameters, color=colour, linewidth=1.2,
                       drawstyle="steps-post", label=f"{c.pair} (parameters)")  # fmt: skip
            upper.plot(ran, c.normwise_ulp_per_step_averages, color=colour, linewidth=1.0, linestyle="--",
                       drawstyle="steps-post", label=f"{c.pair} (averages)")  # fmt: skip
            if c.ulp_budget:
                upper.axhline(c.ulp_budget, color=colour, linestyle=":", linewidth=1.0,
                              label=f"budget of {c.pair}")  # fmt: skip
        upper.set_yscale("symlog", linthresh=1)
        upper.set_ylim(bottom=0)
        upper.set_ylabel("normwise ULP")
        if not bounded:
            upper.text(0.5, 0.5, "no bounded pair ran in this scenario", transform=upper.transAxes,
                       ha="center", va="center", color="#666666")  # fmt: skip
        for row, c in enumerate(exact):
            colour = colours.get(c.pair, "#444444")
            strip.plot([steps[0], steps[-1]], [row, row], color=colour, linewidth=2.0, solid_capstyle="butt")
            differing = [(step, n) for step, n in zip(steps, c.differing_per_step, strict=False) if n]
            if differing:
                marks = [step for step, _ in differing]
                sizes = [min(200, 20 + 10 * n) for _, n in differing]
                strip.scatter(marks, [row] * len(marks), marker="|", color="#c62828", s=sizes, zorder=3)
        strip.set_yticks(range(len(exact)), [c.pair for c in exact], fontsize=6)
        strip.set_ylim(-0.7, max(len(exact), 1) - 0.3)
        strip.invert_yaxis()
        strip.set_xlabel("step")
        strip.set_title("bit-exact pairs: red where any bit differs", fontsize=7, loc="left")
        strip.ticklabel_format(axis="x", useOffset=False, style="plain")
        upper.grid(True, which="major", linewidth=0.3, alpha=0.6)
        strip.grid(True, axis="x", which="major", linewidth=0.3, alpha=0.6)
        if upper.get_legend_handles_labels()[0]:
            upper.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype for inline use
