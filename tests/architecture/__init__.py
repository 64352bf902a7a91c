"""The shape of the codebase."""
