"""The executable specification of ASGD: pure-Python scalar arithmetic with explicit IEEE rounding.

A complete implementation of its own (groups, validation, state, ``state_dict``); it shares no code
with :mod:`optimized`, which it is there to check.
"""

from reference.hyperparameters import DEFAULTS
from reference.numerics import FAST, NUMERICS_PROFILES, NUMPY, TORCH, TORCH_FOREACH, Numerics
from reference.optimizer import ASGD
from reference.parameters import Parameter

__all__ = [
    "ASGD",
    "DEFAULTS",
    "FAST",
    "NUMERICS_PROFILES",
    "NUMPY",
    "TORCH",
    "TORCH_FOREACH",
    "Numerics",
    "Parameter",
]
