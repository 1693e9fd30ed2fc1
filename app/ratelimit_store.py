"""The rate limiter's shared store in the app's own database (RATELIMIT_STORAGE_URI
"database://", the default when no Redis is configured).

Flask-Limiter's per-route limits and the sign-in throttle (app/auth/throttle.py) count
here, so every gunicorn worker of every instance sees the same counts: with per-process
memory, two workers let twice the limit through (issue 23). Each counter is one row of
rate_limit_counters; a hit is ONE atomic upsert-increment (INSERT ... ON CONFLICT DO
UPDATE ... RETURNING, on PostgreSQL and SQLite alike) on its own short transaction, apart
from the request's unit of work, so concurrent hits from any process never lose a count.

Fixed windows only (what Flask-Limiter's default strategy and the throttle use when the
store has no moving-window support). Expired rows count as absent and are swept now and
then. Times are Unix seconds from the app's clock (keep instances' clocks in sync: NTP).
"""

from __future__ import annotations

import time
from typing import Any

from limits.storage import Storage
from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.models.coordination import RateLimitCounter

SCHEME = "database"
_TABLE = RateLimitCounter.__table__
SWEEP_EVERY = 500  # hits per process between sweeps of expired rows


def _engine() -> Engine:
    from app.extensions import db

    return db.engine  # the current app's (a request, a CLI command, a job)


class DatabaseStorage(Storage):
    """limits' Storage on this app's database (see the module's docstring)."""

    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012 - limits reads it as a plain class attribute

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._hits = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        engine = _engine()
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        new = insert(_TABLE).values(key=key, count=amount, expires_at=now + expiry)
        lapsed = _TABLE.c.expires_at <= now
        statement = new.on_conflict_do_update(
            index_elements=[_TABLE.c.key],
            set_={
                "count": case((lapsed, amount), else_=_TABLE.c.count + amount),
                "expires_at": case((lapsed, now + expiry), else_=_TABLE.c.expires_at),
            },
        ).returning(_TABLE.c.count)
        with engine.connect().execution_options(kassa_write=True) as conn, conn.begin():
            count = int(conn.execute(statement).scalar_one())
            self._hits += 1
            if self._hits % SWEEP_EVERY == 0:
                conn.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now))
        return count

    def _live(self, key: str) -> tuple[int, float] | None:
        with _engine().connect() as conn:
            row = conn.execute(
                select(_TABLE.c.count, _TABLE.c.expires_at).where(
                    _TABLE.c.key == key, _TABLE.c.expires_at > time.time()
                )
            ).first()
        return (int(row[0]), float(row[1])) if row is not None else None

    def get(self, key: str) -> int:
        live = self._live(key)
        return live[0] if live else 0

    def get_expiry(self, key: str) -> float:
        live = self._live(key)
        return live[1] if live else time.time()

    def check(self) -> bool:
        try:
            with _engine().connect() as conn:
                conn.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with _engine().connect().execution_options(kassa_write=True) as conn, conn.begin():
            count = conn.execute(select(func.count()).select_from(_TABLE)).scalar_one()
            conn.execute(delete(_TABLE))
        return int(count)

    def clear(self, key: str) -> None:
        with _engine().connect().execution_options(kassa_write=True) as conn, conn.begin():
            conn.execute(delete(_TABLE).where(_TABLE.c.key == key))


def default_storage_uri(configured: str | None, redis_url: str | None) -> str:
    """RATELIMIT_STORAGE_URI when set, else Redis when REDIS_URL is, else the database."""
    return configured or redis_url or f"{SCHEME}://"
