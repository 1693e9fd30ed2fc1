"""In Chromium, on Razorpay (the fake API, checkout.js replaced by its stand-in): a customer
buys with "save this payment method" ticked, Checkout opens on their Razorpay customer as
a recurring authorisation, and the callback keeps the card's token; the merchant then
charges the saved card from the customer's dashboard page and sees it succeed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import User
from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.razorpay_app import add_products, razorpay_config

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_server")]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def app(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask], fake: FakeRazorpay
) -> Iterator[Flask]:
    overrides = razorpay_config(fake)
    server = request.getfixturevalue("_live_http_server")
    overrides["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    app = make_app(**overrides)
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
    yield app


def test_buy_with_save_on_razorpay_then_the_merchant_charges_the_saved_card(
    page: Page, fake: FakeRazorpay
) -> None:
    page.goto("/products/notebook-inr")
    page.get_by_label("Email").fill("asha@example.com")
    page.get_by_label("Full name").fill("Asha Rao")
    page.get_by_label("Save this payment method for future purchases").check()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/razorpay/pay_"))
    modal = page.get_by_role("dialog", name="Fake Razorpay Checkout")
    modal.get_by_role("button", name="Pay").click()
    expect(page.get_by_role("heading", name="Paid")).to_be_visible()
    # Checkout ran as a recurring authorisation on the customer: Razorpay made a token.
    [token] = fake.tokens.values()
    assert token["customer_id"] in fake.customers

    page.goto("/dashboard/customers")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Asha Rao").click()
    expect(page.locator(".saved-methods")).to_contain_text("1111")

    page.get_by_role("link", name="Charge this method").click()
    page.get_by_label("What the customer is charged for").fill("Refill")
    page.get_by_label("Amount").fill("250.00")
    page.get_by_role("button", name="Review charge").click()
    expect(page.locator("#charge-confirmation")).to_contain_text("1111")
    page.get_by_role("button", name="Confirm charge").click()
    expect(page).to_have_url(re.compile(r"/dashboard/payments/pay_"))
    expect(page.locator("#payment-status [data-status]")).to_have_text("Succeeded")
    [charge] = fake.calls("POST", "/v1/payments/create/recurring")
    assert charge.json["amount"] == 25000 and charge.json["token"] == token["id"]
