"""Live pages in Chromium, without polling: the customer's order page turns to Paid and the
merchant's open payment page turns to Refunded when the sandbox's webhooks land, each
refreshed by its server-sent event stream (no request before the event)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Request, expect
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import User

PASSWORD = "correct horse battery staple"
SHOTS = Path(__file__).resolve().parents[2] / "test-results"


def _widget_requests(page: Page) -> list[str]:
    seen: list[str] = []

    def record(request: Request) -> None:
        if re.search(r"/(status|refunds|row)$", request.url):
            seen.append(request.url)

    page.on("request", record)
    return seen


def test_order_page_turns_paid_and_payment_page_turns_refunded(
    app: Any, live_server: str, page: Page, browser: Any
) -> None:
    from app.payments.audit import CUSTOMER, Actor
    from app.payments.checkout import create_checkout
    from app.payments.orders import ItemRequest
    from app.payments.refunds import create_refund

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
    with app.test_request_context():
        payment = create_checkout(
            [ItemRequest("tee-usd", 1)], "ann@example.com", "Ann Lee", "sandbox", CUSTOMER
        )
        payment_id, order_id = payment.public_id, payment.order.public_id
        session_id = payment.gateway_reference
    processor = app.extensions["kassa_gateways"]["sandbox"].processor

    # The customer waits on the order page.
    fetched = _widget_requests(page)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    page.goto(f"/orders/{order_id}")
    headline = page.locator("#order-status .status-headline")
    expect(headline).to_have_attribute("data-status", "pending")
    page.wait_for_timeout(1500)
    assert fetched == []  # nothing polls
    assert any(f"/orders/{order_id}/events" in url for url in streams)
    page.evaluate("window.__sameDocument = true")
    with app.app_context():
        processor.complete(session_id, "succeed")  # its webhook goes over HTTP
    expect(headline).to_have_attribute("data-status", "paid", timeout=10_000)
    expect(page.locator("#order-status")).to_contain_text("We will email you when it is sent")
    assert page.evaluate("window.__sameDocument") is True
    assert len(fetched) == 1  # one refresh, on the event
    SHOTS.mkdir(exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"live-order-paid-{width}.png"), full_page=True)

    # The merchant has the payment open in another browser.
    merchant = browser.new_context(base_url=live_server)
    try:
        mpage = merchant.new_page()
        mpage.goto(f"/auth/login?next=/dashboard/payments/{payment_id}")
        mpage.get_by_label("Email").fill("merchant@example.com")
        mpage.get_by_label("Password").fill(PASSWORD)
        mpage.get_by_role("button", name="Sign in").click()
        status = mpage.locator("#payment-status [data-status]")
        expect(status).to_have_text("Succeeded")
        mfetched = _widget_requests(mpage)
        mpage.wait_for_timeout(1500)
        assert mfetched == []
        mpage.evaluate("window.__sameDocument = true")
        processor.delay = 0.3
        with app.test_request_context():
            create_refund(payment_id, None, "requested_by_customer", Actor("api_key", "ops"))
        # The refund's webhook lands; the open page follows, no reload, no polling.
        expect(status).to_have_text("Refunded", timeout=10_000)
        expect(mpage.locator('[data-amount="net"]')).to_have_text("$0.00")
        expect(mpage.locator("#refund-list tbody tr [data-status]").first).to_have_text("Succeeded")
        assert mpage.evaluate("window.__sameDocument") is True
        assert 1 <= len(mfetched) <= 6  # refetches on events only (payment, order, refund)
        for width in (1280, 390):
            mpage.set_viewport_size({"width": width, "height": 900})
            mpage.screenshot(path=str(SHOTS / f"live-payment-refunded-{width}.png"), full_page=True)
    finally:
        merchant.close()
