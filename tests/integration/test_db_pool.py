"""The connection pool on PostgreSQL: no SELECT 1 per checkout, yet no dead connection
handed out after the server closed it (restart, idle timeout, killed backend)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app.config import engine_options
from app.db import connection_was_closed
from app.extensions import db

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_app(make_app: Any, database_url: str) -> Any:
    """The app with the engine options production computes for a PostgreSQL URL."""
    return make_app(SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url))


def _engine(app: Any) -> Any:
    with app.app_context():
        return db.engine


def _kill_backend(url: str, pid: int) -> None:
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_pooled_connections_are_handed_out_without_a_round_trip(
    pg_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(pg_app)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(
        engine.dialect,
        "do_ping",
        lambda dbapi_conn: pings.append(dbapi_conn) or real_ping(dbapi_conn),
    )
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2
    assert pings == []


def test_a_connection_the_server_closed_is_replaced_without_an_error(pg_app: Any) -> None:
    engine = _engine(pg_app)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        raw = conn.connection.dbapi_connection
    assert not connection_was_closed(raw)
    _kill_backend(pg_app.config["SQLALCHEMY_DATABASE_URI"], pid)
    deadline = time.monotonic() + 10
    while not connection_was_closed(raw) and time.monotonic() < deadline:
        time.sleep(0.01)  # the backend exits a moment after the signal
    assert connection_was_closed(raw)

    with engine.connect() as conn:  # the pool's only idle connection is the dead one
        new_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert new_pid != pid
