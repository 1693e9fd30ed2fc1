"""A customer buys in a real browser through the sandbox gateway and sees "Paid"."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from app.cli import seed_demo_data


def test_customer_buys_and_sees_paid(app: Any, live_server: str, page: Page) -> None:
    with app.app_context():
        seed_demo_data()
    page.goto("/")
    page.get_by_role("link", name="Kassa T-shirt").click()
    page.get_by_label("Email").fill("ana@example.com")
    page.get_by_label("Full name").fill("Ana Silva")
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Continue to payment").click()

    # The sandbox's hosted page: pick "Pay successfully" (the default) and pay.
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_cs_"))
    expect(page.get_by_role("heading", name="Pay $50.00")).to_be_visible()
    page.get_by_role("button", name="Pay $50.00").click()

    # Back on our return page: it confirms by itself when the webhook lands (htmx polling).
    expect(page).to_have_url(re.compile(r"/checkout/return/pay_"))
    status = page.locator("#order-status .status-headline")
    expect(status).to_have_text("Paid", timeout=10_000)
    expect(page.get_by_text("A receipt is on its way to ana@example.com")).to_be_visible()
    expect(page.locator("table.order-items")).to_contain_text("$50.00")


def test_declined_card_shows_the_reason_and_try_again(
    app: Any, live_server: str, page: Page
) -> None:
    with app.app_context():
        seed_demo_data()
    page.goto("/products/mug-eur")
    page.get_by_label("Email").fill("bo@example.com")
    page.get_by_label("Full name").fill("Bo")
    page.get_by_role("button", name="Continue to payment").click()
    page.get_by_label(re.compile("Card declined")).check()
    page.get_by_role("button", name=re.compile("^Pay")).click()
    expect(page.locator("#order-status .status-headline")).to_have_text(
        "Payment failed", timeout=10_000
    )
    expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    page.get_by_role("button", name="Try again").click()
    expect(page).to_have_url(re.compile(r"/sandbox/pay/sbx_cs_"))
