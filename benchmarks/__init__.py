"""Benchmarks of the optimized ASGD against torch, a plain NumPy translation and the memory bound."""
