"""A customer subscribes in the sandbox in a real browser, watches a renewal arrive on
their subscription page (no reload), and cancels at the end of the period."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from app.payments import subscriptions
from app.payments.audit import SYSTEM

PERIOD = 6  # seconds a billing period lasts in this sandbox


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"SANDBOX_PERIOD_SECONDS": PERIOD, "SANDBOX_RENEWAL_CLOCK": True}


def test_subscribe_watch_a_renewal_and_cancel_at_period_end(
    app: Any, live_server: str, page: Page
) -> None:
    with app.app_context():
        plan = subscriptions.create_plan(
            sku="news-weekly",
            name="Newsletter",
            amount=500,
            currency="USD",
            interval="week",
            actor=SYSTEM,
        )
        plan_id = plan.public_id
    page.goto(f"/plans/{plan_id}")
    expect(page.locator("#plan-price")).to_have_text("$5.00 every week")
    page.get_by_label("Email").fill("lu@example.com")
    page.get_by_label("Full name").fill("Lu")
    page.get_by_role("button", name="Subscribe").click()

    expect(page).to_have_url(re.compile(r"/sandbox/subscribe/sbx_sub_"))
    page.get_by_role("button", name="Subscribe").click()

    # Our page for the customer (a signed link): active once the webhook lands.
    expect(page).to_have_url(re.compile(r"/subscriptions/sub_\w+\?t="))
    status = page.locator("#subscription-status")
    expect(status).to_have_text("Active", timeout=10_000)
    rows = page.locator("#subscription-invoices tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("$5.00")
    # A period passes at the sandbox: the renewal's payment appears without a reload.
    expect(rows).to_have_count(2, timeout=3 * PERIOD * 1000)
    expect(page.locator("#subscription-access")).to_contain_text("renews automatically")

    page.get_by_role("button", name="Cancel at the end of the period").click()
    expect(page.locator("#subscription-access")).to_contain_text("then ends", timeout=10_000)
    paid = rows.count()
    expect(page.get_by_role("button", name="Keep my subscription")).to_be_visible()
    # At the period's end the sandbox ends it; no further period is charged.
    expect(status).to_have_text("Canceled", timeout=3 * PERIOD * 1000)
    expect(rows).to_have_count(paid)
    page.screenshot(path="/tmp/subs_shots/customer_subscription.png", full_page=True)
