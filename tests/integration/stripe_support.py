"""Helpers for Stripe integration tests: an app wired to the fake Stripe API, signed
webhook delivery through the test client, and a checkout started the way a customer does.

Builds on the shared `make_app` (tests/conftest.py, with tests/integration's settings:
seeded, CSRF off, jobs inline). Kept out of conftest.py so it merges beside the foundation's fixtures; tests
import the fixtures from here.
"""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Payment, WebhookEvent
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET
from tests.fakes.stripe_signing import signed_event


def stripe_settings(fake: FakeStripe, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "SANDBOX_ENABLED": False,
        "STRIPE_SECRET_KEY": FAKE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": FAKE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake.base_url,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_TIMEOUT_SECONDS": 5,
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def make_stripe_app(
    make_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> Iterator[Callable[..., Flask]]:
    """`make_app` (migrated, seeded) with Stripe configured against the fake."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = make_app(**stripe_settings(fake_stripe, **overrides))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["kassa_gateways"]["stripe"].close()


@dataclass
class Shop:
    """One app, its test client and the fake Stripe it talks to."""

    app: Flask
    client: FlaskClient
    fake: FakeStripe

    def buy(self, sku: str = "tee-usd", quantity: int = 1) -> tuple[str, str]:
        """Fill the checkout form; return (our payment id, Stripe session id)."""
        response = self.client.post(
            f"/products/{sku}",
            data={
                "email": "ann@example.com",
                "name": "Ann Lee",
                "quantity": quantity,
                "gateway": "stripe",
            },
        )
        assert response.status_code == 303, response.get_data(as_text=True)[:800]
        location = response.headers["Location"]
        assert location.startswith(f"{self.fake.base_url}/pay/cs_test_")
        session_id = location.rsplit("/", 1)[1]
        payment_id = self.fake.sessions[session_id]["client_reference_id"]
        return payment_id, session_id

    def deliver(self, event: dict[str, Any], *, secret: str = FAKE_WEBHOOK_SECRET) -> Any:
        body, headers = signed_event(_public(event), secret)
        return self.client.post("/webhooks/stripe", data=body, headers=headers)

    def deliver_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            response = self.deliver(event)
            assert response.status_code == 200, response.get_data(as_text=True)

    def events_for(self, session_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The events the fake emitted from index `since` on."""
        return [_public(e) for e in self.fake.events[since:]]

    def payment(self, payment_id: str) -> Payment:
        with self.app.app_context():
            payment = db.session.execute(
                select(Payment).where(Payment.public_id == payment_id)
            ).scalar_one()
            # Load what assertions read before the session closes.
            _ = (
                payment.order.status,
                payment.order.items,
                list(payment.refunds),
                list(payment.disputes),
            )
            db.session.expunge_all()
            return payment

    def count(self, model: Any, *where: Any) -> int:
        with self.app.app_context():
            return int(
                db.session.execute(
                    select(func.count()).select_from(model).where(*where)
                ).scalar_one()
            )

    def webhook_rows(self) -> int:
        return self.count(WebhookEvent)

    def audit_rows(self) -> int:
        return self.count(AuditEntry)


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


@pytest.fixture
def shop(make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe) -> Iterator[Shop]:
    app = make_stripe_app()
    with app.test_client() as client:
        yield Shop(app, client, fake_stripe)
