"""Unit-test fixtures: the fake Razorpay API on loopback and an adapter pointed at it
(modules that define their own `fake`/`gw`, such as the Stripe ones, override these)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.gateways.razorpay import RazorpayGateway
from tests.fakes.razorpay_api import FakeRazorpay

PUBLIC = "http://shop.test"


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def gw(fake: FakeRazorpay) -> RazorpayGateway:
    return RazorpayGateway(
        fake.key_id,
        fake.key_secret,
        fake.webhook_secret,
        public_base_url=PUBLIC,
        api_base=fake.url,
        timeout=2.0,
    )
