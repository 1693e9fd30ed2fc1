"""Password rules, shared by the CLI and the dashboard."""

from __future__ import annotations

MIN_LENGTH = 12


def password_problem(password: str) -> str | None:
    """A message saying what is wrong with a new password, or None if it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    return None
