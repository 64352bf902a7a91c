"""Hypothesis settings profiles: ``ci`` (the default, derandomized) and ``thorough``
(``--hypothesis-profile=thorough``, 2,000 examples, random); every test with Python's own Ctrl-C
handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.implementations import ASGD_CLASSES

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


@pytest.fixture(params=list(ASGD_CLASSES), scope="session")
def asgd_class(request: pytest.FixtureRequest) -> Any:
    """Each ASGD implementation in turn (the reference, the optimized ASGD on each kernel); tests
    of the shared API take this fixture."""
    return ASGD_CLASSES[request.param]


@pytest.fixture(autouse=True)
def python_handles_ctrl_c() -> Iterator[None]:
    """Each test starts with Python's default SIGINT handler (``KeyboardInterrupt``), as under a
    terminal, whatever this process inherited: a shell starts a background job with SIGINT
    ignored, and the tests of Ctrl-C would then test nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
