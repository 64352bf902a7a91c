"""The conformance harness: scenarios through the reference, the optimized ASGD on each kernel and
torch, compared step by step in ULPs, with verdicts and a self-contained HTML report."""
