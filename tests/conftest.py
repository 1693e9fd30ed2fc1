"""Shared fixtures: apps on a migrated database, clients, a logged-in merchant, a live server.

Backends: every test gets its own SQLite database by default (a copy of one database that
was migrated once per session). Tests marked `postgres` (or using `pg_app`, or parametrized
with `db_backend="postgres"`) run on a PostgreSQL database created for this session on the
server named by TEST_DATABASE_URL; its tables are truncated after each test. Without
TEST_DATABASE_URL those tests are skipped, with the reason shown by `-ra`.
See tests/README.md for how to use each fixture.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Import `app` from this checkout even when another checkout of Kassa is installed in the
# venv in editable mode (helpers share one venv across git worktrees); PathFinder runs
# before the editable-install finder, so the front of sys.path wins.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

TEST_DATABASE_URL_ENV = "TEST_DATABASE_URL"
PG_SKIP_REASON = (
    "needs PostgreSQL: set TEST_DATABASE_URL, e.g. "
    "TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres (tests/README.md)"
)

# Settings that the developer's shell may carry and that would make tests depend on it
# (a real gateway key, a broker, a production flag). Removed for the whole session.
_ENV_PREFIXES_TO_CLEAR = (
    "STRIPE_",
    "RAZORPAY_",
    "PAYPAL_",
    "SANDBOX_",
    "KASSA_",
    "RATELIMIT_",
    "SESSION_",
    "JOBS_",
    "LOG_",
    "CHECKOUT_",
    "WEBHOOK_",
    "HSTS_",
    "CSP_",
    "LOGIN_",
    "REQUIRE_2FA",
)
_ENV_NAMES_TO_CLEAR = (
    "DATABASE_URL",
    "SECRET_KEY",
    "PUBLIC_BASE_URL",
    "CELERY_BROKER_URL",
    "CAPTURE_METHOD",
    "ALLOWED_RETURN_HOSTS",
    "STORE_NAME",
    "MAX_CONTENT_LENGTH",
    "FLASK_DEBUG",
)

TEST_SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdef"


def default_test_config(database_uri: str) -> dict[str, Any]:
    """The configuration every test app starts from; tests override keys via build_app()."""
    return {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": database_uri,
        # The test client's default host; live_server replaces it with its real address.
        "PUBLIC_BASE_URL": "http://localhost",
        # Jobs run inline after commit, so a test sees their effect on return.
        "JOBS_EAGER": True,
        # Nothing listens for the sandbox's webhooks under the test client; live_server
        # turns delivery on, because there the app can receive its own HTTP calls.
        "SANDBOX_DELIVER_WEBHOOKS": False,
        "RATELIMIT_ENABLED": False,
        # CSRF stays on: tests post forms with a token (csrf_token, auth) like a browser.
        "WTF_CSRF_ENABLED": True,
    }


# --------------------------------------------------------------------------- collection


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark PostgreSQL tests consistently and skip them, with a reason, without a server."""
    have_pg = bool(os.environ.get(TEST_DATABASE_URL_ENV))
    for item in items:
        callspec = getattr(item, "callspec", None)
        wants_pg = (
            item.get_closest_marker("postgres") is not None
            or "pg_app" in getattr(item, "fixturenames", ())
            or (callspec is not None and callspec.params.get("db_backend") == "postgres")
        )
        if not wants_pg:
            continue
        if item.get_closest_marker("postgres") is None:
            # So that `-m postgres` / `-m "not postgres"` select exactly these.
            item.add_marker(pytest.mark.postgres)
        if not have_pg:
            item.add_marker(pytest.mark.skip(reason=PG_SKIP_REASON))


# --------------------------------------------------------------------------- environment


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the developer's shell settings out, and instance/ untouched, for the session."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name in _ENV_NAMES_TO_CLEAR or name.startswith(_ENV_PREFIXES_TO_CLEAR):
                mp.delenv(name)
        # If anything builds an app from the environment alone, it gets a throwaway
        # database and a fixed key instead of writing instance/kassa.db or instance/secret_key.
        stray = tmp_path_factory.mktemp("stray") / "from-environment.sqlite"
        mp.setenv("DATABASE_URL", f"sqlite:///{stray}")
        mp.setenv("SECRET_KEY", TEST_SECRET_KEY)
        yield


# --------------------------------------------------------------------------- migrations


@contextlib.contextmanager
def _preserve_logging() -> Iterator[None]:
    """Undo what Alembic's env.py does to logging (fileConfig disables existing loggers and
    replaces the root handlers, which would hide log output from later tests and caplog)."""
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    disabled = {
        name: logger.disabled
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in root_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in root_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(root_level)
        for name, logger in logging.Logger.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.disabled = disabled.get(name, False)


def _dispose_engines(app: Any) -> None:
    """Close every pooled connection of the app (no connection outlives its test)."""
    db = app.extensions.get("sqlalchemy")
    if db is None:
        return
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def _migrations_directory(app: Any) -> str:
    directory = str(app.extensions["migrate"].directory)
    # Flask-Migrate's default is relative to the working directory; pytest may run elsewhere.
    return directory if os.path.isabs(directory) else str(ROOT / directory)


def _migrate_to_head(database_uri: str) -> None:
    """Build the schema the way production does: `flask db upgrade` (Alembic), never
    create_all(), so every test run exercises the migrations on this backend."""
    import flask_migrate

    from app import create_app

    app = create_app(default_test_config(database_uri))
    try:
        with app.app_context(), _preserve_logging(), warnings.catch_warnings():
            # Flask-Migrate's stock env.py tries db.get_engine() before db.engine; on
            # Flask-SQLAlchemy 3.1 that warns (an error here). Harmless once env.py uses
            # db.engine directly.
            warnings.filterwarnings(
                "ignore", message="'get_engine' is deprecated", category=DeprecationWarning
            )
            flask_migrate.upgrade(directory=_migrations_directory(app))
    finally:
        _dispose_engines(app)


# --------------------------------------------------------------------------- SQLite


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite"
    _migrate_to_head(f"sqlite:///{path}")
    return path


def _copy_sqlite(source: Path, target: Path) -> None:
    # The backup API copies a consistent image, WAL contents included.
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_urls(name: str | None = None) -> tuple[str, str]:
    """(libpq conninfo of the admin database, SQLAlchemy URL of database `name`)."""
    from sqlalchemy.engine import make_url

    raw = os.environ.get(TEST_DATABASE_URL_ENV)
    if not raw:
        pytest.skip(PG_SKIP_REASON)
    url = make_url(raw)
    if url.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"TEST_DATABASE_URL must be a PostgreSQL URL, got {raw!r}")
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    target = url.set(drivername="postgresql+psycopg", database=name or url.database)
    return admin, target.render_as_string(hide_password=False)


@contextlib.contextmanager
def _fresh_pg_database(migrate: bool) -> Iterator[str]:
    """Create `kassa_test_<hex>` on the TEST_DATABASE_URL server, yield its URL, drop it."""
    import psycopg
    from psycopg import sql

    name = f"kassa_test_{secrets.token_hex(6)}"
    admin, url = _pg_urls(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        if migrate:
            _migrate_to_head(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # A thread or pool a test forgot to close must not keep the database alive.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """URL of this session's PostgreSQL database, migrated to head; dropped at the end."""
    with _fresh_pg_database(migrate=True) as url:
        yield url


@pytest.fixture
def create_pg_database() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with create_pg_database(migrate=True) as url:` an extra database of your own, dropped
    on exit (for tests that need two databases or an empty one)."""
    return lambda migrate=True: _fresh_pg_database(migrate=migrate)


def _libpq(url: str) -> str:
    """SQLAlchemy URL ("postgresql+psycopg://...") to a conninfo psycopg accepts."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _truncate_pg(url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        # Fail loudly rather than hang if a test left a transaction holding locks.
        conn.execute("SET lock_timeout = '10s'")
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


# --------------------------------------------------------------------------- backends


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgres": the database this test's app uses.

    Postgres when the test is marked `postgres`, uses `pg_app`, or is parametrized with
    `@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)`.
    """
    param = getattr(request, "param", None)
    if param is not None:
        if param not in ("sqlite", "postgres"):
            raise pytest.UsageError(f"db_backend must be 'sqlite' or 'postgres', not {param!r}")
        return str(param)
    return "postgres" if request.node.get_closest_marker("postgres") else "sqlite"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of this test's own migrated database: a fresh SQLite copy, or the session's
    PostgreSQL database, emptied (all tables truncated) after the test."""
    if db_backend == "postgres":
        url = request.getfixturevalue("postgres_database_url")
        yield url
        _truncate_pg(url)
    else:
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "kassa.sqlite"
        _copy_sqlite(template, path)
        yield f"sqlite:///{path}"


# --------------------------------------------------------------------------- apps


@pytest.fixture
def build_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`build_app(**config)`: an app on this test's database with the test defaults plus
    `config`. Its instance folder is a tmp dir. Engines are disposed at teardown."""
    from app import create_app

    apps: list[Any] = []

    def factory(**overrides: Any) -> Any:
        config = default_test_config(database_url)
        config.update(overrides)
        app = create_app(config)
        # Anything written at run time (seed-demo's password file...) lands in tmp, not in
        # the checkout's instance/. Settings were already read with SECRET_KEY given.
        app.instance_path = str(tmp_path / "instance")
        apps.append(app)
        return app

    yield factory
    for app in apps:
        _dispose_engines(app)


@pytest.fixture
def _live_http_server() -> Iterator[Any]:
    """A threaded werkzeug server bound to a free loopback port, not serving yet.

    Bound before the app is built so the app can be created knowing its own public URL.
    """
    from werkzeug.serving import make_server

    def not_ready(environ: Any, start_response: Any) -> list[bytes]:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"app not attached yet"]

    server = make_server("127.0.0.1", 0, not_ready, threaded=True)
    try:
        yield server
    finally:
        server.server_close()


@pytest.fixture
def app(request: pytest.FixtureRequest, build_app: Callable[..., Any]) -> Any:
    """The Kassa app for this test (SQLite, or PostgreSQL for `postgres` tests).

    When the test also uses `live_server`, PUBLIC_BASE_URL is the live server's address and
    the sandbox delivers its webhooks over HTTP to it.
    """
    overrides: dict[str, Any] = {}
    if "live_server" in request.fixturenames:
        server = request.getfixturevalue("_live_http_server")
        overrides["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
        overrides["SANDBOX_DELIVER_WEBHOOKS"] = True
    return build_app(**overrides)


@pytest.fixture
def pg_app(app: Any, db_backend: str) -> Any:
    """The app on PostgreSQL (the test is marked `postgres` automatically; skipped without
    TEST_DATABASE_URL). Same object as `app` in that test."""
    assert db_backend == "postgres", "pg_app on a non-postgres backend: check the markers"
    return app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def live_server(app: Any, _live_http_server: Any) -> Iterator[str]:
    """Serve `app` over real HTTP on a free loopback port; yields the base URL
    (e.g. "http://127.0.0.1:41234", no trailing slash)."""
    server = _live_http_server
    server.app = app
    base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"live-server-{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


# --------------------------------------------------------------------------- forms and login


class _CsrfFinder(HTMLParser):
    """Finds a CSRF token in a page: a hidden `csrf_token` input, the
    `<meta name="csrf-token">`, or `hx-headers='{"X-CSRFToken": ...}'` that htmx sends."""

    def __init__(self) -> None:
        super().__init__()
        self.token: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.token is not None:
            return
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrf_token" and a.get("value"):
            self.token = a["value"]
        elif tag == "meta" and a.get("name") == "csrf-token" and a.get("content"):
            self.token = a["content"]
        elif a.get("hx-headers"):
            with contextlib.suppress(ValueError, AttributeError):
                self.token = json.loads(a["hx-headers"] or "").get("X-CSRFToken") or None


def find_csrf_token(html: str) -> str | None:
    finder = _CsrfFinder()
    finder.feed(html)
    finder.close()
    return finder.token


def get_csrf_token(client: Any, url: str) -> str:
    """GET `url` with `client` (following redirects) and return the page's CSRF token."""
    response = client.get(url, follow_redirects=True)
    assert response.status_code == 200, f"GET {url} answered {response.status_code}"
    token = find_csrf_token(response.get_data(as_text=True))
    assert token, f"no csrf_token input or csrf-token meta tag on {url}"
    return token


@pytest.fixture
def csrf_token() -> Callable[[Any, str], str]:
    """`csrf_token(client, url)`: the CSRF token from the page at `url`, for posting forms."""
    return get_csrf_token


class AuthActions:
    """Merchant login for test-client tests: `auth.create()` then `auth.login()`."""

    EMAIL = "owner@example.com"
    PASSWORD = "correct horse battery staple"

    def __init__(self, client: Any, runner: Any) -> None:
        self._client = client
        self._runner = runner

    def create(self, email: str = EMAIL, password: str = PASSWORD, role: str = "owner") -> None:
        """Create a merchant user through the real CLI (`flask create-merchant`)."""
        result = self._runner.invoke(
            args=["create-merchant", email, "--role", role, "--password", password]
        )
        assert result.exit_code == 0, f"create-merchant failed: {result.output}"

    def login(
        self, email: str = EMAIL, password: str = PASSWORD, *, follow_redirects: bool = False
    ) -> Any:
        """Fetch the login form, then post it with its CSRF token like a browser does."""
        token = get_csrf_token(self._client, "/auth/login")
        return self._client.post(
            "/auth/login",
            data={"email": email, "password": password, "csrf_token": token},
            follow_redirects=follow_redirects,
        )

    def logout(self, token_from: str = "/auth/login", *, follow_redirects: bool = False) -> Any:
        """POST /auth/logout with a token taken from a page the merchant can see."""
        token = get_csrf_token(self._client, token_from)
        return self._client.post(
            "/auth/logout", data={"csrf_token": token}, follow_redirects=follow_redirects
        )


@pytest.fixture
def auth(client: Any, runner: Any) -> AuthActions:
    return AuthActions(client, runner)
