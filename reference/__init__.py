"""The executable specification of ASGD: pure-Python scalar arithmetic with explicit IEEE rounding."""

from reference.asgd import ASGD
from reference.hyperparameters import DEFAULTS, NUMERICS_PROFILES
from reference.numerics import FAST, TORCH, TORCH_FOREACH, Numerics
from reference.parameters import Parameter

__all__ = ["ASGD", "DEFAULTS", "FAST", "NUMERICS_PROFILES", "TORCH", "TORCH_FOREACH", "Numerics", "Parameter"]
