"""The run against implementations that end its process, hang or raise ``KeyboardInterrupt``, and
against being stopped: SIGINT, SIGTERM and SIGKILL of ``asgd-conformance`` itself. Whatever
happens, the run reports what it can, says what happened in one line, and leaves no process
behind. Every wait here is a hang guard only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = "torch-config-default"  # 25 steps of 16 float32 values
TWO_SHORT = "torch-config-[dl]*"  # torch-config-default and torch-config-lambd
HANG_GUARD = 1800.0

pytestmark = [
    pytest.mark.e2e,  # each test runs asgd-conformance in a process of its own, or its forked workers
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups"),
]


def conformance(*argv: str) -> subprocess.Popen[str]:
    """``asgd-conformance`` as a user runs it from a terminal: in its own process group (a job),
    with SIGINT's default disposition (a shell starts a background job with SIGINT ignored, and this
    test process may be one)."""
    return subprocess.Popen(
        [sys.executable, "-m", "conformance", *argv],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=HANG_GUARD)
    return process.returncode, out, err


def implementation_runs(report: Path, name: str) -> list[dict[str, object]]:
    data = json.loads((report / "results.json").read_text())
    return [run for s in data["scenarios"] for run in s["implementations"] if run["name"] == name]


HOSTILE = {
    "tests.external_factories:ends_the_process_at_step_3": "ended the worker process (exit status 0) at step 3",
    "tests.external_factories:interrupts_itself_at_step_3": "at step 3: KeyboardInterrupt",
    "tests.external_factories:raises_keyboard_interrupt": "could not start: KeyboardInterrupt",
}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_implementation_that_ends_the_process_or_interrupts_itself_fails_and_the_run_reports(
    tmp_path: Path, jobs: str
) -> None:
    """``os._exit(0)`` used to end the whole run with status 0, no report and no output (``--jobs
    1``), or a ``BrokenProcessPool`` traceback (``--jobs 2``). Only a Ctrl-C interrupts the run: an
    implementation's own ``KeyboardInterrupt`` is its failure (it was reported as an interruption,
    exit 130, no report). The other implementations' verdicts stand."""
    chosen = [argument for name in HOSTILE for argument in ("--implementation", name)]
    status, out, err = finished(conformance(
        *chosen, "--only", SHORT, "--no-statistics", "--jobs", jobs, "--out", str(tmp_path / "r"),
    ))  # fmt: skip
    assert status == 1, err
    assert "Traceback" not in err
    for name, reason in HOSTILE.items():
        (run,) = implementation_runs(tmp_path / "r", name)
        assert run["status"] == "failed"
        assert str(run["reason"]).startswith(reason), run["reason"]
        assert name in out
    (built_in,) = implementation_runs(tmp_path / "r", "reference-torch")
    assert built_in["status"] == "ran"


def test_an_implementation_that_hangs_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    name = "tests.external_factories:hangs_at_step_3"
    status, out, err = finished(conformance(
        "--implementation", name, "--only", TWO_SHORT, "--no-statistics", "--timeout", "5", "--out", str(tmp_path / "r"),
    ))  # fmt: skip
    assert status == 1, err
    runs = implementation_runs(tmp_path / "r", name)
    assert len(runs) == 2, "every scenario was run and reported"
    for run in runs:
        assert run["status"] == "failed"
        assert run["reason"] == "timed out: more than 5 s on this scenario (--timeout) at step 3"
    assert name in out


def workers_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"waited {HANG_GUARD:.0f} s for {what}")
        time.sleep(0.05)


def started_run(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A run with two busy workers (one implementation hangs in each), and the workers' pids."""
    process = conformance(
        "--implementation", "tests.external_factories:hangs_at_step_3", "--only", TWO_SHORT,
        "--no-statistics", "--jobs", "2", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    wait_until(lambda: len(workers_of(process.pid)) == 2 or process.poll() is not None, "two workers")
    if process.poll() is not None:  # it ended before its workers were busy: say why, do not wait
        _, err = process.communicate()
        pytest.fail(f"the run ended with status {process.returncode} before two workers started: {err}")
    return process, workers_of(process.pid)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_run_and_its_workers_with_one_line(tmp_path: Path, signum: int) -> None:
    process, workers = started_run(tmp_path)
    time.sleep(1.0)  # the workers are inside the scenarios
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # as a terminal's Ctrl-C: the workers get it too
    else:
        os.kill(process.pid, signum)
    status, out, err = finished(process)
    cause = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert status == (130 if signum == signal.SIGINT else 143)
    assert err == f"asgd-conformance: {cause}; no report was written\n", err
    assert out == ""
    wait_until(lambda: not any(map(alive, workers)), "the workers to end")
    assert not (tmp_path / "r").exists()


@needs_proc
def test_sigkill_of_the_run_ends_its_workers(tmp_path: Path) -> None:
    """A CI runner's timeout kills the run outright; its workers used to go on computing for 20
    minutes, then idle for good."""
    process, workers = started_run(tmp_path)
    process.kill()
    process.wait(timeout=HANG_GUARD)
    wait_until(lambda: not any(map(alive, workers)), "the workers to end")


def test_ctrl_c_while_the_harness_imports_exits_130_with_one_line() -> None:
    process = conformance("--only", SHORT, "--no-statistics")
    time.sleep(0.3)  # still importing the harness (numpy, torch, the scenarios)
    os.killpg(process.pid, signal.SIGINT)
    status, _, err = finished(process)
    assert status == 130, err
    assert err == "asgd-conformance: interrupted; no report was written\n"


def test_values_near_the_top_of_binary64_are_reported_as_the_failure_they_are(tmp_path: Path) -> None:
    """±1.8e308 made the errors infinite, and writing results.json failed after the whole run."""
    name = "tests.external_factories:returns_the_largest_values"
    status, out, err = finished(conformance(
        "--implementation", name, "--only", "lsq-f64-averaging", "--no-statistics", "--out", str(tmp_path / "r"),
    ))  # fmt: skip
    assert status == 1, err
    assert "Traceback" not in err
    data = json.loads((tmp_path / "r" / "results.json").read_text())  # strict JSON: no Infinity
    failed = [c for s in data["scenarios"] for c in s["comparisons"] if c["status"] == "fails"]
    assert failed and all(name in (c["left"], c["right"]) for c in failed)
    assert max(c["max_abs_error"] for c in failed) == 1.7976931348623157e308
    assert "FAIL lsq-f64-averaging" in out
