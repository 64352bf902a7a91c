"""The ``benchmark-results`` directive: a run of ``python -m benchmarks --json PATH``, rendered.

The performance page states no timing by hand: at build time this reads the committed JSON and
writes what run it was (date, machine, versions, settings), a plot and the tables. Without the JSON
it says so, and states no figure. A JSON that does not name its run is a warning (an error under
``-W``), so no figure reaches the page without its run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
BASE = "optimized numpy-profile"  # the contender every case's ratios are taken against
FIGURE = "_generated/benchmarks.svg"  # under the source directory; ignored by git
MISSING_COMMAND = "python -m benchmarks --json docs/_data/benchmarks.json"


def load(path: Path) -> dict[str, Any] | None:
    """The benchmark run at ``path``, or None if there is none."""
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def run_description(run: dict[str, Any]) -> nodes.paragraph:
    """One paragraph naming the run: the command, when, where, with what."""
    machine, versions = run["machine"], run["versions"]
    only = f", only the cases containing {run['only']!r}" if run.get("only") else ""
    commit = f", commit {run['commit']}" if run.get("commit") else ""
    rounds = "one round" if run["repeat"] == 1 else f"{run['repeat']} interleaved rounds"
    return one_run_of(
        run["command"],
        f" on {run['date']} ({run['seconds']:.0f} s{only}{commit}): "
        f"{machine['cpu']}, {machine['cores']} cores, ATen CPU capability {machine['aten_cpu_capability']}, "
        f"{machine['platform']}; Python {versions['python']}, NumPy {versions['numpy']}, "
        f"numba {versions['numba']}, SciPy {versions['scipy']}, torch {versions['torch']} with "
        f"{run['torch_threads']} threads, the optimizer with {run['optimizer_threads']}; each time the best "
        f"of {rounds}.",
    )


def one_run_of(command: str, said: str) -> nodes.paragraph:
    """ "One run of ``command``" and what is ``said`` of it (when, where, with what)."""
    paragraph = nodes.paragraph()
    paragraph += nodes.Text("One run of ")
    paragraph += nodes.literal(text=command)
    paragraph += nodes.Text(said)
    return paragraph


def case_rows(timings: dict[str, float]) -> list[list[str]]:
    """A case's contenders: the time of a step and its ratio to the optimized numpy profile."""
    base = timings.get(BASE)
    return [
        [label, milliseconds(seconds), f"{seconds / base:.2f}×" if base else "–"]
        for label, seconds in timings.items()
    ]


def target_rows(targets: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [row["ratio"], row["target"].replace(">=", "≥").replace("<=", "≤"), f"{row['value']:.2f}×",
         "met" if row["met"] else "not met"]
        for row in targets
    ]  # fmt: skip


def table(header: list[str], rows: list[list[str]]) -> nodes.table:
    """A docutils table (as ``list-table`` makes one)."""
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=1) for _ in header]

    def row(cells: list[str]) -> nodes.row:
        line = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=cell)
            line += entry
        return line

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    body += [row(cells) for cells in rows]
    group += [head, body]
    result = nodes.table(classes=["benchmark-table"])
    result += group
    return result


def plot(data: dict[str, Any], path: Path) -> None:
    """One panel per case: each contender's time per step, on a log scale, the fastest marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(data["timings"].items())
    heights = [0.45 * len(timings) + 0.8 for _, timings in cases]
    figure, axes = plt.subplots(
        len(cases), 1, figsize=(8, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    for axis, (name, timings) in zip(axes[:, 0], cases, strict=True):
        labels = list(timings)
        values = [timings[label] * 1e3 for label in labels]
        fastest = min(values)
        colours = ["#2b7bba" if label.startswith("optimized") else "#999999" for label in labels]
        axis.barh(range(len(labels)), values, color=colours)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlim(fastest / 2, max(values) * 4)
        for position, value in enumerate(values):
            axis.text(value * 1.05, position, milliseconds(value / 1e3), va="center", fontsize=8)
        axis.set_title(name, fontsize=9, loc="left")
        axis.tick_params(axis="x", labelsize=8)
    axes[-1, 0].set_xlabel("time per step (ms, log scale); blue: this project's code")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "benchmarks"}):  # text as text
        figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def render(data: dict[str, Any] | None, figure_uri: str | None) -> list[nodes.Node]:
    """The nodes of the page's generated part (``figure_uri`` None: no plot)."""
    if data is None:
        note = nodes.note()
        paragraph = nodes.paragraph()
        paragraph += nodes.Text(
            "No benchmark run is committed yet (docs/_data/benchmarks.json is missing), so this page "
            "shows no measured figure. A run on a quiet machine writes it: "
        )
        paragraph += nodes.literal(text=MISSING_COMMAND)
        note += paragraph
        return [note]
    result: list[nodes.Node] = [run_description(data["run"])]
    if figure_uri is not None:
        figure = nodes.figure()
        figure += nodes.image(uri=figure_uri, alt="Time per step of each contender, per case")
        figure += nodes.caption(text="Time per step of each contender, one panel per case (log scale).")
        result.append(figure)
    for name, timings in data["timings"].items():
        result.append(nodes.rubric(text=name))
        result.append(table(["contender", "time per step", f"× {BASE}"], case_rows(timings)))
        if name in data.get("bound_gb_per_s", {}):
            rate = data["bound_gb_per_s"][name]
            text = f"The memory bound moves the step's bytes at {rate:.1f} GB/s."
            result.append(nodes.paragraph(text=text))
    if data.get("latency"):
        heading = "First step of a new process (medians of interleaved rounds: benchmarks/latency.py)"
        result.append(nodes.rubric(text=heading))
        rows = [[label, f"{seconds:.3f} s"] for label, seconds in data["latency"].items()]
        result.append(table(["what", "seconds"], rows))
    result.append(nodes.rubric(text="Targets"))
    result.append(table(["ratio", "target", "measured", "verdict"], target_rows(data["targets"])))
    return result


class BenchmarkResults(SphinxDirective):
    """``benchmark-results PATH``: the run in the JSON at PATH (relative to the page)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        relative, absolute = self.env.relfn2path(self.arguments[0], self.env.docname)
        override = self.config.benchmark_results_json
        path = Path(override) if override else Path(absolute)
        self.env.note_dependency(str(path) if override else relative)
        data = load(path)
        if data is not None and "run" not in data:
            LOGGER.warning("%s names no run (date, machine, versions): render it from --json", path,
                           location=self.get_location())  # fmt: skip
            return []
        figure_uri = None
        if data is not None:
            plot(data, Path(self.env.srcdir) / FIGURE)
            figure_uri = "/" + FIGURE
        return render(data, figure_uri)


CHECK_TIMES_COMMAND = "python -m benchmarks.check_times --json docs/_data/check-times.json"


def render_check_times(data: dict[str, Any] | None) -> list[nodes.Node]:
    """How long each conformance run took, in the run that measured it (or a note that none did)."""
    if data is None:
        note = nodes.note()
        paragraph = nodes.paragraph()
        paragraph += nodes.Text("No timing of the conformance runs is committed yet, so none is stated. ")
        paragraph += nodes.literal(text=CHECK_TIMES_COMMAND)
        paragraph += nodes.Text(" writes it.")
        note += paragraph
        return [note]
    run, machine, versions = data["run"], data["run"]["machine"], data["run"]["versions"]
    commit = f", commit {run['commit']}" if run.get("commit") else ""
    paragraph = one_run_of(
        run["command"],
        f" on {run['date']}{commit}: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}; "
        f"Python {versions['python']}, NumPy {versions['numpy']}, numba {versions['numba']}, "
        f"torch {versions['torch']}. Each is a new process, timed from its start to its verdict.",
    )
    rows = [
        [
            entry["what"],
            str(entry.get("scenarios", "")),
            str(entry.get("comparisons", "")),
            f"{entry['seconds']:.1f} s",
        ]
        for entry in data["runs"]
    ]
    return [paragraph, table(["run", "scenarios", "comparisons", "wall time"], rows)]


class CheckTimes(SphinxDirective):
    """``check-times PATH``: the run of ``python -m benchmarks.check_times`` in the JSON at PATH."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        relative, absolute = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(relative)
        data = load(Path(absolute))
        if data is not None and "run" not in data:
            LOGGER.warning(
                "%s names no run (date, machine, versions)", absolute, location=self.get_location()
            )
            return []
        return render_check_times(data)


def setup(app: Sphinx) -> dict[str, Any]:
    # A JSON elsewhere (a trial run) replaces the page's: -D benchmark_results_json=PATH
    app.add_config_value("benchmark_results_json", "", "env", types=[str])
    app.add_directive("benchmark-results", BenchmarkResults)
    app.add_directive("check-times", CheckTimes)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
