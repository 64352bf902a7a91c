"""The README's and the documentation's examples, run as written, and the pages checked against the code."""
