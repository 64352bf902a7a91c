"""``asgd-conformance`` checks its arguments before it runs anything, says what it selected, and
never leaves half a report behind."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from conformance import cli, report
from conformance.scenarios import SCENARIOS

QUICK = [s.name for s in SCENARIOS if s.quick]
SMALL = "random-f32-averaging"  # a quick scenario of a few dozen steps


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_default_is_the_quick_set(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--list")
    assert status == 0 and out.split() == QUICK
    _, full, _ = run(capsys, "--list", "--full")
    assert len(full.split()) == len(SCENARIOS) > len(QUICK)
    status, usage, _ = run(capsys, "--help")
    assert status == 0 and "--quick" in usage


@pytest.mark.e2e
def test_an_only_run_records_the_set_it_ran(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, _ = run(
        capsys, "--only", SMALL, "--out", str(tmp_path / "r"), "--no-statistics", "--jobs", "1"
    )
    assert status == 0, out
    selection = json.loads((tmp_path / "r" / "results.json").read_text())["selection"]
    assert selection["set"] == "quick" and selection["only"] == SMALL


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["--trajectory", "--full-coverage"])
def test_how_the_reference_judges_is_chosen_and_recorded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mode: str
) -> None:
    status, out, _ = run(capsys, "--only", SMALL, "--out", str(tmp_path / "r"), "--no-statistics", mode)
    assert status == 0, out
    written = json.loads((tmp_path / "r" / "results.json").read_text())
    assert (written["selection"]["lockstep"], written["selection"]["full_coverage"]) == (
        mode != "--trajectory",
        mode == "--full-coverage",
    )
    modes = {
        c["mode"]
        for s in written["scenarios"]
        for c in s["comparisons"]
        if c["left"].startswith("reference-")
    }
    assert modes == {"trajectory" if mode == "--trajectory" else "lockstep"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--only", "no-such-scenario"],
            r"no scenario of the quick set matches --only 'no-such-scenario'; `asgd-conformance --list`",
        ),
        (["--seed", "-5"], r"--seed must be >= 0, got -5"),
        (["--jobs", "0"], r"--jobs must be between 1 and \d+"),
        (["--jobs", "100000"], r"--jobs must be between 1 and \d+ \(4 per CPU\), got 100000"),
        (["--seed", "x"], r"argument --seed: invalid int value"),
        (["--trajectory", "--full-coverage"], r"--full-coverage is for lockstep checks"),
        (["--qiuck"], r"unrecognized arguments: --qiuck \(did you mean --quick\?\)"),
        (["--ful"], r"unrecognized arguments: --ful \(did you mean --full\?\)"),  # no prefix matching
        (["--only", "lsq-f32-averagng"], r"--only 'lsq-f32-averagng' \(did you mean lsq-f32-averaging"),
    ],
)
def test_usage_errors_exit_2_before_anything_runs(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "run_conformance", lambda **_: pytest.fail("ran despite a usage error"))
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert re.search(message, err), err


def test_an_unusable_out_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "run_conformance", lambda **_: pytest.fail("ran despite a bad --out"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    status, _, err = run(capsys, "--out", str(a_file))
    assert status == 2 and "exists and is not a directory" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    status, _, err = run(capsys, "--out", str(busy))
    assert status == 2 and "holds other files than a report (notes.txt)" in err
    if Path("/proc/self").is_dir():  # a place nobody can write, root included
        status, _, err = run(capsys, "--out", "/proc/asgd-report")
        assert status == 2 and "/proc/asgd-report cannot be written" in err
    if os.geteuid() != 0:  # root writes anywhere else
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        status, _, err = run(capsys, "--out", str(locked / "report"))
        assert status == 2 and "cannot be written" in err


@pytest.mark.e2e
def test_an_interrupted_run_exits_130_and_leaves_the_old_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    status, _, _ = run(capsys, "--only", SMALL, "--out", str(out), "--no-statistics", "--jobs", "1")
    assert status == 0
    old = {name: (out / name).read_bytes() for name in report.REPORT_FILES}

    def interrupted(result: Any, path: Path) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_json", interrupted)  # half-way through writing the new report
    status, out_text, err = run(capsys, "--only", SMALL, "--out", str(out), "--no-statistics", "--jobs", "1")
    assert (
        status == 130 and err == "asgd-conformance: interrupted; no report was written\n" and out_text == ""
    )
    assert {name: (out / name).read_bytes() for name in report.REPORT_FILES} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"], "no staging directory left behind"


@pytest.mark.e2e
def test_a_plot_that_fails_leaves_no_figure_open(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from conformance.plots import ulp_plot_svg
    from conformance.run import run_conformance

    result = run_conformance(only=SMALL, statistics=False)
    before = plt.get_fignums()

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ulp_plot_svg(result.scenarios[0], {})
    assert plt.get_fignums() == before


@pytest.mark.e2e
def test_a_report_directory_gets_the_usual_permissions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "r"
    status, _, _ = run(capsys, "--only", SMALL, "--out", str(out), "--no-statistics", "--jobs", "1")
    assert status == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_the_report_warns_when_torch_is_not_the_verified_release() -> None:
    from conformance.environment import TORCH_VERIFIED, torch_warning

    assert torch_warning({"torch": f"{TORCH_VERIFIED}+cpu"}) is None
    assert torch_warning({"torch": None}) is None
    warning = torch_warning({"torch": "2.14.0"})
    assert warning is not None and f"verified on torch {TORCH_VERIFIED}" in warning


@pytest.mark.e2e
def test_a_ctrl_c_held_back_while_the_report_is_put_in_place_says_it_was_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT during the final rename is held until the new report is in place; the message
    then says so (it said "no report was written" of a report that was there)."""
    out = tmp_path / "report"
    replace = os.replace

    def interrupted_replace(source: Any, destination: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        replace(source, destination)

    monkeypatch.setattr(report.os, "replace", interrupted_replace)
    status, out_text, err = run(capsys, "--only", SMALL, "--out", str(out), "--no-statistics", "--jobs", "1")
    assert status == 130 and out_text == ""
    assert err == f"asgd-conformance: interrupted; the report was written: {out / 'index.html'}\n"
    assert json.loads((out / "results.json").read_text())["scenarios"][0]["name"] == SMALL


@pytest.mark.e2e
def test_the_whole_run_figure_is_the_wall_time_the_user_waited(tmp_path: Path) -> None:
    """The printed figure counts from the process's start (the interpreter, the imports) to the
    printed line, so it lies between results.json's own figure and the time measured outside."""
    import subprocess
    import sys
    import time

    outside = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "--only", SMALL, "--no-statistics", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    outside = time.monotonic() - outside
    assert done.returncode == 0, done.stderr
    printed = float(re.search(r"whole run ([\d.]+) s", done.stdout).group(1))  # type: ignore[union-attr]
    recorded = json.loads((tmp_path / "r" / "results.json").read_text())["seconds"]
    assert recorded <= printed + 0.05 <= outside + 0.1
