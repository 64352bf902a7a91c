"""Production ASGD: in place, compiled with numba (NumPy fallback), bit-identical to the reference."""

from optimized.asgd import ASGD
from optimized.torch_interop import state_dict_from_torch, state_dict_to_torch
from reference.packing import Packed, pack
from reference.parameters import Parameter

__all__ = ["ASGD", "Packed", "Parameter", "pack", "state_dict_from_torch", "state_dict_to_torch"]
