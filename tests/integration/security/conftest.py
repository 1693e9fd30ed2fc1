"""Fixtures for the security tests (self-contained until the shared tests/conftest.py lands).

Each test gets its own SQLite copy of one database migrated once per session with
`flask db upgrade`, an app with test settings, the demo catalog and an owner account,
and its instance/ folder (receipts' outbox) in a tmp dir.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Import `app` from this checkout even if another checkout is installed in the shared venv.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD, SANDBOX_SECRET, SECRET_KEY

from tests.conftest import _preserve_logging


def base_config(database_uri: str) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "PUBLIC_BASE_URL": "http://localhost",
        "JOBS_EAGER": True,
        "SANDBOX_DELIVER_WEBHOOKS": False,
        "SANDBOX_WEBHOOK_SECRET": SANDBOX_SECRET,
        "RATELIMIT_ENABLED": False,
        "WTF_CSRF_ENABLED": True,
        "REQUIRE_2FA_FOR_OWNERS": False,
    }


# The session-wide hermetic environment and _preserve_logging come from tests/conftest.py.


def _dispose(app: Any) -> None:
    with app.app_context():
        for engine in app.extensions["sqlalchemy"].engines.values():
            engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import flask_migrate

    from app import create_app
    from app.cli import create_merchant, seed_demo_data

    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    app = create_app(base_config(f"sqlite:///{path}"))
    try:
        with app.app_context(), _preserve_logging(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="'get_engine' is deprecated", category=DeprecationWarning
            )
            flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        # Seeded once here (password hashing is slow); every test gets a copy.
        app.instance_path = str(path.parent / "instance")
        with app.app_context():
            seed_demo_data()
            create_merchant(OWNER_EMAIL, "owner", OWNER_PASSWORD)
    finally:
        _dispose(app)
    return path


@pytest.fixture
def make_app(sqlite_template: Path, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """make_app(**overrides): an app on this test's own copy of the seeded database."""
    from app import create_app

    db_path = tmp_path / "kassa.sqlite"
    with (
        contextlib.closing(sqlite3.connect(sqlite_template)) as src,
        contextlib.closing(sqlite3.connect(db_path)) as dst,
    ):
        src.backup(dst)
    apps: list[Any] = []

    def factory(**overrides: Any) -> Any:
        config = base_config(f"sqlite:///{db_path}")
        config.update(overrides)
        app = create_app(config)
        # Receipts (.eml outbox) and the demo password file go to tmp, not the checkout.
        app.instance_path = str(tmp_path / "instance")
        apps.append(app)
        return app

    yield factory
    for app in apps:
        _dispose(app)


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def live_app(make_app: Callable[..., Any]) -> Iterator[tuple[Any, str]]:
    """(app, base URL): the app served over HTTP on a free loopback port, webhooks on."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, lambda e, s: [], threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    # Plain HTTP on loopback: the `requests` clients only send cookies not marked Secure.
    app = make_app(
        PUBLIC_BASE_URL=base,
        SANDBOX_DELIVER_WEBHOOKS=True,
        SANDBOX_WEBHOOK_DELAY_SECONDS=0.05,
        LOG_LEVEL="DEBUG",
        SESSION_COOKIE_SECURE=False,
    )
    server.app = app
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
