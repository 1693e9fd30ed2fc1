"""Every wait on PostgreSQL is bounded (issue 23 item 7). A TCP proxy between the app and
the server can blackhole (accept, never answer) and cut a client off half-way (the
server's side stays open, so its session sits idle in a transaction holding locks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.api.keys import create_api_key
from app.config import engine_options
from tests.integration.workers import workers

pytestmark = pytest.mark.postgres


class Proxy:
    """127.0.0.1:port -> the PostgreSQL server, on threads."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.blackhole = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blackhole:
                self.pairs.append((client, client))  # held open, never answered
                continue
            server = socket.create_connection(self.upstream)
            self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.blackhole:  # blackholed: whatever arrives goes nowhere
                    dst.sendall(data)
        except OSError:
            pass

    def cut_clients(self) -> None:
        """The client's side goes; the server's stays open and hears nothing more."""
        for client, _server in self.pairs:
            try:
                client.shutdown(socket.SHUT_RDWR)
                client.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for client, server in self.pairs:
            for sock in (client, server):
                try:
                    sock.close()
                except OSError:
                    pass


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    url = make_url(pg_url)
    p = Proxy(url.host or "127.0.0.1", url.port or 5432)
    yield p
    p.close()


def _proxied(pg_url: str, proxy: Proxy) -> str:
    return (
        make_url(pg_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )


def test_a_blackholed_database_gets_fast_503s(
    make_app: Callable[..., Flask],
    pg_url: str,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    url = _proxied(pg_url, proxy)
    app = make_app(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(url),
        DB_STALL_SECONDS=1.5,
    )
    with app.app_context():
        _key, token = create_api_key("bounded waits", scope="read")
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert client.get("/").status_code == 200  # the pool now holds a live connection
    proxy.blackhole = True

    started = time.monotonic()
    ready = client.get("/readyz")
    took = time.monotonic() - started
    assert ready.status_code == 503, ready.get_json()
    assert took < 2.0, took
    assert ready.get_json()["checks"]["database"].startswith("failed")

    # A page on a pooled connection that meets silence: a clear 503, soon.
    started = time.monotonic()
    page = client.get("/")
    assert page.status_code == 503
    assert "Temporarily unavailable" in page.get_data(as_text=True)
    assert page.headers["Retry-After"] == "5"
    assert time.monotonic() - started < 4.0
    # The API answers in its envelope (a new connection: the connect timeout), soon too.
    started = time.monotonic()
    api = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"})
    assert time.monotonic() - started < 4.0
    assert api.status_code == 503, api.get_data(as_text=True)[:300]
    assert api.get_json()["error"]["code"] == "database_unavailable"


def test_a_client_cut_off_mid_transaction_releases_its_locks(
    pg_url: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "1000")
    url = _proxied(pg_url, proxy)
    options = engine_options(url)
    cut_off = create_engine(url, **options)
    direct = create_engine(pg_url, connect_args={"options": "-c lock_timeout=8000"})
    try:
        lost = cut_off.connect()
        lost.begin()
        lost.execute(text("SELECT id FROM products ORDER BY id LIMIT 1 FOR UPDATE"))
        proxy.cut_clients()  # the server still thinks this session is there
        started = time.monotonic()
        with direct.connect() as other, other.begin():
            other.execute(text("SELECT id FROM products ORDER BY id LIMIT 1 FOR UPDATE"))
        waited = time.monotonic() - started
        assert waited < 3.0, waited  # not behind the lost session for long
        lost.invalidate()
    finally:
        cut_off.dispose()
        direct.dispose()


def test_gunicorn_answers_503_fast_when_the_database_is_blackholed(
    make_app: Callable[..., Flask], pg_url: str, proxy: Proxy, tmp_path: Path
) -> None:
    """The same as deployed: gevent workers, settings from the environment."""
    make_app()  # the test's database, migrated and seeded
    settings = {
        "WEB_CONCURRENCY": "2",
        "DB_CONNECT_TIMEOUT": "2",
        "DB_STATEMENT_TIMEOUT_MS": "1000",
        "DB_STALL_GRACE_MS": "500",
        "SCHEDULER_ENABLED": "false",
        "GRACEFUL_TIMEOUT": "2",  # at the end, workers stuck on the blackhole are not waited for
    }
    with workers(_proxied(pg_url, proxy), tmp_path, **settings) as (base, _):
        for _ in range(4):  # both workers hold pooled connections
            assert requests.get(f"{base}/", timeout=10).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
        proxy.blackhole = True
        for path, limit in (("/readyz", 2.0), ("/", 4.0), ("/readyz", 2.0), ("/", 4.0)):
            started = time.monotonic()
            answer = requests.get(f"{base}{path}", timeout=30)
            took = time.monotonic() - started
            assert answer.status_code == 503, (path, answer.text[:300])
            assert took < limit, (path, took)
