"""The conformance harness: scenarios, implementations, pairs and verdicts, and the report.

``check`` and ``Unsupported`` are the API for checking your own ASGD (see the README). Importing
the package is light; ``check`` brings in the harness when it is called.
"""

from conformance.check import check
from conformance.unsupported import Unsupported

__all__ = ["Unsupported", "check"]
