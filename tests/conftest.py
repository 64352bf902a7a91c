"""Hypothesis settings profiles: ``ci`` (the default, derandomized) and ``thorough``
(``--hypothesis-profile=thorough``, 2,000 examples, random)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.implementations import IMPLEMENTATIONS

# ci is derandomized: the same examples on every run, so a red CI is a real regression; thorough
# searches afresh each time and is where new counterexamples are found.
settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


@pytest.fixture(params=list(IMPLEMENTATIONS), scope="session")
def asgd_class(request: pytest.FixtureRequest) -> Any:
    """Each ASGD implementation in turn (the reference, the optimized ASGD on each kernel); tests
    of the shared API take this fixture."""
    return IMPLEMENTATIONS[request.param]
