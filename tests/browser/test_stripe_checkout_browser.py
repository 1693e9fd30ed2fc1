"""A customer pays with Stripe in Chromium: storefront → checkout form → (fake) Stripe
hosted page → Pay → our return page says "Paid"; the webhook lands as well."""

# Fixtures imported from tests/fakes shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.cli import seed_demo_data
from app.extensions import db
from app.models import Payment, WebhookEvent
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import (
    FAKE_SECRET_KEY,
    FAKE_WEBHOOK_SECRET,
    fake_stripe,  # noqa: F401  (fixture)
)


@pytest.fixture
def app(make_app: Any, _live_http_server: Any, fake_stripe: FakeStripe) -> Any:
    """The app served by live_server, with Stripe (and only Stripe) against the fake,
    which posts its signed webhooks to the live app."""
    base = f"http://127.0.0.1:{_live_http_server.server_port}"
    application = make_app(
        PUBLIC_BASE_URL=base,
        SANDBOX_ENABLED=False,
        STRIPE_SECRET_KEY=FAKE_SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=FAKE_WEBHOOK_SECRET,
        STRIPE_API_BASE=fake_stripe.base_url,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    with application.app_context():
        seed_demo_data()
    fake_stripe.webhook_url = f"{base}/webhooks/stripe"
    fake_stripe.webhook_secret = FAKE_WEBHOOK_SECRET
    yield application
    application.extensions["kassa_gateways"]["stripe"].close()


def _checkout(page: Any) -> None:
    page.goto("/")
    page.get_by_role("link", name="Kassa T-shirt").first.click()
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_label("Full name").fill("Ann Lee")
    page.get_by_role("button", name="Continue to payment").click()


def test_customer_pays_on_the_stripe_page_and_sees_paid(
    page, live_server, app, fake_stripe
) -> None:
    _checkout(page)
    page.wait_for_url(f"{fake_stripe.base_url}/pay/cs_test_*")
    assert "Kassa T-shirt" in page.content()
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(f"{live_server}/checkout/return/pay_*?session_id=cs_test_*")
    headline = page.locator(".status-headline")
    headline.wait_for()
    assert headline.get_attribute("data-status") == "paid"
    assert headline.inner_text() == "Paid"
    assert fake_stripe.wait_for_deliveries(10)
    with app.app_context():
        payment = db.session.execute(select(Payment)).scalar_one()
        assert payment.status == "succeeded"
        assert payment.payment_method == {"brand": "visa", "last4": "4242"}
        kinds = {e.event_type for e in db.session.execute(select(WebhookEvent)).scalars()}
    assert "checkout.session.completed" in kinds
    assert all(d.status == 200 for d in fake_stripe.deliveries)


def test_customer_cancels_then_tries_again(page, live_server, app, fake_stripe) -> None:
    _checkout(page)
    page.wait_for_url(f"{fake_stripe.base_url}/pay/cs_test_*")
    first_session = page.url.rsplit("/", 1)[1]
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(f"{live_server}/checkout/cancel/pay_*")
    page.locator("form.retry-form button[type=submit]").click()
    page.wait_for_url(f"{fake_stripe.base_url}/pay/cs_test_*")
    assert page.url.rsplit("/", 1)[1] != first_session
    assert fake_stripe.sessions[first_session]["status"] == "expired"
    page.get_by_role("button", name="Pay", exact=True).click()
    page.wait_for_url(f"{live_server}/checkout/return/*")
    assert page.locator(".status-headline").get_attribute("data-status") == "paid"
