"""Fixtures for the JSON API tests: the API's app (the shared `make_app`, with
tests/integration's settings and demo catalog), API keys, a JSON client, and the gateway
port's fake (tests/fakes/gateway.py) registered on the app."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.api.keys import create_api_key
from tests.fakes.gateway import FakeGateway

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


@pytest.fixture
def api_app(make_app: Callable[..., Flask]) -> Flask:
    """The app the API tests talk to (migrated, demo catalog, CSRF off)."""
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


@pytest.fixture
def fake_gateway(api_app: Flask) -> FakeGateway:
    """A FakeGateway registered as the app's gateway `fake`."""
    fake = FakeGateway()
    api_app.extensions["kassa_gateways"]["fake"] = fake
    return fake
