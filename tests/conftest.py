"""Shared fixtures: the one app builder, the test databases, clients, a logged-in merchant,
a live server.

Databases: every test gets its own database, a copy of a template migrated (and seeded with
the area's `database_seed`) once per session: SQLite by default; PostgreSQL for tests marked
`postgres` (or using `pg_app`/`pg_url`, or parametrized with `db_backend="postgres"`), on the
server named by TEST_DATABASE_URL. Without TEST_DATABASE_URL those tests are skipped, with
the reason shown by `-ra`. An area (a folder's conftest) overrides `app_settings` and
`database_seed` and keeps only its own helpers. See tests/README.md for each fixture.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
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
    """The configuration every test app starts from; areas add `app_settings`, tests
    override keys through `make_app(**config)`."""
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
        # The sandbox renews subscriptions on its own thread only where a test asks.
        "SANDBOX_RENEWAL_CLOCK": False,
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
            or not {"pg_app", "pg_url"}.isdisjoint(getattr(item, "fixturenames", ()))
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


# --------------------------------------------------------------------------- logging


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


# --------------------------------------------------------------------------- what an area sets


Seed = Callable[[], Any]


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Settings every app of this area gets on top of `default_test_config` (and below the
    test's own `make_app(**overrides)`). An area (a folder's conftest, or a module) overrides
    this fixture to say what is its own, e.g. CSRF off for tests that post bare forms."""
    return {}


@pytest.fixture
def database_seed() -> Seed | None:
    """What every database of this area holds beyond the schema: None (empty tables), or a
    module-level function run once per session in an app context to fill the template that
    each test's database is copied from (seeding is then free per test)."""
    return None


def seed_demo() -> None:
    """The demo catalog and merchant (`flask seed-demo`)."""
    from app.cli import seed_demo_data

    seed_demo_data()


# --------------------------------------------------------------------------- templates


def _dispose_engines(app: Any) -> None:
    """Close every pooled connection of the app (no connection outlives its test)."""
    db = app.extensions.get("sqlalchemy")
    if db is None:
        return
    with app.app_context():
        db.session.remove()
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


def _run_seed(database_uri: str, seed: Seed, instance: Path) -> None:
    from app import create_app

    config = default_test_config(database_uri)
    config["INSTANCE_PATH"] = str(instance)
    app = create_app(config)
    try:
        with app.app_context():
            seed()
    finally:
        _dispose_engines(app)


@dataclasses.dataclass(frozen=True)
class Template:
    """A database migrated to head (and seeded), which test databases are copied from.
    `instance` holds the files seeding wrote (seed-demo's password file), copied along."""

    url: str
    instance: Path


def _db_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


def _copy_instance(template: Template, target: Path) -> None:
    if template.instance.is_dir():
        shutil.copytree(template.instance, target, dirs_exist_ok=True)


def _seed_key(seed: Seed | None) -> str:
    return "schema" if seed is None else f"{seed.__module__}.{seed.__qualname__}"


class _PgServer:
    """The PostgreSQL server named by TEST_DATABASE_URL: creates databases (from scratch or
    as copies of a template), and drops them, the per-test ones in the background."""

    def __init__(self) -> None:
        self._dropper: concurrent.futures.ThreadPoolExecutor | None = None
        self._drops: list[concurrent.futures.Future[None]] = []

    @staticmethod
    def urls(name: str | None = None) -> tuple[str, str]:
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

    def create(self, name: str, template: str | None = None) -> str:
        import psycopg
        from psycopg import sql

        admin, url = self.urls(name)
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            # A copy of the template's files: no migration or seeding per test.
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(statement)
            # Commits need not wait for the disk in a test database: the tests are about
            # our transactions, not about the server surviving a power cut.
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                    sql.Identifier(name)
                )
            )
        return url

    def drop(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        admin, _ = self.urls()
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

    def drop_later(self, name: str) -> None:
        """Drop on a background thread (a DROP waits for a checkpoint; the next test need
        not): the name is never reused, and every drop is awaited at the end of the session."""
        if self._dropper is None:
            self._dropper = concurrent.futures.ThreadPoolExecutor(1, "pg-drop")
        self._drops.append(self._dropper.submit(self.drop, name))

    def finish(self) -> None:
        if self._dropper is not None:
            self._dropper.shutdown(wait=True)
        for future in self._drops:
            future.result()  # a failed drop fails the session's teardown, loudly


class DatabaseTemplates:
    """Session-wide: one migrated (and seeded) template per backend and seed, made on first
    use; test databases are copies of them (SQLite: the backup API; PostgreSQL: CREATE
    DATABASE ... TEMPLATE)."""

    def __init__(self, tmp: pytest.TempPathFactory, pg: _PgServer) -> None:
        self._tmp = tmp
        self._pg = pg
        self._sqlite: dict[str, Template] = {}
        self._postgres: dict[str, Template] = {}

    def sqlite(self, seed: Seed | None) -> Template:
        key = _seed_key(seed)
        if key not in self._sqlite:
            folder = self._tmp.mktemp(f"sqlite-template-{key.rsplit('.', 1)[-1]}")
            template = Template(f"sqlite:///{folder / 'template.sqlite'}", folder / "instance")
            _migrate_to_head(template.url)
            if seed is not None:
                _run_seed(template.url, seed, template.instance)
            self._sqlite[key] = template
        return self._sqlite[key]

    def postgres(self, seed: Seed | None) -> Template:
        key = _seed_key(seed)
        if key not in self._postgres:
            name = f"kassa_tpl_{secrets.token_hex(6)}"
            url = self._pg.create(name)
            try:
                _migrate_to_head(url)
                folder = self._tmp.mktemp(f"pg-template-{key.rsplit('.', 1)[-1]}")
                template = Template(url, folder / "instance")
                if seed is not None:
                    _run_seed(url, seed, template.instance)
            except BaseException:
                self._pg.drop(name)
                raise
            self._postgres[key] = template
        return self._postgres[key]

    def finish(self) -> None:
        for template in self._postgres.values():
            self._pg.drop(_db_name(template.url))


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[_PgServer]:
    server = _PgServer()
    yield server
    server.finish()


@pytest.fixture(scope="session")
def database_templates(
    tmp_path_factory: pytest.TempPathFactory, _pg_server: _PgServer
) -> Iterator[DatabaseTemplates]:
    templates = DatabaseTemplates(tmp_path_factory, _pg_server)
    yield templates
    templates.finish()


def _copy_sqlite(source: Path, target: Path) -> None:
    # The backup API copies a consistent image, WAL contents included.
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


# --------------------------------------------------------------------------- databases


@pytest.fixture
def pg_url(
    database_templates: DatabaseTemplates,
    database_seed: Seed | None,
    _pg_server: _PgServer,
    tmp_path: Path,
) -> Iterator[str]:
    """The one PostgreSQL database fixture: a fresh database `kassa_test_<hex>` of this test's
    own, a copy of the session's migrated template (seeded with the area's
    `database_seed`), dropped after the test. Using it marks the test `postgres` (skipped
    without TEST_DATABASE_URL), so the test's `app`/`make_app()` are on it too."""
    template = database_templates.postgres(database_seed)
    name = f"kassa_test_{secrets.token_hex(6)}"
    url = _pg_server.create(name, template=_db_name(template.url))
    _copy_instance(template, tmp_path / "instance")
    yield url
    _pg_server.drop_later(name)


@contextlib.contextmanager
def _extra_pg_database(
    server: _PgServer, templates: DatabaseTemplates, migrate: bool
) -> Iterator[str]:
    name = f"kassa_test_{secrets.token_hex(6)}"
    template = _db_name(templates.postgres(None).url) if migrate else None
    url = server.create(name, template=template)
    try:
        yield url
    finally:
        server.drop(name)


@pytest.fixture
def create_pg_database(
    _pg_server: _PgServer, database_templates: DatabaseTemplates
) -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with create_pg_database(migrate=True) as url:` one more database of your own (at the
    migrations' head, or empty with migrate=False), dropped on exit."""
    return lambda migrate=True: _extra_pg_database(_pg_server, database_templates, migrate)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgres": the database this test's app uses.

    Postgres when the test is marked `postgres`, uses `pg_app` or `pg_url`, or is
    parametrized with `@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"],
    indirect=True)`.
    """
    param = getattr(request, "param", None)
    if param is not None:
        if param not in ("sqlite", "postgres"):
            raise pytest.UsageError(f"db_backend must be 'sqlite' or 'postgres', not {param!r}")
        return str(param)
    return "postgres" if request.node.get_closest_marker("postgres") else "sqlite"


@pytest.fixture
def database_url(
    request: pytest.FixtureRequest,
    db_backend: str,
    database_templates: DatabaseTemplates,
    database_seed: Seed | None,
    tmp_path: Path,
) -> str:
    """URL of this test's own migrated (and seeded) database: a copy of the session's SQLite
    template, or `pg_url` on PostgreSQL."""
    if db_backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    template = database_templates.sqlite(database_seed)
    path = tmp_path / "kassa.sqlite"
    _copy_sqlite(Path(template.url.removeprefix("sqlite:///")), path)
    _copy_instance(template, tmp_path / "instance")
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------- apps


@pytest.fixture
def make_app(
    database_url: str, app_settings: dict[str, Any], tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """The one app builder. `make_app(**config)`: `create_app` with the test defaults, the
    area's `app_settings`, then `config`; on this test's database unless config names
    another SQLALCHEMY_DATABASE_URI; instance folder in tmp. Every app it built has its job
    runner stopped and its connections closed at teardown."""
    from app import create_app

    apps: list[Any] = []

    def factory(**overrides: Any) -> Any:
        config = default_test_config(database_url)
        # Anything written at run time (seed-demo's password file, receipts' outbox) lands
        # in tmp, never in the checkout's instance/.
        config["INSTANCE_PATH"] = str(tmp_path / "instance")
        config.update(app_settings)
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in reversed(apps):
        jobs = app.extensions.get("kassa_jobs")
        if jobs is not None:
            jobs.shutdown()
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
def app(request: pytest.FixtureRequest, make_app: Callable[..., Any]) -> Any:
    """The Kassa app for this test (SQLite, or PostgreSQL for `postgres` tests).

    When the test also uses `live_server`, PUBLIC_BASE_URL is the live server's address and
    the sandbox delivers its webhooks over HTTP to it.
    """
    overrides: dict[str, Any] = {}
    if "live_server" in request.fixturenames:
        server = request.getfixturevalue("_live_http_server")
        overrides["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
        overrides["SANDBOX_DELIVER_WEBHOOKS"] = True
    return make_app(**overrides)


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
