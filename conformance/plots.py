"""ULP-versus-step plots, rendered by matplotlib as inline SVG (no files, nothing fetched)."""

from __future__ import annotations

import io

import matplotlib
from matplotlib.figure import Figure

from conformance.results import ScenarioResult

__all__ = ["ulp_plot_svg"]

_COLORS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#66408f", "#00798c", "#8d6a9f")


def ulp_plot_svg(scenario: ScenarioResult) -> str:
    """Element-wise max ULP of the parameters per step, one line per compared pair, log scale.

    Zero is drawn (symlog, linear below 1), so an identical pair shows as a flat line at 0.
    """
    compared = [c for c in scenario.comparisons if c.status != "skipped"]
    # A Figure of its own, outside pyplot's registry: nothing is left open, even by an interrupt.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": scenario.name, "font.size": 8}):
        figure = Figure(figsize=(8.6, 2.6))
        axes = figure.subplots()
        steps = range(scenario.start_step + 1, scenario.start_step + scenario.steps + 1)
        for index, comparison in enumerate(compared):
            axes.plot(
                steps,
                comparison.ulp_per_step_parameters,
                label=comparison.pair,
                color=_COLORS[index % len(_COLORS)],
                linewidth=1.2,
                drawstyle="steps-post",
            )
        axes.set_yscale("symlog", linthresh=1)
        axes.set_xlabel("step")
        axes.set_ylabel("max ULP (parameters)")
        axes.grid(True, which="major", linewidth=0.3, alpha=0.6)
        if compared:
            axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype for inline use
