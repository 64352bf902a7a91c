"""The reference implementation: its rounding model and its NumPy profile."""
