"""PayPal in Chromium: storefront -> the fake PayPal's approve page -> return -> "Paid";
cancel -> try again; a refund from the dashboard that settles by PayPal's webhook.

Kassa runs on a loopback port, the fake PayPal API on another; its webhooks come over
HTTP, signed with the test's certificate chain and verified offline by the app.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Payment, User
from tests.fakes.paypal_api import FakePayPal
from tests.integration.paypal_app import add_products, paypal_config, route_certificates

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_server")]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def fake(_live_http_server: object) -> Iterator[FakePayPal]:
    port = _live_http_server.server_port  # type: ignore[attr-defined]
    with FakePayPal(webhook_url=f"http://127.0.0.1:{port}/webhooks/paypal").running() as api:
        yield api


@pytest.fixture
def app(
    make_app: Callable[..., Flask],
    fake: FakePayPal,
    _live_http_server: object,
    tmp_path: Path,
) -> Iterator[Flask]:
    port = _live_http_server.server_port  # type: ignore[attr-defined]
    overrides = paypal_config(fake, tmp_path / "root.pem")
    overrides["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    overrides["SANDBOX_ENABLED"] = True  # the form offers a choice: PayPal among others
    app = make_app(**overrides)
    route_certificates(app, fake)
    with app.app_context():
        add_products()
        db.session.add(
            User(
                email="merchant@example.com",
                role="owner",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                session_token=secrets.token_hex(16),
            )
        )
        db.session.commit()
    with app.test_request_context(base_url=overrides["PUBLIC_BASE_URL"]):
        yield app


def buy(page: Page) -> None:
    page.goto("/")
    page.get_by_role("link", name="Enamel mug").click()
    page.get_by_label("Email").fill("asha@example.com")
    page.get_by_label("Full name").fill("Asha Rao")
    page.get_by_label("PayPal").check()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name=re.compile("with PayPal"))).to_be_visible()


def test_pay_with_paypal_cancel_retry_and_refund_from_the_dashboard(
    page: Page, fake: FakePayPal, live_server: str
) -> None:
    # Cancel on PayPal's page: back at the store, a new attempt goes to PayPal again.
    buy(page)
    page.get_by_role("button", name="Cancel and return to the store").click()
    expect(page.get_by_role("heading", name="Payment not completed")).to_be_visible()
    page.get_by_label("PayPal").check()
    page.get_by_role("button", name="Try again").click()
    expect(page.get_by_role("heading", name=re.compile("with PayPal"))).to_be_visible()
    assert len(fake.orders) == 2

    # Approve: PayPal sends the buyer back, our server captures, the page says Paid.
    page.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(re.compile(r"/checkout/return/pay_"))
    expect(page.get_by_text("Paid", exact=True).first).to_be_visible()
    assert len(fake.captures) == 1
    db.session.rollback()
    payment = db.session.execute(select(Payment).where(Payment.status == "succeeded")).scalar_one()

    # The merchant refunds part of it; PayPal's webhook settles the refund.
    page.goto(f"/dashboard/payments/{payment.public_id}")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/payments/{payment.public_id}$"))
    expect(page.get_by_text("PayPal", exact=True).first).to_be_visible()  # the method
    link = page.get_by_role("link", name=re.compile("Open in the Paypal dashboard"))
    expect(link).to_have_attribute(
        "href", f"https://www.sandbox.paypal.com/activity/payment/{payment.gateway_payment_id}"
    )
    page.get_by_label("Amount to refund").fill("10.00")
    page.get_by_label("Reason").select_option("requested_by_customer")
    page.get_by_role("button", name="Review refund").click()
    page.get_by_role("button", name="Confirm refund").click()
    # PayPal answers COMPLETED at once for this capture; its webhook then changes nothing.
    expect(page.get_by_text("Refund of $10.00 requested").first).to_be_visible()
    refund_status = page.locator("#refund-list tbody tr [data-status]").first
    expect(refund_status).to_have_text("Succeeded", timeout=10_000)
    expect(page.locator("#payment-status [data-status]")).to_have_text("Partially refunded")
    (call,) = fake.calls("POST", "/v2/payments/captures/")
    assert call.json["amount"] == {"currency_code": "USD", "value": "10.00"}
    fake.wait_for_deliveries()
    assert ("PAYMENT.CAPTURE.REFUNDED", 200) in fake.deliveries
