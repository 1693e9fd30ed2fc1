"""The test fixtures themselves: a database at the migrations' head on both backends,
PostgreSQL databases that really appear and disappear, a live server on real HTTP."""

from __future__ import annotations

import hashlib
import re
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]


def migration_heads(app) -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    directory = Path(app.extensions["migrate"].directory)
    if not directory.is_absolute():
        directory = ROOT / directory
    config = Config()
    config.set_main_option("script_location", str(directory))
    return set(ScriptDirectory.from_config(config).get_heads())


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_app_database_is_migrated_to_head(app, db_backend):
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        assert db.engine.dialect.name == {"sqlite": "sqlite", "postgres": "postgresql"}[db_backend]
        with db.engine.connect() as conn:
            current = set(
                conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
            )
    assert current == migration_heads(app)


@pytest.mark.postgres
def test_create_pg_database_creates_and_then_drops_a_database(create_pg_database):
    import psycopg
    from sqlalchemy.engine import make_url

    def exists(conn, name):
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()

    with create_pg_database(migrate=False) as url:
        parsed = make_url(url)
        name = parsed.database
        assert re.fullmatch(r"kassa_test_[0-9a-f]{12}", name)
        libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        # A connection still open at the end must not stop the drop.
        left_open = psycopg.connect(libpq, autocommit=True)
        assert left_open.execute("SELECT current_database()").fetchone() == (name,)
        tables = left_open.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)
    try:
        admin = parsed.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
            assert exists(conn, name) is None
        with pytest.raises(psycopg.OperationalError):
            left_open.execute("SELECT 1")
    finally:
        left_open.close()


def test_live_server_serves_the_app_over_http(app, live_server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", live_server)
    assert app.config["PUBLIC_BASE_URL"] == live_server
    assert app.config["SANDBOX_DELIVER_WEBHOOKS"] is True
    with urllib.request.urlopen(f"{live_server}/static/js/htmx.min.js", timeout=10) as resp:
        body = resp.read()
        assert resp.status == 200
    vendored = (ROOT / "static" / "js" / "VENDORED.md").read_text()
    assert hashlib.sha256(body).hexdigest() in vendored
