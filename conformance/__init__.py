"""Conformance harness comparing the reference, the optimized ASGD and torch (in progress)."""
