"""The optimized implementation: kernels, backends, packing, fork and interrupt safety, and its bit-for-bit agreement with the reference."""
