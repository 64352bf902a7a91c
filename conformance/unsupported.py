"""The exception an implementation raises to decline a scenario (light to import: a user's test
file imports it, and the CLI's first moments must stay interruptible)."""

from __future__ import annotations

__all__ = ["Unsupported"]


class Unsupported(Exception):
    """Raised by a factory or its optimizer to decline a scenario; the message is the reason shown."""
