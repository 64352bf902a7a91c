"""Bring your own implementation: the protocol, the verdicts it earns, and how failures are named."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

import conformance
import optimized
from conformance import cli
from conformance.check import check
from conformance.external import ExternalImplementation, pairs_for
from conformance.implementations import IMPLEMENTATIONS
from conformance.results import read_json
from tests import external_factories as factories

README = Path(__file__).resolve().parents[2] / "README.md"
SHORT = "lsq-f32-averaging"  # 200 steps of float32 least squares, averaging from step 51


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The exit status and what was printed (stdout and stderr)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def readme_block(first_line: str) -> str:
    """The README's Python block that starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


@pytest.mark.e2e
def test_the_readme_adapter_passes_claiming_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_asgd.py").write_text(readme_block("# my_asgd.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    judges = [i for i in IMPLEMENTATIONS if i.name in ("reference-torch", "torch-forloop")]
    argv = ["--implementation", "my_asgd:make", "--claims", "torch", "--only", "*f64*", "--no-statistics",
            "--jobs", "1", "--out", str(tmp_path / "report")]  # fmt: skip
    try:
        status = cli.main(argv, implementations=judges)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    out = capsys.readouterr().out
    assert status == 0, out
    results = read_json(tmp_path / "report" / "results.json")
    judged = [c for c in results.comparisons if "my_asgd:make" in c.pair and c.status != "skipped"]
    pairs = {c.pair for c in judged}
    assert pairs == {"reference-torch vs my_asgd:make", "my_asgd:make vs torch-forloop"}
    assert all(c.status == "holds" and c.differing_scalar_steps == 0 for c in judged)
    scenarios = {c.scenario for c in judged}
    assert {"many-tensors-f64-handover", "digits-mlp-f64", "lsq-f64-averaging"} <= scenarios


@pytest.mark.e2e
def test_the_readme_pytest_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_asgd.py").write_text(readme_block("# my_asgd.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {}
    exec(compile(readme_block("# test_my_asgd.py"), "test_my_asgd.py", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert len(tests) == 1
    # The README's test checks the whole quick set; a slice of it keeps this test short.
    monkeypatch.setattr(conformance, "check", functools.partial(check, only=SHORT))
    tests[0]()


@pytest.mark.e2e
def test_a_bit_flipped_at_step_37_fails_naming_scenario_pair_step_and_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "tests.external_factories:flips_a_bit_at_step_37"
    status, out = run_cli(
        capsys, "--implementation", name, "--claims", "torch", "--only", SHORT, "--no-statistics",
        "--jobs", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert status == 1
    assert f"FAIL {SHORT}: reference-torch vs {name} from step 37:" in out
    assert f"FAIL {SHORT}: {name} vs torch-forloop from step 37:" in out
    assert "first at step 37 in the parameters of theta at [7]" in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("broken_asgd:make", "--implementation broken_asgd:make: RuntimeError: no such accelerator"),
        ("broken_asgd_typo:mkae", "--implementation broken_asgd_typo:mkae: AttributeError: module "),
        ("no_such_module:make", "--implementation no_such_module:make: ModuleNotFoundError: No module named"),
    ],
)
def test_an_implementation_that_cannot_be_resolved_is_a_usage_error_before_anything_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    message: str,
) -> None:
    """Importing the module and finding the factory happen before any scenario runs: exit 2, no report."""
    (tmp_path / "broken_asgd.py").write_text('raise RuntimeError("no such accelerator")\n')
    (tmp_path / "broken_asgd_typo.py").write_text("def make(params, **hyper): ...\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run_conformance", lambda **_: pytest.fail("ran despite a bad --implementation"))
    with pytest.raises(SystemExit) as exited:
        cli.main(["--implementation", spec, "--only", SHORT, "--out", str(tmp_path / "report")])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


@pytest.mark.e2e
def test_check_names_the_tensor_and_the_element() -> None:
    result = conformance.check(
        factories.flips_tensor_3_at_step_3, claims="torch", only="many-tensors-f64-handover"
    )
    assert not result.holds
    failure = result.failures[0]
    assert (failure.scenario, failure.first_divergence) == ("many-tensors-f64-handover", 3)
    assert failure.pair == "reference-torch vs tests.external_factories:flips_tensor_3_at_step_3"
    assert failure.first_divergence_quantity == "parameters"
    assert failure.first_divergence_tensor == "tensor3[2, 2, 2, 2]"
    assert failure.first_divergence_element == "[1, 1, 1, 1]"  # the last value, where the bit flipped


@pytest.mark.e2e
def test_check_holds_for_a_faithful_implementation_in_each_claim() -> None:
    torch_claim = conformance.check(factories.torch_profile, claims="torch", only="many-tensors-f64-handover")
    assert torch_claim.holds, torch_claim.failures
    fast_claim = conformance.check(factories.fast_profile, claims="numpy", only="random-c64-averaging")
    assert fast_claim.holds and {c.pair for c in fast_claim.comparisons} == {
        "reference-numpy vs tests.external_factories:fast_profile"
    }
    foreach_claim = conformance.check(
        factories.torch_foreach, claims="torch-foreach", only="many-tensors-f64-handover"
    )
    assert foreach_claim.holds and {c.pair for c in foreach_claim.comparisons} == {
        "reference-torch-foreach vs tests.external_factories:torch_foreach",
        "tests.external_factories:torch_foreach vs torch-foreach",
    }
    # torch's foreach path claims no profile: bounded against the for-loop path, and within budget
    none_claim = conformance.check(factories.torch_foreach, claims="none", only="digits-mlp-f32")
    (comparison,) = none_claim.comparisons
    assert none_claim.holds and comparison.policy == "bounded" and comparison.first_divergence is not None


@pytest.mark.e2e
def test_a_claim_of_the_other_torch_path_fails() -> None:
    """The for-loop profile does not pass for the foreach path, nor the foreach path for the for-loop one."""
    wrong_path = conformance.check(factories.torch_profile, claims="torch-foreach", only="torch-config-lambd")
    assert not wrong_path.holds
    assert {c.pair for c in wrong_path.failures} == {
        "reference-torch-foreach vs tests.external_factories:torch_profile",
        "tests.external_factories:torch_profile vs torch-foreach",
    }
    foreach_as_loop = conformance.check(factories.torch_foreach, claims="torch", only="torch-config-lambd")
    assert not foreach_as_loop.holds and len(foreach_as_loop.failures) == 2


@pytest.mark.e2e
def test_a_torch_style_factory_is_recognized_and_declines_with_a_reason() -> None:
    result = conformance.check(factories.torch_for_loop, claims="torch", only="momentum-f32")
    (skipped,) = [r for s in result.scenarios for r in s.implementations if r.name.endswith("torch_for_loop")]
    assert skipped.status == "skipped" and skipped.reason == "torch.optim.ASGD has no momentum"
    exact = conformance.check(factories.torch_for_loop, claims="torch", only="late-run-f32")
    assert exact.holds and all(c.differing_scalar_steps == 0 for c in exact.comparisons)


@pytest.mark.e2e
def test_a_run_where_everything_was_declined_does_not_hold() -> None:
    result = conformance.check(factories.declines_everything, claims="torch", only=SHORT)
    assert result.judged == 0 and not result.holds


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (
            factories.averages_in_float64,
            "averages()[0] is float64 of shape (8,); expected float32 of shape (8,)",
        ),
        (factories.crashes_at_step_3, "at step 3: FloatingPointError: planted crash"),
    ],
)
def test_a_wrong_answer_or_a_crash_is_a_failure_of_the_implementation(factory: object, message: str) -> None:
    result = conformance.check(factory, claims="torch", only=SHORT)  # type: ignore[arg-type]
    (run,) = [r for s in result.scenarios for r in s.implementations if r.name.startswith("tests.")]
    assert run.status == "failed" and message in (run.reason or "")
    assert not result.holds and all(message in c.reason for c in result.failures)


def test_claims_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(
        ValueError, match="claims must be one of torch, torch-foreach, numpy, none, got 'exact'"
    ):
        conformance.check(factories.torch_profile, claims="exact")
    status, printed = run_cli(capsys, "--implementation", "no-colon", "--list")
    assert status == 2
    assert "--implementation must be MODULE:FACTORY, got 'no-colon'" in printed


@pytest.mark.e2e
def test_two_shards_merged_equal_the_unsharded_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--shard 1/2`` + ``--shard 2/2`` + ``merge``: the same cells, verdicts and exit status."""
    name = "tests.external_factories:flips_a_bit_at_step_37"  # a failing verdict must survive the merge
    common = ["--only", "*-f32-*", "--seeds", "2", "--jobs", "1", "--implementation", name]
    whole, _ = run_cli(capsys, *common, "--out", str(tmp_path / "whole"))
    first, _ = run_cli(capsys, *common, "--shard", "1/2", "--out", str(tmp_path / "one"))
    second, _ = run_cli(capsys, *common, "--shard", "2/2", "--out", str(tmp_path / "two"))
    merged, printed = run_cli(
        capsys, "merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "all")
    )
    assert whole == merged == 1 and {first, second} == {1}
    assert "FAIL random-f32-averaging@seed0" in printed
    expected, combined = (read_json(tmp_path / d / "results.json") for d in ("whole", "all"))
    one, two = (read_json(tmp_path / d / "results.json") for d in ("one", "two"))
    assert len(one.scenarios) + len(two.scenarios) == len(expected.scenarios) > 2
    assert [s.name for s in combined.scenarios] == [s.name for s in expected.scenarios]
    verdicts = [[(c.scenario, c.pair, c.status, c.first_divergence, c.differing_scalar_steps) for c in r.comparisons]
                for r in (expected, combined)]  # fmt: skip
    assert verdicts[0] == verdicts[1]
    assert combined.statistics == expected.statistics  # not run with --only, in either
    assert [f.key for f in combined.findings] == [f.key for f in expected.findings]


@pytest.mark.e2e
def test_merge_refuses_an_incomplete_or_mixed_set_of_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for shard in ("1/3", "2/3"):
        status, _ = run_cli(capsys, "--only", SHORT, "--seeds", "3", "--shard", shard, "--no-statistics",
                            "--jobs", "1", "--out", str(tmp_path / shard.replace("/", "-")))  # fmt: skip
        assert status == 0
    status, printed = run_cli(
        capsys, "merge", str(tmp_path / "1-3"), str(tmp_path / "2-3"), "--out", str(tmp_path / "m")
    )
    assert status == 2 and "shards 3/3 are missing" in printed
    status, printed = run_cli(
        capsys, "merge", str(tmp_path / "1-3"), str(tmp_path / "1-3"), "--out", str(tmp_path / "m")
    )
    assert status == 2 and "given twice" in printed
    assert not (tmp_path / "m").exists()


@pytest.mark.e2e
def test_a_decline_after_a_divergence_does_not_hide_it() -> None:
    result = conformance.check(factories.wrong_then_declines, claims="torch", only=SHORT)
    assert not result.holds
    assert {(c.first_divergence, c.first_divergence_tensor) for c in result.failures} == {(1, "theta")}
    assert all("declined at step 10: not after step 9" in c.reason for c in result.failures)


@pytest.mark.e2e
def test_sys_exit_in_a_factory_is_a_failure_not_the_end_of_the_run() -> None:
    result = conformance.check(factories.exits_the_process, claims="torch", only=SHORT)
    (run,) = [r for s in result.scenarios for r in s.implementations if r.name.startswith("tests.")]
    assert run.status == "failed" and "SystemExit" in (run.reason or "")


@pytest.mark.e2e
def test_any_callable_is_a_factory() -> None:
    factory = functools.partial(optimized.ASGD, numerics="torch")
    result = conformance.check(factory, claims="torch", only=SHORT)
    assert result.holds and "optimized.asgd:ASGD" in {
        r.name for s in result.scenarios for r in s.implementations
    }


@pytest.mark.e2e
def test_the_cli_fails_an_implementation_it_never_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "tests.external_factories:declines_everything"
    status, out = run_cli(capsys, "--implementation", name, "--only", SHORT, "--no-statistics", "--jobs", "1",
                          "--out", str(tmp_path))  # fmt: skip
    assert status == 1 and f"judged in no scenario: {name}" in out


@pytest.mark.e2e
def test_an_empty_shard_holds_and_shards_of_other_implementations_do_not_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--only", SHORT, "--no-statistics", "--jobs", "1"]
    status, _ = run_cli(capsys, *common, "--shard", "2/2", "--out", str(tmp_path / "empty"))
    assert status == 0  # one cell, two shards: the second has nothing to run, and nothing failed
    status, _ = run_cli(capsys, *common, "--shard", "1/2", "--implementation",
                        "tests.external_factories:torch_profile", "--out", str(tmp_path / "other"))  # fmt: skip
    assert status == 0
    status, printed = run_cli(capsys, "merge", str(tmp_path / "other"), str(tmp_path / "empty"),
                              "--out", str(tmp_path / "m"))  # fmt: skip
    assert status == 2 and "implementations, pairs differ" in printed


def refuses_momentum(params: Any, momentum: float, **hyper: Any) -> Any:
    """The torch profile, with torch's own refusal of momentum as a plain ValueError."""
    if momentum:
        raise ValueError(f"momentum={momentum} is not supported")
    return optimized.ASGD(params, numerics="torch", **hyper)


def test_a_refusal_of_momentum_which_torch_lacks_too_declines_the_scenario() -> None:
    """An ASGD that follows torch need not have momentum: refusing it skips the scenario, with the
    reason, where any other failure to start would fail the implementation."""
    from conformance.runner import run_scenario
    from conformance.scenarios import select_scenarios

    user = ExternalImplementation(refuses_momentum, "torch", style="numpy")
    judge = next(i for i in IMPLEMENTATIONS if i.name == "reference-torch")
    (momentum,) = select_scenarios(only="momentum-f32")
    result = run_scenario(momentum, [judge, user], pairs_for(user)[:1])
    (run,) = [r for r in result.implementations if r.name == user.name]
    assert run.status == "skipped"
    assert "declined momentum, which torch.optim.ASGD lacks too: ValueError: momentum=0.9" in str(run.reason)
    assert [c.status for c in result.comparisons] == ["skipped"]
    (plain,) = select_scenarios(only="lsq-f32-averaging")
    assert [c.status for c in run_scenario(plain, [judge, user], pairs_for(user)[:1]).comparisons] == [
        "holds"
    ]


def ignores_weight_decay(params: Any, weight_decay: float, **hyper: Any) -> Any:
    """A wrong ASGD: the torch profile with weight decay dropped."""
    return optimized.ASGD(params, numerics="torch", **hyper)


@pytest.mark.e2e
def test_assert_conforms_fails_with_a_short_message_and_passes_quietly() -> None:
    with pytest.raises(AssertionError) as raised:
        conformance.assert_conforms(ignores_weight_decay, claims="torch", selection="smoke")
    message = str(raised.value)
    assert len(message) <= 1000
    assert message.startswith("FAIL: 6 scenarios")
    lines = message.splitlines()
    assert lines[1].startswith("  FAIL torch-config-wd-maximize: reference-torch vs ") or lines[1].startswith(
        "  FAIL random-c64-averaging: reference-torch vs "
    ), lines[1]
    assert all(len(line) <= 700 for line in lines)
    faithful = functools.partial(optimized.ASGD, numerics="torch")
    conformance.assert_conforms(faithful, claims="torch", selection="smoke", style="numpy")


@pytest.mark.e2e
def test_a_run_and_its_failures_print_as_short_lines() -> None:
    result = conformance.check(ignores_weight_decay, claims="torch", selection="smoke", only="torch-config-*")
    assert not result.holds
    failure = result.failures[0]
    assert str(failure).startswith("FAIL torch-config-wd-maximize: reference-torch vs ")
    assert " from step 1: " in str(failure) and "\n" not in str(failure)
    assert str(result).splitlines()[0] == result.summary_line()
    assert str(result).splitlines()[1].endswith(" [float64, lr=0.01, weight_decay=0.1, maximize=True]")
    assert ": 0.45" in str(failure) and " (0x3fdc" in str(failure)  # both values, decimal and hex
    assert len(str(result)) <= 1000
