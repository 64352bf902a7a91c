"""``python -m benchmarks.check_times``: how long a conformance run takes, on each selection.

What a user waits for: ``conformance.check`` on the smoke, quick and full sets from a test (one
process, one worker), and the README's main job, ``asgd-conformance --quick`` (two workers). Each is
timed in a fresh interpreter from its start to its verdict, after one untimed smoke run has filled
numba's on-disk cache, so that every later run loads the kernels as a user's second run does. The
implementation checked is ``optimized.ASGD`` in the torch profile. Written as JSON for the
documentation (``docs/_data/check-times.json``, rendered by its performance page); nothing here is
a test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHECK = """
import functools, json, sys
import conformance, optimized
result = conformance.check(
    functools.partial(optimized.ASGD, numerics="torch"), claims="torch", selection=sys.argv[1]
)
print(json.dumps({"holds": result.holds, "scenarios": len(result.scenarios),
                  "comparisons": len(result.comparisons)}))
"""
SELECTIONS = ("smoke", "quick", "full")


def timed(command: list[str]) -> tuple[float, str]:
    """Wall seconds of ``command`` in a new process, and what it printed (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.check_times", description=__doc__)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the run here")
    parser.add_argument("--selections", default=",".join(SELECTIONS), help="which check() selections")
    arguments = parser.parse_args()
    from benchmarks.__main__ import where_and_with_what

    started = datetime.now(UTC)
    timed([sys.executable, "-c", CHECK, "smoke"])  # numba's cache filled, untimed
    rows: list[dict[str, Any]] = []
    for selection in arguments.selections.split(","):
        seconds, printed = timed([sys.executable, "-c", CHECK, selection])
        rows.append({"what": f"conformance.check(..., selection={selection!r})", "seconds": round(seconds, 1),
                     **json.loads(printed.splitlines()[-1])})  # fmt: skip
        print(f"  {rows[-1]['what']:<48} {seconds:7.1f} s")
    with tempfile.TemporaryDirectory() as out:
        seconds, _ = timed([sys.executable, "-m", "conformance", "--quick", "--out", str(Path(out) / "r")])
    rows.append({"what": "asgd-conformance --quick", "seconds": round(seconds, 1)})
    print(f"  {rows[-1]['what']:<48} {seconds:7.1f} s")
    record = {
        "run": {
            "date": started.isoformat(timespec="seconds"),
            "command": shlex.join(["python", "-m", "benchmarks.check_times", *sys.argv[1:]]),
            **where_and_with_what(),
        },
        "runs": rows,
    }
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written: {arguments.json}")


if __name__ == "__main__":
    main()
