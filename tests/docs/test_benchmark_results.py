"""The Performance page's figures come from a run: ``python -m benchmarks --json`` writes what the
documentation's ``benchmark-results`` directive (docs/_ext/benchmark_results.py) renders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("sphinx", reason="the documentation's build is in the dev extra: pip install -e '.[dev]'")
from docutils import nodes

ROOT = Path(__file__).resolve().parents[2]
CASE = "six-tensor MLP (3.5k"  # the quickest case: four contenders on six small tensors


def extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmark_results", ROOT / "docs" / "_ext" / "benchmark_results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A short run of the benchmark, as the documentation's is made (one case, one round)."""
    path = tmp_path_factory.mktemp("benchmarks") / "benchmarks.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--only",
        CASE,
        "--repeat",
        "1",
        "--no-latency",
        "--json",
        str(path),
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=3600)  # a hang guard only
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def text_of(rendered: list[nodes.Node]) -> str:
    return "\n".join(node.astext() for node in rendered)


@pytest.mark.e2e
def test_the_json_names_its_run(short_run: dict[str, Any]) -> None:
    run = short_run["run"]
    assert run["date"] and run["command"].startswith("python -m benchmarks --only")
    assert run["only"] == CASE and run["repeat"] == 1 and run["latency"] is False
    assert run["machine"]["cores"] >= 1 and run["machine"]["cpu"]
    assert {"python", "numpy", "numba", "torch", "scipy"} <= set(run["versions"])
    (case,) = short_run["timings"]
    assert case.startswith(CASE)
    assert {"torch for-loop (default)", "optimized numpy-profile", "optimized.torch.ASGD"} <= set(
        short_run["timings"][case]
    )
    assert all(row["ratio"].endswith(case) for row in short_run["targets"])


@pytest.mark.e2e
def test_the_page_shows_the_run_its_figures_came_from(short_run: dict[str, Any], tmp_path: Path) -> None:
    module = extension()
    rendered = module.render(short_run, "/_generated/benchmarks.svg")
    text = text_of(rendered)
    run = short_run["run"]
    assert text.startswith(f"One run of {run['command']} on {run['date']}")
    assert run["machine"]["cpu"] in text and run["versions"]["torch"] in text
    tables = [node for node in rendered if isinstance(node, nodes.table)]
    contenders = short_run["timings"][next(iter(short_run["timings"]))]
    assert len(tables) == 2  # the case, and the targets
    assert len(list(tables[0].findall(nodes.row))) == 1 + len(contenders)
    assert len(list(tables[1].findall(nodes.row))) == 1 + len(short_run["targets"])
    assert any(isinstance(node, nodes.figure) for node in rendered)
    module.plot(short_run, tmp_path / "benchmarks.svg")
    svg = (tmp_path / "benchmarks.svg").read_text()
    assert "<svg" in svg and "optimized.torch.ASGD" in svg


def test_without_a_run_the_page_says_so_and_states_no_figure() -> None:
    rendered = extension().render(None, None)
    assert [type(node) for node in rendered] == [nodes.note]
    text = text_of(rendered)
    assert "No benchmark run is committed yet" in text
    assert "python -m benchmarks --json docs/_data/benchmarks.json" in text


def test_the_committed_runs_name_their_run_and_the_pages_render_them() -> None:
    """The committed JSON of each generated section names its run, and its figures reach the page."""
    module = extension()
    for name in ("benchmarks.json", "check-times.json"):
        data = json.loads((ROOT / "docs" / "_data" / name).read_text())
        run = data["run"]
        assert run["date"] and run["command"].startswith("python -m benchmarks") and run["machine"]["cpu"]
    times = json.loads((ROOT / "docs" / "_data" / "check-times.json").read_text())
    text = text_of(module.render_check_times(times))
    assert times["run"]["date"] in text and f"{times['run']['machine']['cores']} cores" in text
    for entry in times["runs"]:
        assert entry["what"] in text and f"{entry['seconds']} s" in text


def test_without_a_timing_of_the_conformance_runs_the_page_says_so() -> None:
    rendered = extension().render_check_times(None)
    assert [type(node) for node in rendered] == [nodes.note]
    assert "python -m benchmarks.check_times --json docs/_data/check-times.json" in text_of(rendered)
