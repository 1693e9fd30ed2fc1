"""Engine set-up per backend (called from create_app)."""

from __future__ import annotations

import select
import sys
from functools import cache
from typing import Any

from flask import Flask
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

from app.extensions import db


def configure_engine(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _configure_postgres(engine)


def _configure_postgres(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if connection_was_closed(dbapi_connection):
            # The pool discards this connection and hands out another (or a new one).
            raise exc.DisconnectionError("the server closed this pooled connection")


def connection_was_closed(dbapi_connection: Any) -> bool:
    """True when an idle pooled connection is known dead, without a round trip.

    Idle in the pool, a connection has nothing to read: when its socket is readable (or
    hung up) the server has closed it, usually after sending a FATAL notice (restart,
    idle_session_timeout, pg_terminate_backend). A stray notice also makes it readable;
    that costs one reconnect. About 1 us instead of pool_pre_ping's SELECT 1 (~40 us of
    CPU here, ~100 us of latency, and the server's work)."""
    if getattr(dbapi_connection, "closed", False):
        return True
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:  # a driver without a socket to look at: assume alive
        return False
    try:
        poller = _native_poll()()
        poller.register(fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed under us
        return True


@cache
def _native_poll() -> Any:
    """The operating system's poll(), also under gevent workers: gevent's cooperative
    poll() builds a watcher and a timer for every call, and a zero-timeout look at one
    socket never blocks, so there is nothing to cooperate on."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("select"):
        return monkey.get_original("select", "poll")
    return select.poll


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit BEGIN can't be IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # Write units of work take SQLite's write lock up front, so a read-then-write
        # can never be overtaken by another writer (see app/payments/uow.py).
        if conn.get_execution_options().get("kassa_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def compare_migration_type(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    """Alembic's type comparison, but an EncryptedString column that SQLite still stores
    in its old VARCHAR matches: SQLite enforces no VARCHAR length, and rebuilding those
    tables (orders, with foreign keys on) would cascade deletes (migration 99f90d3538bc)."""
    from sqlalchemy import String

    from app.crypto import EncryptedString

    if (
        isinstance(metadata_type, EncryptedString)
        and context.dialect.name == "sqlite"
        and isinstance(inspected_type, String)
    ):
        return False
    return None  # the default comparison


def render_migration_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Alembic autogenerate: write our UTCDateTime as a plain timezone-aware DateTime, and
    EncryptedString as the TEXT it is stored in."""
    from app.crypto import EncryptedString
    from app.models.base import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, EncryptedString):
        return "sa.Text()"
    return False
