"""In Chromium: a customer buys with "save this payment method" ticked; the merchant then
charges the saved card from the customer's dashboard page (review, confirm) and sees the
payment succeed."""

from __future__ import annotations

import re
import secrets
from typing import Any

from playwright.sync_api import Page, expect
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import User

PASSWORD = "correct horse battery staple"


def test_buy_with_save_then_the_merchant_charges_the_saved_card(
    app: Any, live_server: str, page: Page
) -> None:
    with app.app_context():
        seed_demo_data()
        db.session.add(
            User(
                email="merchant@example.com",
                role="owner",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                session_token=secrets.token_hex(16),
            )
        )
        db.session.commit()

    # The customer buys, ticking "save" (unticked by default, its terms beside it).
    page.goto("/products/tee-usd")
    page.get_by_label("Email").fill("ana@example.com")
    page.get_by_label("Full name").fill("Ana Silva")
    save = page.get_by_label("Save this payment method for future purchases")
    expect(save).not_to_be_checked()
    expect(page.get_by_text("you can remove it at any time")).to_be_visible()
    save.check()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_cs_"))
    page.get_by_role("button", name="Pay $25.00").click()
    expect(page.locator("#order-status .status-headline")).to_have_text("Paid", timeout=10_000)

    # The merchant signs in and finds the customer with the saved card.
    page.goto("/dashboard/customers")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/customers$"))
    page.get_by_role("link", name="Ana Silva").click()
    expect(page.locator(".saved-methods")).to_contain_text("Visa •••• 4242")

    # Charge it: amount, review, confirm.
    page.get_by_role("link", name="Charge this method").click()
    page.get_by_label("What the customer is charged for").fill("Second shirt")
    page.get_by_label("Amount").fill("12.50")
    page.get_by_role("button", name="Review charge").click()
    expect(page.locator("#charge-confirmation")).to_contain_text("Charge $12.50 to Visa •••• 4242")
    page.get_by_role("button", name="Confirm charge").click()
    expect(page).to_have_url(re.compile(r"/dashboard/payments/pay_"))
    expect(page.locator("#payment-status [data-status]")).to_have_text("Succeeded")
    page.get_by_role("link", name="Customers").click()
    page.get_by_role("link", name="Ana Silva").click()
    expect(page.locator("table")).to_contain_text("$12.50")
    expect(page.locator("table")).to_contain_text("Saved method (off-session)")
