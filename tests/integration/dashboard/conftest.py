"""Fixtures for the dashboard tests: the dashboard's settings (CSRF on, plain-http cookies),
merchants of each role in every database, signed-in test clients, and factories for orders
and payments. Apps come from the shared `make_app` (tests/conftest.py)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import Order, OrderItem, Payment, User
from app.models.base import public_id
from tests.conftest import Seed

PASSWORD = "correct horse battery staple"
# Cheap hash for tests: the login path is the same, only faster.
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
CSRF_META = re.compile(r'"X-CSRFToken": "([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {
        "SECRET_KEY": "dashboard-test-secret-" + "x" * 40,
        "WTF_CSRF_ENABLED": True,  # every form must carry its token
        "SESSION_COOKIE_SECURE": False,  # the test client speaks plain http
        "REMEMBER_COOKIE_SECURE": False,
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "SANDBOX_WEBHOOK_SECRET": "whsec_sandbox_test_secret",
    }


def seed_merchants() -> None:
    """The demo catalog and merchant, plus owner@, admin@ and viewer@shop.test (PASSWORD)."""
    seed_demo_data()
    for role in ("owner", "admin", "viewer"):
        db.session.add(
            User(
                email=f"{role}@shop.test",
                password_hash=PASSWORD_HASH,
                role=role,
                session_token=secrets.token_hex(16),
            )
        )
    db.session.commit()


@pytest.fixture
def database_seed() -> Seed | None:
    return seed_merchants


@pytest.fixture
def dash_app(make_app: Callable[..., Flask]) -> Flask:
    """The dashboard's app on this test's database."""
    return make_app()


def csrf_token(client: FlaskClient, path: str = "/auth/login") -> str:
    """The token a page carries (hidden field or htmx's hx-headers)."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(html) or CSRF_META.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, role: str) -> FlaskClient:
    token = csrf_token(client)
    response = client.post(
        "/auth/login",
        data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    return client


@pytest.fixture
def signed_in(dash_app: Flask) -> Callable[[str], FlaskClient]:
    """A test client signed in with the given role."""

    def make(role: str = "owner") -> FlaskClient:
        return login(dash_app.test_client(), role)

    return make


def make_payment(
    *,
    status: str = "succeeded",
    amount: int = 2500,
    currency: str = "USD",
    gateway: str = "sandbox",
    email: str = "ann@example.com",
    created_at: datetime | None = None,
    amount_refunded: int = 0,
    gateway_reference: str | None = None,
    gateway_payment_id: str | None = None,
    commit: bool = True,
) -> Payment:
    """An order with one item and one payment, written straight to the database
    (for read-only pages; money-moving tests go through the sandbox instead)."""
    when = created_at or datetime.now(UTC)
    order_status = {
        "succeeded": "paid",
        "partially_refunded": "partially_refunded",
        "refunded": "refunded",
        "failed": "failed",
        "expired": "expired",
        "canceled": "canceled",
    }.get(status, "pending")
    order = Order(
        currency=currency,
        total_amount=amount,
        customer_email=email,
        customer_name="Ann Lee",
        status=order_status,
        stock_reserved=False,
        expires_at=when + timedelta(minutes=30),
        created_at=when,
    )
    order.items.append(
        OrderItem(sku="tee-usd", name="Kassa T-shirt", unit_amount=amount, quantity=1)
    )
    pid = public_id("pay")
    payment = Payment(
        public_id=pid,
        order=order,
        gateway=gateway,
        status=status,
        amount=amount,
        currency=currency,
        amount_refunded=amount_refunded,
        idempotency_key=f"test-{pid}",
        customer_email=email,
        gateway_reference=gateway_reference or f"ref_{pid}",
        gateway_payment_id=gateway_payment_id,
        created_at=when,
    )
    db.session.add(order)
    db.session.add(payment)
    if commit:
        db.session.commit()
    return payment


def sandbox_payment(
    app: Flask,
    client: FlaskClient,
    *,
    sku: str = "tee-usd",
    quantity: int = 1,
    scenario: str = "succeed",
    capture_method: str = "automatic",
) -> str:
    """A real payment through the core and the sandbox, its webhooks posted to
    /webhooks/sandbox; returns the payment's public id."""
    from app.payments.audit import CUSTOMER
    from app.payments.checkout import create_checkout
    from app.payments.orders import ItemRequest

    with app.app_context():
        app.config["CAPTURE_METHOD"] = capture_method
        with app.test_request_context():
            payment = create_checkout(
                [ItemRequest(sku, quantity)], "ann@example.com", "Ann Lee", "sandbox", CUSTOMER
            )
        app.config["CAPTURE_METHOD"] = "automatic"
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        processor.complete(payment.gateway_reference, scenario)
        pid = payment.public_id
    deliver_webhooks(app, client)
    return pid


def deliver_webhooks(app: Flask, client: FlaskClient) -> int:
    """Post the sandbox's pending events to the webhook endpoint, as the gateway would."""
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    sent = 0
    while processor.undelivered:
        body, headers = processor.undelivered.pop(0)
        response = client.post("/webhooks/sandbox", data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        sent += 1
    return sent


HX = {"HX-Request": "true"}


def hx_headers(client: FlaskClient, page: str, **extra: str) -> dict[str, str]:
    """Headers htmx sends: HX-Request and the CSRF token from the page's hx-headers."""
    return {**HX, "X-CSRFToken": csrf_token(client, page), **extra}
