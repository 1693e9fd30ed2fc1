"""Rows that let every worker of every instance agree: shared rate-limit counters and the
periodic scheduler's leader lease (app/ratelimit_store.py, app/jobs/leader.py)."""

from __future__ import annotations

from sqlalchemy import Double, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import Model


class RateLimitCounter(Model):
    """One fixed-window counter of the rate limiter and the sign-in throttle. The key is
    the limiter's (hashed account, address, route): never an email address."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int]
    # Unix time (seconds) when the window ends; an expired row counts as absent.
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class LeaderLease(Model):
    """Who leads the periodic scheduler on SQLite (PostgreSQL uses an advisory lock)."""

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Double)
