"""Parity with torch.optim.ASGD and the torch.optim.Optimizer face of optimized.torch.ASGD."""
