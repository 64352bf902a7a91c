"""The conformance harness end to end: the CLI's report, a planted bug, the JSON schema, the page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

import optimized
from conformance.cli import main
from conformance.implementations import IMPLEMENTATIONS, ArrayImplementation
from conformance.report import render_html
from conformance.results import (
    SCHEMA_VERSION,
    Comparison,
    Finding,
    ImplementationRun,
    RunResult,
    ScenarioResult,
    StatisticsResult,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "results.schema.json").read_text())
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "report.html"


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, float, subprocess.CompletedProcess[str]]:
    """The README's main job, as a user runs it: ``asgd-conformance --quick --out DIR``."""
    out = tmp_path_factory.mktemp("quick")
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "conformance", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=3600,  # a guard against a hang only: a busy machine must not fail the run
        env={**os.environ, "CI": "true"},
    )
    return out, time.perf_counter() - started, process


@pytest.mark.e2e
def test_quick_run_passes_and_writes_the_report(quick_run: tuple[Path, float, Any]) -> None:
    out, seconds, process = quick_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert re.fullmatch(r"asgd-conformance: PASS: \d+ scenarios, .*; report: .*index.html\n", process.stdout)
    # quiet when not on a terminal: at most the warning about an unverified torch release
    assert all(line.startswith("asgd-conformance: warning: torch ") for line in process.stderr.splitlines())
    page = (out / "index.html").read_text()
    for implementation in IMPLEMENTATIONS:
        assert implementation.name in page
    import torch

    if not torch.cuda.is_available():  # torch-cuda is listed, and shown skipped with its reason
        assert "no CUDA device on this machine" in page
    assert "<svg" in page
    from conformance.environment import TORCH_VERIFIED

    assert ("torch-version-warning" in page) == (torch.__version__.split("+")[0] != TORCH_VERIFIED)
    fetches = re.findall(r"""(?:src=|<link|@import|url\((?!#)|href=["']https?:)""", page)
    assert fetches == [], "the page must be self-contained"
    print(f"quick run: {seconds:.1f} s")  # a figure for the log: timings are no test's business


@pytest.mark.e2e
def test_results_json_follows_the_schema(quick_run: tuple[Path, float, Any]) -> None:
    out, _, _ = quick_run
    data = json.loads((out / "results.json").read_text())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(data, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    names = {i["name"] for i in data["implementations"]}
    assert {
        "reference-numpy",
        "optimized-numba-torch",
        "optimized-numpy-torch",
        "torch-forloop",
        "torch-foreach",
    } <= names
    exact = [
        c
        for s in data["scenarios"]
        for c in s["comparisons"]
        if c["policy"] == "bit-exact" and c["status"] != "skipped"
    ]
    assert exact and all(c["differing_scalar_steps"] == 0 for c in exact)
    assert {f["key"] for f in data["findings"]} >= {
        "foreach-drift",
        "step-counter-freeze",
        "eta-float32-for-float64",
    }


@pytest.mark.e2e
def test_schema_rejects_a_malformed_result(quick_run: tuple[Path, float, Any]) -> None:
    out, _, _ = quick_run
    data = json.loads((out / "results.json").read_text())
    data["scenarios"][0]["comparisons"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError, match="maybe"):
        jsonschema.validate(data, SCHEMA)


class BrokenASGD(optimized.ASGD):
    """A deliberately broken optimizer: from its fifth step on, one parameter bit flips."""

    def step(self, grads: Any = None, *, closure: Any = None) -> Any:
        loss = super().step(grads, closure=closure)
        if self.state[0].step >= 5:
            self.param_groups[0]["params"][0].reshape(-1).view(np.uint32)[0] ^= 1
        return loss


@pytest.mark.e2e
def test_a_broken_implementation_fails_the_run_and_the_report_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = [
        ArrayImplementation(
            "optimized-numba-numpy", BrokenASGD, "numpy", "deliberately broken", kernel="numba"
        )
        if i.name == "optimized-numba-numpy"
        else i
        for i in IMPLEMENTATIONS
    ]
    code = main(
        ["--only", "random-f32-averaging", "--out", str(tmp_path), "--jobs", "1"], implementations=broken
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "FAIL random-f32-averaging: reference-numpy vs optimized-numba-numpy from step 5" in printed
    page = (tmp_path / "index.html").read_text()
    failures = page[page.index('id="failures"') : page.index('id="how-to-read"')]
    assert "random-f32-averaging" in failures and "reference-numpy vs optimized-numba-numpy" in failures
    assert "step 5" in failures
    data = json.loads((tmp_path / "results.json").read_text())
    (failure,) = [c for s in data["scenarios"] for c in s["comparisons"] if c["status"] == "fails"]
    assert failure["first_divergence"] == 5 and failure["pair"] == "reference-numpy vs optimized-numba-numpy"


def synthetic_result() -> RunResult:
    """A small fixed result, so the golden page depends on the template alone."""
    steps = 4
    comparisons = [
        Comparison("demo", "reference-numpy vs optimized-numba-numpy", "reference-numpy", "optimized-numba-numpy",
                   "bit-exact", "holds", "identical bits at every step", None, 0, 0, 0, None, 0, 0, 0.0, 0.0, 0.0, [0] * steps, [0] * steps,
                   [0.0] * steps, [0.0] * steps, [0] * steps),
        Comparison("demo", "optimized-numba-numpy vs torch-forloop", "optimized-numba-numpy", "torch-forloop",
                   "bounded", "fails", "300 normwise ULP exceeds the budget of 256", 256, 4096, 4096, 12, 2, 9, 0, 1e-5, 3e-4, 300.0,
                   [0, 2, 40, 4096], [0, 1, 12, 12], [0.0, 1.0, 30.0, 300.0], [0.0, 1.0, 8.0, 9.0], [0, 3, 5, 9],
                   "parameters", "layer.weight", "[2, 0]"),
        Comparison("demo", "reference-torch vs mine:make", "reference-torch", "mine:make", "bit-exact", "fails",
                   "mine:make failed: could not start: ImportError: no module"),
        Comparison("demo", "torch-foreach vs torch-forloop", "torch-foreach", "torch-forloop", "bounded", "skipped",
                   "torch-foreach: not run"),
    ]  # fmt: skip
    scenario = ScenarioResult(
        name="demo", problem="random-stream", dtype="float32", hyperparameters={"lr": 0.01, "t0": 2}, steps=steps,
        seed=0, size=3, start_step=0, purpose="a fixed example",
        implementations=[ImplementationRun("reference-numpy", "ran", None, 0.5, 4.0, 0.01, 0.5,
                                           {"held-out accuracy (last iterate)": 0.9, "held-out accuracy (averaged)": 0.95}),
                         ImplementationRun("torch-foreach", "skipped", "not run"),
                         ImplementationRun("mine:make", "failed", "could not start: ImportError: no module")],
        tensors=["layer.weight", "layer.bias"], groups=[{"tensors": 1, "lr": 0.02}, {"tensors": 1}],
        lr_changes=[[3, 0.5]], checkpoint_at=2, checkpoint_via="torch",
        comparisons=comparisons,
    )  # fmt: skip
    return RunResult(
        schema_version=SCHEMA_VERSION, created="2026-01-01T00:00:00+00:00", command="asgd-conformance --only demo",
        selection={"set": "quick", "only": "demo", "seed": 0, "seeds": 1, "jobs": 1, "shard": None, "cells": 1,
                   "statistics": True},
        environment={"python": "3.x", "platform": "p", "numpy": "n", "torch": "t", "scipy": "s",
                     "aten_cpu_capability": "AVX2", "cuda": None, "numba": "b", "optimized_kernel": "numba",
                     "cpu": {"model": "cpu", "flags": ["avx2", "fma"]}},
        implementations=[{"name": "reference-numpy", "description": "spec"}],
        pairs=[{"name": "optimized-numba-numpy vs torch-forloop", "policy": "bounded", "ulp_budget": {"float32": 256},
                "rationale": "two roundings against one"},
               {"name": "reference-torch vs mine:make", "policy": "bit-exact", "ulp_budget": None,
                "rationale": "claims the torch profile"}],
        scenarios=[scenario],
        findings=[Finding("demo-finding", "A finding", "Measured, not judged.", ["demo"])],
        statistics=StatisticsResult(True, "averaged iterate optimal", {}),
        seconds=1.0,
    )  # fmt: skip


def scrubbed(html: str) -> str:
    """The page without what changes between machines and library versions."""
    html = re.sub(r'<span class="timestamp">[^<]*</span>', '<span class="timestamp">TIME</span>', html)
    html = re.sub(r'<td class="version">[^<]*</td>', '<td class="version">VERSION</td>', html)
    return re.sub(r"<svg.*?</svg>", "<svg><!-- plot --></svg>", html, flags=re.DOTALL)


def test_a_result_survives_json_and_follows_the_schema() -> None:
    """What merge reads back is what the run wrote, and the synthetic result is a valid one."""
    data = json.loads(json.dumps(synthetic_result().to_json()))
    jsonschema.validate(data, SCHEMA)
    assert RunResult.from_json(data) == synthetic_result()


def test_html_matches_the_golden_file() -> None:
    page = scrubbed(render_html(synthetic_result()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(page)
    assert page == GOLDEN.read_text(), (
        "report template changed: rerun with UPDATE_GOLDEN=1 and review the diff"
    )


def test_the_findings_say_which_cpu_path_of_torch_cuda_matches() -> None:
    """The CUDA column is compared with both CPU paths; the finding names the one matched bit for
    bit, or the closest, and is absent when CUDA did not run."""
    import dataclasses

    from conformance.findings import derive_findings, device_match

    def against(right: str, differing: int, ulp: float) -> Comparison:
        return Comparison("demo", f"torch-cuda vs {right}", "torch-cuda", right, "bounded", "holds", "",
                          max_normwise_ulp=ulp, differing_scalar_steps=differing, nan_mismatches=0)  # fmt: skip

    base = synthetic_result().scenarios[0]
    matches_foreach = dataclasses.replace(
        base, comparisons=[against("torch-forloop", 12, 40.0), against("torch-foreach", 0, 0.0)]
    )
    neither = dataclasses.replace(
        base, name="other", comparisons=[against("torch-forloop", 12, 40.0), against("torch-foreach", 3, 2.5)]
    )
    assert device_match(matches_foreach) == "CUDA matches torch-foreach bit for bit"
    assert device_match(neither) == (
        "CUDA matches neither CPU path bit for bit; closest: torch-foreach (2.5 normwise ULP)"
    )
    assert device_match(base) is None
    (finding,) = [f for f in derive_findings([matches_foreach, neither]) if f.key == "cuda-path"]
    assert finding.scenarios == ["demo", "other"]
    assert "demo: CUDA matches torch-foreach bit for bit" in finding.detail
    assert not [f for f in derive_findings([base]) if f.key == "cuda-path"]


def test_a_late_run_with_an_unmodelled_alpha_is_skipped_with_a_reason_not_crashed() -> None:
    """The late run injects each implementation's state at a late step; for torch's foreach path
    with alpha=0.5 that state has no model, so the torch-foreach columns decline it up front."""
    import dataclasses

    from conformance.scenarios import SCENARIOS

    late = next(s for s in SCENARIOS if s.name == "late-run-f32")
    half = dataclasses.replace(late, name="late-half", hyper={**late.hyper, "alpha": 0.5})
    by_name = {i.name: i for i in IMPLEMENTATIONS}
    for name in ("torch-foreach", "reference-torch-foreach", "optimized-numba-torch-foreach"):
        reason = by_name[name].skip_reason(half)
        assert reason is not None and "does not model alpha=0.5" in reason, (name, reason)
    assert by_name["torch-forloop"].skip_reason(half) is None
    assert by_name["torch-foreach"].skip_reason(late) is None


def test_a_pair_that_ran_nowhere_for_want_of_this_machine_is_folded_into_one_line() -> None:
    """torch-cuda without a device: not run here in one scenario, skipped by design in another
    (torch has no momentum): no column, one line with the reason; a pair skipped only by design keeps
    its column."""
    import dataclasses

    from conformance.columns import layout
    from conformance.report import render_html

    base = synthetic_result()
    demo = base.scenarios[0]

    def cuda(not_here: bool, reason: str) -> Comparison:
        return Comparison("demo", "torch-cuda vs torch-forloop", "torch-cuda", "torch-forloop", "bounded",
                          "skipped", reason, not_run_here=not_here)  # fmt: skip

    here = ImplementationRun("torch-cuda", "skipped", "no CUDA device on this machine")
    first = dataclasses.replace(
        demo, comparisons=[*demo.comparisons, cuda(True, "torch-cuda: no CUDA device on this machine")],
        implementations=[*demo.implementations, here],
    )  # fmt: skip
    second = dataclasses.replace(
        demo, name="demo-momentum", comparisons=[*demo.comparisons, cuda(False, "torch-forloop: no momentum; torch-cuda: no CUDA device on this machine")],
        implementations=[*demo.implementations, here],
    )  # fmt: skip
    pairs = [
        *base.pairs,
        {"name": "torch-cuda vs torch-forloop", "policy": "bounded", "ulp_budget": None, "rationale": "r"},
    ]
    result = dataclasses.replace(base, scenarios=[first, second], pairs=pairs)
    columns = layout(result)
    assert columns.not_run_here == ["torch-cuda vs torch-forloop"]
    assert columns.not_run_here_reasons == ["torch-cuda: no CUDA device on this machine"]
    assert all("torch-cuda" not in column.title for column in columns.columns)
    page = render_html(result)
    assert '<p id="not-run-here"><b>Not run here</b> (2 comparisons)' in page
    assert re.search(r"\d+ skipped by design, 1 not run here", result.summary_line())
