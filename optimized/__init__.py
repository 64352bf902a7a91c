"""Production NumPy ASGD (in progress: see the production-API issue)."""
