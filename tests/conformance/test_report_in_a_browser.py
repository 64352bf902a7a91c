"""The report as a reader sees it, in headless Chromium at 1,400 px: screenshots and measurements of
the rendered page (a script added to a copy of the page measures the layout and writes it into the
DOM, which Chromium dumps).

The run is a real one with two user implementations, one exact and one that flips a bit at step 37,
so that the page has their columns, a failure, a diagnosis, bounded pairs, an expected divergence
and a late run. ``UPDATE_SCREENSHOTS=1`` copies the screenshots to ``docs/`` for the documentation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import numpy as np
import pytest

e2e = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
WIDTH = 1400
USERS = ("tests.external_factories:torch_profile", "tests.external_factories:flips_a_bit_at_step_37")
RED = "#c62828"

MEASURE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  const table = document.getElementById("summary-table");
  const headers = [...table.rows[0].cells].map((th) => ({title: th.title, text: th.innerText, ...box(th)}));
  const wide = table.parentElement;
  const plots = [...document.querySelectorAll(".plot svg")].map((svg) => {
    const scale = svg.getScreenCTM().a;
    const texts = [...svg.querySelectorAll("text")].filter((t) => t.textContent.trim());
    const fonts = texts.map((t) => parseFloat(getComputedStyle(t).fontSize) * scale);
    const ticks = {};
    for (const t of texts) {
      const tick = t.closest("g[id^='xtick_'], g[id^='ytick_']");
      const axes = t.closest("g[id^='axes_']");
      if (!tick || !axes) continue;
      const key = axes.id + ":" + tick.id.slice(0, 5);
      (ticks[key] = ticks[key] || []).push({text: t.textContent, ...box(t)});
    }
    return {scenario: svg.closest(".scenario").id, width: svg.getBoundingClientRect().width,
            content: svg.parentElement.getBoundingClientRect().width, smallest: Math.min(...fonts), ticks};
  });
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify({window: document.documentElement.clientWidth, headers,
    scrolls: wide.scrollWidth > wide.clientWidth, plots});
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    return browser


def _flags(profile: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--window-size={WIDTH},1000",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``asgd-conformance --only "l*"`` with the two user implementations: its directory."""
    out = tmp_path_factory.mktemp("report")
    users = [arg for user in USERS for arg in ("--implementation", user)]
    process = subprocess.run(
        [sys.executable, "-m", "conformance", "--only", "l*", "--no-statistics", "--out", str(out), *users],
        capture_output=True, text=True, timeout=3600, env={**os.environ, "CI": "true"},
    )  # fmt: skip
    assert process.returncode == 1, process.stdout + process.stderr  # the flipped bit fails
    return out


def measure(page: str, directory: Path) -> dict[str, Any]:
    """What the measuring script finds in ``page`` rendered at 1,400 px."""
    browser = _chromium()
    copy = directory / "index.html"
    copy.write_text(page.replace("</body>", MEASURE + "</body>"))
    dom = subprocess.run(
        [browser, *_flags(copy.parent / "profile"), "--virtual-time-budget=20000", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout, flags=re.DOTALL)
    assert found, dom.stderr[-2000:]
    data: dict[str, Any] = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<"))
    return data


@pytest.fixture(scope="module")
def measured(report: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return measure((report / "index.html").read_text(), tmp_path_factory.mktemp("measured"))


def with_cuda(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` as a machine with a CUDA device would have them: torch-cuda ran, its pairs with
    the figures of torch's foreach path against the for-loop path (what CUDA's default path is)."""
    data = json.loads(json.dumps(results))
    for scenario in data["scenarios"]:
        model = next(c for c in scenario["comparisons"] if c["pair"] == "torch-foreach vs torch-forloop")
        for c in scenario["comparisons"]:
            if c["left"] == "torch-cuda":
                names = {key: c[key] for key in ("scenario", "pair", "left", "right", "policy")}
                c.clear()
                c.update({**model, **names, "not_run_here": False})
        for run in scenario["implementations"]:
            if run["name"] == "torch-cuda":
                run.update(status="ran", reason=None, seconds=0.01)
    return data


@e2e
def test_the_users_columns_are_in_view_at_1400_px(measured: dict[str, Any]) -> None:
    in_view(measured)


@e2e
def test_with_the_cuda_columns_too_the_users_columns_are_in_view(report: Path, tmp_path: Path) -> None:
    from conformance.report import render_html
    from conformance.results import RunResult

    results = with_cuda(json.loads((report / "results.json").read_text()))
    measured = measure(render_html(RunResult.from_json(results)), tmp_path)
    assert sum("torch-cuda" in h["text"] for h in measured["headers"]) == 2
    in_view(measured)


def in_view(measured: dict[str, Any]) -> None:
    """The summary's columns, the users' two among them, all within the 1,400 px window."""
    headers = measured["headers"]
    users = [h for h in headers if any(user in h["text"].replace("\n", "") for user in USERS)]
    assert len(users) == 2, [h["text"] for h in headers]
    assert not measured["scrolls"], "the summary scrolls sideways at 1,400 px"
    assert max(h["right"] for h in headers) <= measured["window"]
    bounded = [h for h in headers if "vs" in h["text"] and "bit-exact" not in h["text"]]
    assert len(bounded) >= 2, "the bounded pairs keep a column each"
    groups = [h for h in headers if "bit-exact pairs" in h["text"]]
    assert {h["text"].split("\n")[0] for h in groups} >= {
        "numpy profile",
        "torch profile",
        "torch-foreach profile",
    }


@e2e
def test_plot_labels_are_9_pt_at_least_and_the_plot_is_as_wide_as_the_page(
    measured: dict[str, Any], report: Path
) -> None:
    """At the figure's own size (the SVG's font sizes, in points) and as drawn at 1,400 px."""
    sizes = re.findall(
        r"font-size: ([\d.]+)px", "".join(_plots((report / "index.html").read_text()).values())
    )
    assert sizes and min(map(float, sizes)) >= 9, sorted(set(sizes))
    assert len(measured["plots"]) == 7
    for plot in measured["plots"]:
        assert plot["smallest"] >= 12 - 1e-6, (
            f"{plot['scenario']}: a label of {plot['smallest']:.1f} px (9 pt is 12)"
        )
        assert plot["width"] >= plot["content"] - 1, f"{plot['scenario']} is narrower than the page"


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


@e2e
def test_no_tick_labels_overlap(measured: dict[str, Any]) -> None:
    late = next(p for p in measured["plots"] if p["scenario"] == "scenario-late-run-f32")
    steps = [t["text"] for key, ticks in late["ticks"].items() if key.endswith("xtick") for t in ticks]
    assert steps and all(len(step) <= 2 for step in steps), f"a late run counts from its start: {steps}"
    for plot in measured["plots"]:
        for key, ticks in plot["ticks"].items():
            for i, a in enumerate(ticks):
                for b in ticks[i + 1 :]:
                    assert not _overlap(a, b), (
                        f"{plot['scenario']} {key}: {a['text']!r} overlaps {b['text']!r}"
                    )


def _legend(svg: str) -> list[tuple[str, str]]:
    """The (label, colour) of each entry of a plot's legend, as matplotlib writes the SVG."""
    root = ElementTree.fromstring(svg)
    legend = next(
        (g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith("legend")), None
    )
    if legend is None:
        return []
    entries, colour = [], None
    for element in legend.iter():
        style = element.get("style", "")
        stroke = re.search(r"stroke: (#[0-9a-f]{6})", style)
        if element.tag.endswith("path") and stroke and colour is None:
            colour = stroke.group(1)
        if element.tag.endswith("text") and (element.text or "").strip():
            entries.append((element.text.strip(), colour or ""))
            colour = None
    return entries


def _plots(page: str) -> dict[str, str]:
    found = re.findall(
        r'<div class="scenario" id="scenario-([^"]+)">.*?(<svg.*?</svg>)', page, flags=re.DOTALL
    )
    return dict(found)


def colour_problems(page: str, results: dict[str, Any]) -> list[str]:
    """What is wrong with the plots' colours: a pair that changes colour, two pairs of one colour, a
    pair in red, red in a scenario where no bit differs or none where some do."""
    plots, colour_of, problems = _plots(page), dict[str, str](), []
    for scenario, svg in plots.items():
        for label, colour in _legend(svg):
            if " vs " in label and colour_of.setdefault(label, colour) != colour:
                problems.append(f"{label} changes colour in {scenario}")
    shared = {c for c in colour_of.values() if list(colour_of.values()).count(c) > 1}
    problems += [f"pairs share {c}: {[k for k, v in colour_of.items() if v == c]}" for c in shared]
    problems += [f"{k} is red" for k, v in colour_of.items() if v == RED]
    differs = {
        s["name"]
        for s in results["scenarios"]
        if any(c["differing_scalar_steps"] for c in s["comparisons"] if c["policy"] == "bit-exact")
    }
    for scenario, svg in plots.items():
        if (RED in svg) != (scenario in differs):
            problems.append(f"{scenario}: red {'missing' if scenario in differs else 'where no bit differs'}")
    return problems


@e2e
def test_no_two_pairs_share_a_colour_and_red_means_bits_differ(report: Path) -> None:
    page = (report / "index.html").read_text()
    results = json.loads((report / "results.json").read_text())
    assert len({label for svg in _plots(page).values() for label, _ in _legend(svg) if " vs " in label}) >= 2
    assert colour_problems(page, results) == []
    # the check can fail: one pair drawn in another's colour, red where every bit agrees
    first, second = [c for label, c in _legend(_plots(page)["lsq-f64-averaging"]) if " vs " in label][:2]
    assert any("share" in p for p in colour_problems(page.replace(second, first), results))
    agreeing = next(
        s["name"]
        for s in results["scenarios"]
        if not any(c["differing_scalar_steps"] for c in s["comparisons"] if c["policy"] == "bit-exact")
    )
    holding = page.index(f'id="scenario-{agreeing}"')
    reddened = page[:holding] + page[holding:].replace("#9e9e9e", RED, 1)
    assert any("where no bit differs" in p for p in colour_problems(reddened, results))


def test_pair_colours_are_distinct_and_never_red_for_many_pairs() -> None:
    import colorsys

    from conformance.plots import pair_colours

    colours = list(pair_colours([f"pair {k}" for k in range(60)]).values())
    assert len(set(colours)) == 60
    for colour in colours:
        hue, saturation, _ = colorsys.rgb_to_hsv(*(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)))
        assert saturation < 0.3 or min(hue, 1 - hue) >= 25 / 360, f"{colour} is reddish"


def test_overlapping_boxes_are_seen() -> None:
    """The tick-label check can fail."""
    a = {"left": 0.0, "right": 10.0, "top": 0.0, "bottom": 10.0}
    assert _overlap(a, {"left": 9.0, "right": 20.0, "top": 5.0, "bottom": 15.0})
    assert not _overlap(a, {"left": 10.0, "right": 20.0, "top": 0.0, "bottom": 10.0})


@e2e
def test_the_top_line_and_the_folded_columns(report: Path) -> None:
    import torch

    page = (report / "index.html").read_text()
    line = re.search(r'<span id="summary-line">([^<]*)</span>', page)
    assert line and re.search(r"\d+ skipped by design", line.group(1))
    if not torch.cuda.is_available():
        assert re.search(r"\d+ not run here", line.group(1))
        folded = page[page.index('id="not-run-here"') : page.index('id="summary-table"')]
        assert "torch-cuda vs torch-forloop" in folded and "no CUDA device on this machine" in folded
        table = page[
            page.index('id="summary-table"') : page.index("</table>", page.index('id="summary-table"'))
        ]
        assert "torch-cuda" not in table
    assert 'id="compilation"' in page and "no scenario's" in page


@e2e
def test_the_failure_is_diagnosed_and_one_click_from_its_pairs(report: Path) -> None:
    page = (report / "index.html").read_text()
    failures = page[page.index('id="failures"') : page.index('id="how-to-read"')]
    assert "flips_a_bit_at_step_37" in failures and "0x" in failures and "diagnosis:" in failures
    cell = re.search(r'<td class="fails"[^>]*><details><summary>.*?</details>', page, flags=re.DOTALL)
    assert (
        cell
        and "from step 37" in cell.group(0)
        and "flips_a_bit_at_step_37 vs torch-forloop" in cell.group(0)
    )


@e2e
def test_screenshots_of_the_summary_and_the_late_run(report: Path, tmp_path: Path) -> None:
    """The summary at 1,400 px and the late run's section; ``UPDATE_SCREENSHOTS=1`` puts them in docs/."""
    from PIL import Image

    browser = _chromium()
    page = (report / "index.html").read_text()
    style = page[page.index("<style>") : page.index("</style>") + len("</style>")]
    start = page.index('<div class="scenario" id="scenario-late-run-f32">')
    heading = page[start : page.index("<table", start)]  # the name and what the scenario is
    plot = page[page.index('<div class="plot">', start) : page.index("</svg>", start) + len("</svg>")]
    section = f"{heading}{plot}</div></div>"
    late = tmp_path / "late.html"
    late.write_text(f"<!doctype html><html><head>{style}</head><body>{section}</body></html>")
    for name, source in (("report-summary.png", report / "index.html"), ("report-late-run.png", late)):
        shot = tmp_path / name
        done = subprocess.run(
            [browser, *_flags(tmp_path / "profile"), f"--screenshot={shot}", source.as_uri()],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert shot.exists(), done.stderr[-2000:]
        with Image.open(shot) as image:
            assert image.size[0] == WIDTH
            ink = int((np.asarray(image.convert("L")) < 200).sum())
        assert ink > 20_000, f"the {name} screenshot is nearly blank ({ink} dark pixels)"
        if os.environ.get("UPDATE_SCREENSHOTS"):
            shutil.copyfile(shot, DOCS / name)
