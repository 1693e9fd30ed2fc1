"""Pytest fixtures for the fake Stripe API; import them into a conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
