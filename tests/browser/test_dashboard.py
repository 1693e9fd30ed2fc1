"""A merchant in Chromium: sign in, filter payments (the URL follows, back works), open a
payment, refund part of it and watch the refund turn from pending to succeeded without
reloading (the sandbox delivers its webhook over HTTP), then export the filtered CSV."""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import Payment, User

PASSWORD = "correct horse battery staple"


def _paid_payments(app: Any) -> dict[str, str]:
    """Two customers pay through the core and the sandbox (webhooks over HTTP)."""
    from app.payments.audit import CUSTOMER
    from app.payments.checkout import create_checkout
    from app.payments.orders import ItemRequest

    made = {}
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
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        for sku in ("tee-usd", "mug-eur"):
            with app.test_request_context():
                payment = create_checkout(
                    [ItemRequest(sku, 2)], f"{sku}@example.com", "Ann Lee", "sandbox", CUSTOMER
                )
            processor.complete(payment.gateway_reference, "succeed")
            made[payment.currency] = payment.public_id
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            db.session.rollback()  # a new snapshot: the webhooks commit elsewhere
            statuses = set(db.session.execute(select(Payment.status)).scalars())
            if statuses == {"succeeded"}:
                break
            time.sleep(0.05)
        assert statuses == {"succeeded"}
        # Slow the refund webhook down so "pending" is on screen before it turns.
        processor.delay = 1.5
    return made


def test_merchant_filters_refunds_and_exports(app: Any, live_server: str, page: Page) -> None:
    ids = _paid_payments(app)

    page.goto("/dashboard/payments")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/payments$"))
    rows = page.locator("#payments-results tbody tr")
    expect(rows).to_have_count(2)

    # Filter by currency: htmx swaps the results and pushes the filtered URL.
    page.get_by_label("Currency").select_option("EUR")
    expect(page).to_have_url(re.compile(r"/dashboard/payments\?currency=EUR$"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(ids["EUR"])
    page.go_back()
    expect(page).to_have_url(re.compile(r"/dashboard/payments$"))
    expect(rows).to_have_count(2)
    page.go_forward()
    expect(rows).to_have_count(1)
    # Typing a search narrows the results by itself (no button press), URL in step.
    page.get_by_label("Currency").select_option("")
    expect(rows).to_have_count(2)
    page.get_by_label("Search").fill(ids["USD"])
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(ids["USD"])
    expect(page).to_have_url(re.compile(rf"/dashboard/payments\?q={ids['USD']}$"))
    expect(page.get_by_label("Search")).to_be_focused()  # typing is never interrupted
    page.goto("/dashboard/payments?currency=EUR")
    expect(rows).to_have_count(1)

    # Open the payment.
    page.get_by_role("link", name=ids["EUR"]).click()
    expect(page).to_have_url(re.compile(rf"/dashboard/payments/{ids['EUR']}$"))
    expect(page.locator("#payment-status [data-status]")).to_have_text("Succeeded")
    expect(page.locator('[data-amount="charged"]')).to_have_text("€29.00")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    # Refund part of it: review, confirm.
    amount = page.get_by_label("Amount to refund")
    expect(amount).to_have_value("29.00")  # defaults to what remains
    amount.fill("10.00")
    page.get_by_label("Reason").select_option("requested_by_customer")
    page.get_by_role("button", name="Review refund").click()
    expect(page.get_by_role("heading", name="Confirm the refund")).to_be_focused()
    expect(page.locator("#refund-form")).to_contain_text("€10.00")
    page.get_by_role("button", name="Confirm refund").click()
    message = page.get_by_text("Refund of €10.00 requested.")
    expect(message).to_be_visible()
    expect(message).to_be_focused()  # focus follows the swap
    refund_status = page.locator("#refund-list tbody tr [data-status]").first
    expect(refund_status).to_have_text("Pending")
    # The webhook lands; the polling table and panel update by themselves.
    expect(refund_status).to_have_text("Succeeded", timeout=10_000)
    expect(page.locator("#payment-status [data-status]")).to_have_text("Partially refunded")
    expect(page.locator('[data-amount="net"]')).to_have_text("€19.00")
    expect(page.locator("#timeline")).to_contain_text("refund.succeeded")  # caught up too
    assert page.evaluate("window.__sameDocument") is True

    # Export the filtered list as CSV.
    page.goto("/dashboard/payments?currency=EUR")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("kassa-payments-")
    text = Path(download.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [r["payment_id"] for r in exported] == [ids["EUR"]]
    assert exported[0]["amount_refunded"] == "10.00" and exported[0]["currency"] == "EUR"


def test_phone_width_and_sign_out(app: Any, live_server: str, page: Page) -> None:
    _paid_payments(app)
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto("/auth/login?next=/dashboard/")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # Nothing wider than the screen except inside scrollable table wrappers.
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375, overflow
    page.goto("/dashboard/payments")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.goto("/dashboard/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next="))
