"""Production ASGD: in place, compiled with numba (NumPy fallback), bit-identical to the reference."""

from optimized.asgd import ASGD
from optimized.packing import Packed, pack
from optimized.parameters import Parameter
from optimized.torch_interop import state_dict_from_torch, state_dict_to_torch

__all__ = ["ASGD", "Packed", "Parameter", "pack", "state_dict_from_torch", "state_dict_to_torch"]
