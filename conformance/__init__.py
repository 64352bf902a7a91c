"""The conformance harness: scenarios, implementations, pairs and verdicts, and the report.

``check`` and ``Unsupported`` are the API for checking your own ASGD (see the README).
"""

from conformance.check import check
from conformance.sessions import Unsupported

__all__ = ["Unsupported", "check"]
