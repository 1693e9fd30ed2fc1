"""Fixtures for the security tests: their settings (CSRF on, fixed secrets, 2FA not
required), the demo catalog and an owner account in every database, and the app served
over HTTP. Apps come from the shared `make_app`, `app`, `client` and `runner`
(tests/conftest.py); each test's database and instance/ folder are its own.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Import `app` from this checkout even if another checkout is installed in the shared venv.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD, SANDBOX_SECRET, SECRET_KEY

from tests.conftest import Seed


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": "http://localhost",
        "SANDBOX_WEBHOOK_SECRET": SANDBOX_SECRET,
        "WTF_CSRF_ENABLED": True,
        "REQUIRE_2FA_FOR_OWNERS": False,
    }


def seed_owner() -> None:
    """The demo catalog and an owner (OWNER_EMAIL, OWNER_PASSWORD), hashed once a session."""
    from app.cli import create_merchant, seed_demo_data

    seed_demo_data()
    create_merchant(OWNER_EMAIL, "owner", OWNER_PASSWORD)


@pytest.fixture
def database_seed() -> Seed | None:
    return seed_owner


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
