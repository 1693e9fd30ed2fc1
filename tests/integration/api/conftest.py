"""Fixtures for the JSON API tests: apps (via make_app), API keys, a JSON client, a fake
gateway for the port, and a PostgreSQL database of our own."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from werkzeug.test import TestResponse

from app import create_app
from app.api.keys import create_api_key
from app.cli import seed_demo_data
from app.extensions import db
from app.gateways.base import (
    CaptureRequest,
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundResult,
    ReturnParams,
    VerifiedEvent,
)
from app.models import PaymentStatus, RefundStatus

ITEMS = [{"sku": "tee-usd", "quantity": 1}]
CUSTOMER = {"email": "ada@example.com", "name": "Ada Lovelace"}


def checkout_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"items": ITEMS, "customer": CUSTOMER}
    body.update(overrides)
    return body


def new_key(app: Flask, scope: str = "write", name: str = "test key") -> str:
    with app.app_context():
        return create_api_key(name, scope)[1]


class Api:
    """A JSON client for /api/v1 with an optional Bearer key."""

    def __init__(self, app: Flask, key: str | None = None) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.key = key

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(
            "/api/v1" + path, headers=self.headers(kwargs.pop("headers", None)), **kwargs
        )

    def post(self, path: str, body: Any = None, **kwargs: Any) -> TestResponse:
        headers = self.headers(kwargs.pop("headers", None))
        if body is not None and "data" not in kwargs:
            kwargs["data"] = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return self.client.post("/api/v1" + path, headers=headers, **kwargs)


def error_code(response: TestResponse) -> str:
    assert response.is_json, response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert body["success"] is False
    return str(body["error"]["code"])


def deliver_webhooks(app: Flask, client: FlaskClient | None = None) -> int:
    """POST the sandbox's undelivered (signed) events to /webhooks/sandbox."""
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    client = client or app.test_client()
    events = list(processor.undelivered)
    processor.undelivered.clear()
    for body, headers in events:
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
    return len(events)


def complete_at_sandbox(app: Flask, session_id: str, scenario: str = "succeed") -> None:
    with app.app_context():
        app.extensions["kassa_gateways"]["sandbox"].processor.complete(session_id, scenario)
    deliver_webhooks(app)


def _base_config(tmp_path: Path, database_uri: str) -> dict[str, Any]:
    # The same settings as tests/integration/conftest.py's make_app.
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "WTF_CSRF_ENABLED": False,
        "JOBS_EAGER": True,
        "SANDBOX_DELIVER_WEBHOOKS": False,
        "RATELIMIT_ENABLED": False,
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "SANDBOX_WEBHOOK_SECRET": "whsec_sandbox_test_secret",
    }


def _migrate_and_seed(app: Flask) -> None:
    with app.app_context():
        upgrade()
        seed_demo_data()


@pytest.fixture(scope="session")
def api_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, demo-seeded SQLite file per session; each app gets a copy (fast)."""
    root = tmp_path_factory.mktemp("api-template")
    path = root / "template.db"
    app = create_app(_base_config(root, f"sqlite:///{path}"))
    _migrate_and_seed(app)
    with app.app_context():
        db.engine.dispose()
    return path


@pytest.fixture
def make_app(tmp_path: Path, api_sqlite_template: Path) -> Iterator[Callable[..., Flask]]:
    """Like tests/integration's make_app (migrated, seeded), but SQLite apps start from a
    copy of a session template instead of running the migrations again."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        target = tmp_path / f"kassa-{len(apps)}.db"
        config = _base_config(tmp_path, f"sqlite:///{target}")
        config.update(overrides)
        if "SQLALCHEMY_DATABASE_URI" in overrides:
            app = create_app(config)
            _migrate_and_seed(app)
        else:
            with (
                contextlib.closing(sqlite3.connect(api_sqlite_template)) as src,
                contextlib.closing(sqlite3.connect(target)) as dst,
            ):
                src.backup(dst)
            app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["kassa_jobs"].shutdown()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def api_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def write_key(api_app: Flask) -> str:
    return new_key(api_app, "write")


@pytest.fixture
def read_key(api_app: Flask) -> str:
    return new_key(api_app, "read")


@pytest.fixture
def api(api_app: Flask, write_key: str) -> Api:
    return Api(api_app, write_key)


@pytest.fixture
def public_api(api_app: Flask) -> Api:
    return Api(api_app)


# --------------------------------------------------------------------------- fake gateway


@dataclass
class FakeGateway:
    """The gateway port's fake: records calls; fails with a configured GatewayError code,
    or holds create_checkout until released (to keep a request in flight)."""

    name: str = "fake"
    display_name: str = "Fake gateway"
    fail_with: str | None = None
    retryable: bool = False
    crash: bool = False
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _call(self, name: str, arg: Any) -> None:
        with self._lock:
            self.calls.append((name, arg))
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "test never released the fake gateway"
        if self.crash:
            raise RuntimeError("a bug in an adapter")
        if self.fail_with:
            raise GatewayError(self.fail_with, f"fake {self.fail_with}", retryable=self.retryable)

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        self._call("create_checkout", request)
        return CheckoutSession(
            reference=f"fake_cs_{secrets.token_hex(6)}", redirect_url="https://fake.example.com/pay"
        )

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        self._call("retrieve", ref)
        return PaymentUpdate(ref=ref, status=PaymentStatus.PROCESSING)

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        self._call("confirm_return", params)
        return None

    def cancel_checkout(self, ref: PaymentRef) -> None:
        self._call("cancel_checkout", ref)

    def refund(self, request: RefundRequest) -> RefundResult:
        self._call("refund", request)
        return RefundResult(
            gateway_refund_id=f"fake_re_{secrets.token_hex(4)}", status=RefundStatus.PENDING
        )

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        self._call("capture", request)
        return PaymentUpdate(ref=PaymentRef(request.payment_id), status=PaymentStatus.SUCCEEDED)

    def verify_webhook(self, body: bytes, headers: Any) -> VerifiedEvent:
        raise NotImplementedError

    def interpret(self, event: VerifiedEvent) -> list[Any]:
        return []

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload


@pytest.fixture
def fake_gateway(api_app: Flask) -> FakeGateway:
    fake = FakeGateway()
    api_app.extensions["kassa_gateways"]["fake"] = fake
    return fake


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def api_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database kassa_api_<random> for one test, dropped afterwards."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set (PostgreSQL tests)")
    name = f"kassa_api_{secrets.token_hex(6)}"
    admin = base.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = re.sub(r"/[^/]*$", f"/{name}", base)
    if not url.startswith("postgresql+psycopg://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
