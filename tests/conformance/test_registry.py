"""The conformance registry: ids derived from profile × kernel, pairs and claims checked against them,
and a user's factory style declared or told from what it builds."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import conformance.registry as registry
import optimized
import reference
from conformance.external import ExternalImplementation, detect_style
from conformance.implementations import IMPLEMENTATIONS
from conformance.registry import IDS, KERNELS, NUMERICS, PAIRS, check_pairs, optimized_id, reference_id
from conformance.runner import run_scenario
from conformance.scenarios import SCENARIOS
from conformance.verdicts import BIT_EXACT, Pair


def test_every_id_is_an_implementation_and_every_implementation_an_id() -> None:
    assert sorted(i.name for i in IMPLEMENTATIONS) == sorted(IDS)


def test_each_profile_holds_the_reference_to_the_optimized_asgd_on_every_kernel() -> None:
    names = {pair.name: pair.policy for pair in PAIRS}
    for numerics in NUMERICS:
        for kernel in KERNELS:
            assert names[f"{reference_id(numerics)} vs {optimized_id(kernel, numerics)}"] is BIT_EXACT


def test_a_pair_naming_an_unknown_id_is_refused() -> None:
    with pytest.raises(ValueError, match="'reference-fats', which is no implementation's id"):
        check_pairs([Pair("reference-fats", "optimized-numba-numpy", BIT_EXACT)], IDS)


def test_a_misspelled_id_in_the_registry_fails_its_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's own source with one id misspelled, executed as a module: the import raises."""
    source = Path(registry.__file__).read_text()
    planted = source.replace(
        'Pair(TORCH_COMPILED, TORCH_PATH["torch"]', 'Pair("torch-compild", TORCH_PATH["torch"]'
    )
    assert planted != source
    module = types.ModuleType("conformance.registry_with_a_typo")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    with pytest.raises(ValueError, match="'torch-compild', which is no implementation's id"):
        exec(compile(planted, "registry_with_a_typo.py", "exec"), module.__dict__)


def test_the_runner_refuses_a_pair_of_an_id_no_one_has() -> None:
    scenario = next(s for s in SCENARIOS if s.quick)
    chosen = [i for i in IMPLEMENTATIONS if i.name == "optimized-numpy-numpy"]
    with pytest.raises(ValueError, match="'optimized-numpy-fsat'"):
        run_scenario(scenario, chosen, [Pair("optimized-numpy-numpy", "optimized-numpy-fsat", BIT_EXACT)])


def test_expected_divergences_name_real_pairs() -> None:
    names = {pair.name for pair in PAIRS}
    for scenario in SCENARIOS:
        assert set(scenario.expected_divergence) <= names, scenario.name


def numpy_style_function(params: Any, **hyper: Any) -> Any:
    return reference.ASGD(params, **hyper)


def torch_style_function(params: Any, **hyper: Any) -> Any:
    import torch

    del hyper["momentum"]
    return torch.optim.ASGD(params, **hyper)


def builds_nothing_useful(params: Any, **hyper: Any) -> Any:
    return object()


def test_a_class_is_numpy_style_unless_it_is_a_torch_optimizer() -> None:
    assert detect_style(optimized.ASGD) == "numpy"
    torch = pytest.importorskip("torch")
    assert detect_style(torch.optim.ASGD) == "torch"


def test_a_function_is_told_by_what_it_builds() -> None:
    assert detect_style(numpy_style_function) == "numpy"
    pytest.importorskip("torch")
    assert detect_style(torch_style_function) == "torch"


def test_a_factory_of_neither_style_is_asked_to_declare_one() -> None:
    with pytest.raises(ValueError, match=r"declare it: --style numpy\|torch"):
        detect_style(builds_nothing_useful)


def test_a_declared_style_is_taken_without_probing() -> None:
    calls: list[Any] = []

    def counting(params: Any, **hyper: Any) -> Any:
        calls.append(params)
        return reference.ASGD(params, **hyper)

    implementation = ExternalImplementation(counting, "numpy", style="numpy")
    scenario = next(s for s in SCENARIOS if s.quick and not s.groups)
    from conformance.workloads import make_workload

    implementation.start(scenario, make_workload(scenario))
    assert len(calls) == 1 and isinstance(calls[0][0], np.ndarray)  # the scenario's own call, no probe


def test_an_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="style must be one of numpy, torch"):
        ExternalImplementation(numpy_style_function, "numpy", style="jax")  # type: ignore[arg-type]
