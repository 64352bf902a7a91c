"""The conformance harness: runner, CLI, report, workers, merge, lockstep, diagnosis, metrics and ULP distance."""
