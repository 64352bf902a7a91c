"""``asgd-conformance merge`` reads files it did not write: within stated bounds, every value checked
before anything is built. A malformed file or one beyond a bound is refused with exit 2 and one line
naming the file and the field (never a traceback, which reads as a failed verdict), and a merge holds
a small multiple of what it reads.

The shards here are one real shard's results.json (a run of the quickest scenario), edited."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance import cli, merge
from conformance.results import write_json

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "torch-config-default"  # 25 steps: the quickest real shard


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real results.json of ``--shard 1/1``, parsed, for each test to edit a copy of."""
    result = cli.run_conformance(only=SCENARIO, statistics=False, shard=(1, 1))
    path = tmp_path_factory.mktemp("shard") / "results.json"
    write_json(result, path)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def write_shard(directory: Path, data: Any) -> Path:
    """``directory`` with ``data`` (or, given a string, that text) as its results.json."""
    directory.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data, indent=1)
    (directory / "results.json").write_text(text)
    return directory


def run_merge(
    capsys: pytest.CaptureFixture[str], out: Path, *directories: Path | str
) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``asgd-conformance merge DIR... --out OUT``."""
    try:
        status = cli.main(["merge", *map(str, directories), "--out", str(out)])
    except SystemExit as exit_:  # argparse's usage errors
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def refusal(capsys: pytest.CaptureFixture[str], tmp_path: Path, *directories: Path | str) -> str:
    """The one line the merge of ``directories`` is refused with: exit 2, nothing written."""
    status, out, err = run_merge(capsys, tmp_path / "report", *directories)
    assert status == 2 and out == "", (status, out, err)
    usage, line = err.splitlines()  # argparse's usage line, then the one line of the error
    assert usage.startswith("usage: asgd-conformance merge ")
    assert line.startswith("asgd-conformance merge: error: ")
    assert not (tmp_path / "report").exists()
    return line


def bounded(data: dict[str, Any]) -> dict[str, Any]:
    """The first comparison of a bounded pair that ran (it has a budget and a normwise ULP)."""
    comparisons = data["scenarios"][0]["comparisons"]
    return next(c for c in comparisons if c["ulp_budget"] and c["max_normwise_ulp"] is not None)


COMPARISON = r"scenarios\[0\]\.comparisons\[\d+\]"

MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("shard-without-slash", lambda d: d["selection"].update(shard="1"),
     r'selection\.shard must be K/N with 1 <= K <= N, got "1"'),
    ("shard-of-zero", lambda d: d["selection"].update(shard="0/3"), r"selection\.shard must be K/N"),
    ("no-shard", lambda d: d["selection"].pop("shard"), r"selection\.shard is missing"),
    ("implementations-as-strings", lambda d: d.update(implementations=["reference-numpy", "torch-forloop"]),
     r'implementations\[0\] must be an object, got "reference-numpy"'),
    ("seconds-a-string", lambda d: d.update(seconds="12.5"), r'seconds must be a finite number, got "12.5"'),
    ("negative-seconds", lambda d: d.update(seconds=-0.5), r"seconds must be a number >= 0, got -0.5"),
    ("negative-compilation", lambda d: d["scenarios"][0].update(compilation_seconds=-1.0), r"scenarios\[0\]\.compilation_seconds must be a number >= 0"),
    ("ulp-budget-a-fraction", lambda d: bounded(d).update(ulp_budget=3.5),
     COMPARISON + r"\.ulp_budget must be an integer from 0 to 2\*\*53, got 3\.5"),
    ("max-abs-error-null", lambda d: bounded(d).update(max_abs_error=None),
     COMPARISON + r"\.max_abs_error must be a number where max_normwise_ulp is one"),
    ("infinite-normwise-ulp", lambda d: bounded(d).update(max_normwise_ulp=math.inf),
     COMPARISON + r"\.max_normwise_ulp must be a finite number, got Infinity"),
    ("nan-normwise-ulp", lambda d: bounded(d).update(max_normwise_ulp=math.nan),
     COMPARISON + r"\.max_normwise_ulp must be a finite number, got NaN"),
    ("nan-in-a-series", lambda d: bounded(d)["normwise_ulp_per_step_averages"].__setitem__(3, math.nan),
     COMPARISON + r"\.normwise_ulp_per_step_averages\[3\] must be a finite number >= 0, got NaN"),
    ("nan-hyperparameter", lambda d: d["scenarios"][0]["hyperparameters"].update(lr=math.nan),
     r"scenarios\[0\]\.hyperparameters\.lr must be a finite number"),
    ("verdict-unknown", lambda d: bounded(d).update(status="maybe"),
     COMPARISON + r'\.status must be one of fails, finding, holds, skipped, got "maybe"'),
    ("series-longer-than-steps", lambda d: bounded(d)["differing_per_step"].extend([0] * 100),
     COMPARISON + r"\.differing_per_step has more values than the scenario's 25 steps"),
    ("lr-change-of-three", lambda d: d["scenarios"][0].update(lr_changes=[[3, 0.5, 1]]),
     r"scenarios\[0\]\.lr_changes\[0\] must be \[step, factor\], got an array of 3"),
    ("environment-without-cpu", lambda d: d["environment"].pop("cpu"), r"environment\.cpu is missing"),
    ("unknown-field", lambda d: d["scenarios"][0].update(colour="red"),
     r"scenarios\[0\]\.colour is not a field this version writes"),
    ("a-lone-surrogate", lambda d: d["scenarios"][0].update(purpose="\ud800"),
     r'scenarios\[0\]\.purpose must be a string, got "\\ud800"'),
    ("other-schema-version", lambda d: d.update(schema_version=2), r"schema_version is 2, this version reads 5"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_shard_is_refused_naming_the_file_and_the_field(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    shard: dict[str, Any],
    edit: Callable[[dict[str, Any]], object],
    message: str,
) -> None:
    data = copy.deepcopy(shard)
    edit(data)
    directory = write_shard(tmp_path / "shard", data)
    line = refusal(capsys, tmp_path, directory)
    assert line.startswith(f"asgd-conformance merge: error: {directory / 'results.json'}: "), line
    assert re.search(message, line), line


@pytest.mark.e2e
def test_the_real_shard_merges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    """The control of the tests here: unedited, the shard merges into a whole run that holds."""
    status, out, err = run_merge(capsys, tmp_path / "report", write_shard(tmp_path / "shard", shard))
    assert status == 0 and "PASS: 1 scenario, " in out, out + err
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_shard_that_is_not_json_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    text = json.dumps(shard)
    for name, broken in (("cut", text[: len(text) // 2]), ("latin-1", text.replace("torch", "t\xf6rch"))):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "results.json").write_bytes(broken.encode("latin-1"))
        line = refusal(capsys, tmp_path, directory)
        assert f"{directory / 'results.json'} is not JSON (" in line


@pytest.mark.parametrize("depth", [40, 200_000])
def test_a_shard_that_nests_deeper_than_max_depth_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any], depth: int
) -> None:
    """40 levels parse and are refused by the check; 200,000 are refused while parsing (json's
    parser recurses once per level), never as a RecursionError's traceback."""
    data = copy.deepcopy(shard)
    data["scenarios"][0]["hyperparameters"]["lr"] = "DEEP"
    text = json.dumps(data).replace('"DEEP"', "[" * depth + "]" * depth)
    line = refusal(capsys, tmp_path, write_shard(tmp_path / "shard", text))
    assert f"deeper than {merge.MAX_DEPTH} levels" in line, line
    if depth == 40:
        assert "scenarios[0].hyperparameters.lr" in line


def test_shards_beyond_max_shards_are_refused_before_anything_is_allocated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    """``--shard 1/100000000000`` once made the merge allocate a set of 10**11 shard numbers."""
    data = copy.deepcopy(shard)
    data["selection"]["shard"] = "1/100000000000"
    directory = write_shard(tmp_path / "huge", data)
    line = refusal(capsys, tmp_path, directory)
    assert line.endswith(f"{directory} is a shard of 100,000,000,000, a merge combines at most 1,024")
    data["selection"]["shard"] = f"1/{merge.MAX_SHARDS}"  # within the bound: the missing are counted
    line = refusal(capsys, tmp_path, write_shard(tmp_path / "many", data))
    assert line.endswith("shards 2/1024, 3/1024, 4/1024, 5/1024, 6/1024, 7/1024, 8/1024, 9/1024, 10/1024, "
                         "11/1024 and 1013 more are missing")  # fmt: skip
    line = refusal(capsys, tmp_path, *[tmp_path / f"shard-{k}" for k in range(merge.MAX_SHARDS + 1)])
    assert line.endswith("1,025 shards given, a merge combines at most 1,024")


def test_a_scenario_beyond_max_steps_is_refused_before_anything_is_allocated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    """``"steps": 10**11`` once made the plot allocate a list of 10**11 step numbers."""
    data = copy.deepcopy(shard)
    data["scenarios"][0]["steps"] = 10**11
    line = refusal(capsys, tmp_path, write_shard(tmp_path / "shard", data))
    assert line.endswith("scenarios[0].steps must be from 1 to 1,000,000, got 100,000,000,000")


def test_shards_beyond_max_results_bytes_are_refused_unread(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The size is checked before a byte is read: of each file, and of all of them together (the
    files here are sparse, and not JSON: that they are never parsed is the point)."""
    big = tmp_path / "big"
    big.mkdir()
    with (big / "results.json").open("wb") as file:
        file.truncate(merge.MAX_RESULTS_BYTES + 1)
    line = refusal(capsys, tmp_path, big)
    assert line.endswith(f"{big / 'results.json'} holds 268,435,457 bytes, more than 268,435,456")
    halves = [tmp_path / "one", tmp_path / "two"]
    for half in halves:
        half.mkdir()
        with (half / "results.json").open("wb") as file:
            file.truncate(merge.MAX_RESULTS_BYTES // 2 + 1)
    line = refusal(capsys, tmp_path, *halves)
    assert line.endswith("the shards hold 268,435,458 bytes together, a merge reads at most 268,435,456")


@pytest.mark.e2e
def test_names_reach_the_plots_as_plain_text(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    r"""A name with two ``$`` once went to matplotlib's mathtext parser (``$\frac{$`` raised)."""
    pair = bounded(shard)["pair"]
    names = {SCENARIO: r"cell $\frac{$ of $x$", pair: r"$\sqrt{$ vs torch"}
    text = json.dumps(shard)
    for old, new in names.items():
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    status, out, err = run_merge(capsys, tmp_path / "report", write_shard(tmp_path / "shard", text))
    assert status == 0, out + err
    page = (tmp_path / "report" / "index.html").read_text()
    plot = page[page.index("<svg") : page.index("</svg>")]
    assert r"cell $\frac{$ of $x$: normwise ULP per step" in plot
    assert r"$\sqrt{$ vs torch<" in plot  # the legend's label


@pytest.mark.e2e
def test_the_largest_numbers_merge(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    """Finite is enough: a normwise ULP near binary64's largest once overflowed the plot's axis."""
    data = copy.deepcopy(shard)
    comparison = bounded(data)
    comparison["normwise_ulp_per_step_parameters"][3] = comparison["max_normwise_ulp"] = 1.7e308
    comparison["ulp_budget"] = 2**53
    data["scenarios"][0]["start_step"] = 2**53 - 100
    status, out, err = run_merge(capsys, tmp_path / "report", write_shard(tmp_path / "shard", data))
    assert status == 0 and (tmp_path / "report" / "index.html").is_file(), out + err  # the shard's verdicts


@pytest.mark.e2e
def test_a_late_run_without_the_state_format_merges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shard: dict[str, Any]
) -> None:
    """A run's final step is null where its state's format is not known; the finding on late runs
    once formatted it as a number."""
    data = copy.deepcopy(shard)
    scenario = data["scenarios"][0]
    scenario["start_step"] = 1000
    for run in scenario["implementations"]:
        if run["name"] in ("torch-forloop", "optimized-numba-numpy"):
            run.update(final_step=None, final_eta=None, final_mu=None)
    status, out, err = run_merge(capsys, tmp_path / "report", write_shard(tmp_path / "shard", data))
    assert status == 0, out + err


def long_run(data: dict[str, Any], steps: int) -> dict[str, Any]:
    """``data`` with its scenario run to ``steps`` steps: each per-step series repeated to that length."""
    longer = copy.deepcopy(data)
    scenario = longer["scenarios"][0]
    scenario["steps"] = steps
    for comparison in scenario["comparisons"]:
        for name, series in comparison.items():
            if (
                name.endswith("per_step_parameters")
                or name.endswith("per_step_averages")
                or name == "differing_per_step"
            ):
                comparison[name] = (series * (steps // len(series) + 1))[:steps] if series else []
    return longer


# Runs ``asgd-conformance merge`` in a process of its own and prints the most memory it held
# (RUSAGE_CHILDREN's ru_maxrss: KiB on Linux, bytes on macOS). Not measured as a child of the test
# process: Linux carries ru_maxrss across exec, so a child of pytest reports at least pytest's size.
PEAK_OF_A_MERGE = """
import resource, subprocess, sys
merge = [sys.executable, "-m", "conformance", "merge", sys.argv[1], "--out", sys.argv[2]]
status = subprocess.run(merge, stdout=subprocess.DEVNULL).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(f"peak={peak}")
sys.exit(status)
"""


def peak_of_a_merge(directory: Path, out: Path) -> int:
    """The most memory (bytes) a process that merges ``directory`` held."""
    process = subprocess.run(
        [sys.executable, "-c", PEAK_OF_A_MERGE, str(directory), str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CI": "true"}, timeout=1800,
    )  # fmt: skip
    assert process.returncode == 0, process.stdout + process.stderr
    return int(process.stdout.removeprefix("peak="))


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="resource is POSIX")
def test_a_merge_holds_a_small_multiple_of_what_it_reads(tmp_path: Path, shard: dict[str, Any]) -> None:
    """A 35 MB shard of 40,000-step series takes at most 5 times its size beyond what the merge of
    the 25-step shard takes (about 3 times; it took 12 times when the plot drew every step and the
    writer held the text in pieces, some 60 bytes a number)."""
    baseline = peak_of_a_merge(write_shard(tmp_path / "small", shard), tmp_path / "small-report")
    large = write_shard(tmp_path / "large", long_run(shard, 40_000))
    size = (large / "results.json").stat().st_size
    assert 30e6 < size < 60e6
    peak = peak_of_a_merge(large, tmp_path / "large-report")
    assert peak - baseline < 5 * size, (
        f"{(peak - baseline) / 1e6:.0f} MB beyond the baseline for {size / 1e6:.0f} MB"
    )
