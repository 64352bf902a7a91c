"""The ASGD implementations that share the API, by name, for tests parametrized over both."""

from __future__ import annotations

from typing import Any

import optimized
import reference

IMPLEMENTATIONS: dict[str, Any] = {"reference": reference.ASGD, "optimized": optimized.ASGD}
