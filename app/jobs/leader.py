"""One leader for the periodic scheduler across every worker and instance.

Every serving process runs a scheduler thread (app/jobs/scheduler.py), but only the one
that holds the leadership dispatches periodic tasks, so each runs once per interval, not
once per worker (issue 23). This is the one module outside app/payments/store.py that
speaks a database's own dialect: the advisory lock functions of PostgreSQL, and an upsert
with a condition for the lease row elsewhere.

- PostgreSQL: a session advisory lock (pg_try_advisory_lock) held on a connection of its
  own, outside the pool. It is released the moment that session ends: a killed worker's
  connection closes with it, a lost one within the TCP keepalive / timeouts of
  app/config.py's connect_args. Every tick the leader confirms its session still answers;
  followers try the lock (one cheap statement per tick each). Advisory locks are per
  database, so apps on other databases of one server do not compete.
- Other databases (SQLite): a row of leader_leases with a holder and an expiry
  (SCHEDULER_LEASE_SECONDS). The holder renews it every tick; anyone takes it once it has
  lapsed, so a dead leader is replaced within the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import create_engine, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.models.coordination import LeaderLease

log = logging.getLogger(__name__)

# pg_try_advisory_lock's key: any fixed 64-bit number this app alone uses.
ADVISORY_KEY = 0x4B61_7373_6153_6368  # "KassaSch"
LEASE_NAME = "scheduler"
_LEASES = LeaderLease.__table__


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    """hold(): True while this process leads (call it every tick). release(): step down."""

    def __init__(self) -> None:
        self.leading = False
        self.holder = holder_id()

    def hold(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        self.leading = False


class AdvisoryLockLeadership(Leadership):
    def __init__(self, engine: Engine, connect_args: dict[str, Any]) -> None:
        super().__init__()
        # Its own connection, never the pool's: the lock lives as long as this session.
        self._engine = create_engine(
            engine.url, poolclass=NullPool, connect_args=connect_args
        ).execution_options(isolation_level="AUTOCOMMIT")
        self._conn: Connection | None = None

    def hold(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            if self.leading:
                self._conn.execute(select(1))  # the session (and so the lock) still holds
            else:
                lock = func.pg_try_advisory_lock(ADVISORY_KEY)
                self.leading = bool(self._conn.execute(select(lock)).scalar())
        except (SQLAlchemyError, OSError):
            log.warning("scheduler leadership: database session lost; stepping down")
            self._drop()
        return self.leading

    def _drop(self) -> None:
        self.leading = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                log.debug("scheduler leadership: closing a dead session failed", exc_info=True)

    def release(self) -> None:
        self._drop()  # closing the session releases the lock
        self._engine.dispose()


class LeaseLeadership(Leadership):
    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        super().__init__()
        self._engine = engine
        self.lease_seconds = lease_seconds

    def _writer(self) -> Connection:
        return self._engine.connect().execution_options(kassa_write=True)

    def hold(self) -> bool:
        now = time.time()
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        new = insert(_LEASES).values(
            name=LEASE_NAME, holder=self.holder, expires_at=now + self.lease_seconds
        )
        take = new.on_conflict_do_update(
            index_elements=[_LEASES.c.name],
            set_={"holder": new.excluded.holder, "expires_at": new.excluded.expires_at},
            # Renew our own lease, or take one that has lapsed; never someone's live one.
            where=or_(_LEASES.c.holder == self.holder, _LEASES.c.expires_at <= now),
        ).returning(_LEASES.c.holder)
        try:
            with self._writer() as conn, conn.begin():
                self.leading = conn.execute(take).first() is not None
        except SQLAlchemyError:
            log.warning("scheduler leadership: lease not renewed; stepping down")
            self.leading = False
        return self.leading

    def release(self) -> None:
        if self.leading:
            try:
                with self._writer() as conn, conn.begin():
                    conn.execute(delete(_LEASES).where(_LEASES.c.holder == self.holder))
            except SQLAlchemyError:
                pass
        self.leading = False


def leadership_for(app: Flask) -> Leadership:
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "postgresql":
        options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
        return AdvisoryLockLeadership(engine, dict(options.get("connect_args") or {}))
    return LeaseLeadership(engine, float(app.config.get("SCHEDULER_LEASE_SECONDS") or 15))
