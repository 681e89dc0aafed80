"""Checks of settings and arguments: a typed error naming what was wrong, never a
traceback from deep inside."""

from __future__ import annotations

__all__ = ["check_count"]


def check_count(name: str, value: object, *, minimum: int) -> None:
    """``value`` is an int (not a bool) of at least ``minimum``: else ``TypeError`` or
    ``ValueError`` naming ``name`` and what was given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
