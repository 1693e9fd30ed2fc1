"""What tests/integration's apps share (the shared `make_app` in tests/conftest.py builds
them): settings for tests that drive the app with bare form posts, the demo catalog in every
database, and the app served over real HTTP on a loopback port."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import Seed, seed_demo


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """CSRF off (these tests post bare forms; tests/integration/security and dashboard turn
    it back on), the address the sandbox's hosted page redirects to, a fixed sandbox secret."""
    return {
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "WTF_CSRF_ENABLED": False,
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "SANDBOX_WEBHOOK_SECRET": "whsec_sandbox_test_secret",
    }


@pytest.fixture
def database_seed() -> Seed | None:
    """Every database here starts with the demo catalog and merchant."""
    return seed_demo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    def __init__(self, app: Flask, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def serve(make_app: Callable[..., Flask]) -> Iterator[Callable[..., LiveServer]]:
    """Serve an app (built with the given overrides) over HTTP on a loopback port, with the
    sandbox delivering its webhooks over HTTP and jobs on the in-process pool."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        port = free_port()
        settings = {
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "JOBS_EAGER": False,
            "SANDBOX_DELIVER_WEBHOOKS": True,
            "SANDBOX_WEBHOOK_DELAY_SECONDS": 0.05,
        }
        settings.update(overrides)
        server = LiveServer(make_app(**settings), port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.app.extensions["kassa_jobs"].wait_idle()
        server.stop()


class Browser:
    """A requests session that behaves like a form-posting browser (follows 303s)."""

    CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def get(self, path: str) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        return self.http.get(url, timeout=10)

    def submit(
        self, page: requests.Response, action: str | None, data: dict[str, Any]
    ) -> requests.Response:
        token = self.CSRF.search(page.text)
        fields = dict(data)
        if token:
            fields["csrf_token"] = token.group(1)
        url = action or page.url
        if not url.startswith("http"):
            url = self.base_url + url
        return self.http.post(url, data=fields, timeout=10)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser_for() -> Iterator[Callable[[str], Browser]]:
    made: list[Browser] = []

    def make(base_url: str) -> Browser:
        b = Browser(base_url)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
