"""The conformance harness: scenarios, implementations, pairs and verdicts, and the report.

The public API, all of it here: :func:`check` runs your ASGD against the reference and torch from
your own tests and returns a :class:`RunResult` (:func:`assert_conforms` asserts it holds, with a
short message); :class:`Unsupported` declines a scenario; the
Protocols say what a factory's optimizer must offer in each :data:`Style`; the ``Literal`` types
name the numerics profiles, the optimized ASGD's kernels and what an implementation may claim.
Importing the package is light; ``check`` brings in the harness when it is called.
"""

from conformance import clock as clock  # first: the fallback wall clock counts from here
from conformance.check import assert_conforms, check
from conformance.protocols import ArrayOptimizer, Factory, TorchStyleOptimizer
from conformance.registry import ClaimsName, KernelName, NumericsName, Style
from conformance.results import RunResult
from conformance.unsupported import Unsupported

__all__ = [
    "ArrayOptimizer",
    "ClaimsName",
    "Factory",
    "KernelName",
    "NumericsName",
    "RunResult",
    "Style",
    "TorchStyleOptimizer",
    "Unsupported",
    "assert_conforms",
    "check",
]
