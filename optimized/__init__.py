"""Production NumPy ASGD: vectorized, in place, bit-identical to the reference in each profile."""

from optimized.asgd import ASGD
from optimized.packing import Packed, pack
from optimized.torch_interop import state_dict_from_torch, state_dict_to_torch
from reference.parameters import Parameter

__all__ = ["ASGD", "Packed", "Parameter", "pack", "state_dict_from_torch", "state_dict_to_torch"]
