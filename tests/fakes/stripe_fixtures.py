"""Pytest fixtures for the fake Stripe API; import them into a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.gateways.base import CheckoutRequest, LineItem
from tests.fakes.stripe_api import FakeStripe

FAKE_SECRET_KEY = "sk_test_kassa_fake_0123456789"
FAKE_WEBHOOK_SECRET = "whsec_kassa_fake_0123456789"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A fresh fake Stripe API on a free loopback port, shut down after the test."""
    fake = FakeStripe().serve()
    try:
        yield fake
    finally:
        fake.shutdown()


def checkout_request(**overrides) -> CheckoutRequest:
    """A CheckoutRequest for pay_abc / ord_xyz (3700 USD) with overridable fields."""
    values = {
        "payment_id": "pay_abc",
        "order_id": "ord_xyz",
        "amount": 3700,
        "currency": "USD",
        "line_items": (LineItem("Blue mug", 1250, 2), LineItem("Tea towel", 1200, 1)),
        "customer_email": "ada@example.com",
        "customer_name": "Ada",
        "success_url": "https://shop.example/checkout/return/pay_abc?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/checkout/cancel/pay_abc",
        "idempotency_key": "checkout-pay_abc-1",
        "expires_at": datetime.now(UTC) + timedelta(minutes=45),
    }
    values.update(overrides)
    return CheckoutRequest(**values)  # type: ignore[arg-type]
