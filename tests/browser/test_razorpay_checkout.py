"""The Razorpay checkout page in Chromium, with checkout.js replaced by the fake's stand-in.

Kassa runs on a loopback port (werkzeug, threaded) and the fake Razorpay API on another;
RAZORPAY_CHECKOUT_JS points at the fake, so the page's CSP must allow that origin and
nothing inline. The flow goes page -> modal -> Razorpay's form POST to our callback ->
server-side verification with the fake -> "Paid".
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import select
from werkzeug.serving import WSGIRequestHandler, make_server

from app.extensions import db
from app.models import Payment
from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.razorpay_app import make_app, start_checkout

pytestmark = pytest.mark.browser


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def live(tmp_path: Path, fake: FakeRazorpay, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[Flask]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(tmp_path, fake, monkeypatch, PUBLIC_BASE_URL=base)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with app.test_request_context(base_url=base):
            yield app
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(message.text)

    page.on("console", watch)
    yield page
    context.close()
    # checkout.js, our script and the stand-in's calls to its origin all passed the CSP.
    assert violations == []


def status_of(payment_public_id: str) -> tuple[str, str]:
    # End the read transaction: SQLite (WAL) would keep showing its old snapshot.
    db.session.rollback()
    payment = db.session.execute(
        select(Payment).where(Payment.public_id == payment_public_id)).scalar_one()
    return payment.status, payment.order.status


def test_pay_through_checkout_js_and_the_callback_to_paid(live: Flask, page: Page,
                                                          fake: FakeRazorpay) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    modal = page.get_by_role("dialog", name="Fake Razorpay Checkout")
    expect(modal).to_be_visible()       # opened by our script, with our order id
    expect(modal).to_contain_text(payment.gateway_reference or "")
    expect(modal).to_contain_text("asha@example.com")
    modal.get_by_role("button", name="Pay").click()

    expect(page.locator('[data-status="paid"]')).to_be_visible()
    expect(page.get_by_role("heading", name="Paid")).to_be_visible()
    assert page.url.endswith(f"/checkout/return/{payment.public_id}")
    assert status_of(payment.public_id) == ("succeeded", "paid")


def test_a_failed_try_shows_the_reason_then_a_retry_pays(live: Flask, page: Page,
                                                         fake: FakeRazorpay) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    page.get_by_role("dialog").get_by_role("button", name="Fail").click()

    expect(page.get_by_role("alert")).to_contain_text("card was declined")
    expect(page.get_by_role("dialog")).to_have_count(0)   # not reopened over the reason
    assert status_of(payment.public_id) == ("processing", "pending")
    page.get_by_role("button", name="Try again").click()
    page.get_by_role("dialog").get_by_role("button", name="Pay").click()

    expect(page.get_by_role("heading", name="Paid")).to_be_visible()
    assert status_of(payment.public_id) == ("succeeded", "paid")
    assert len(fake.orders) == 1


def test_dismissing_the_modal_leads_to_the_cancel_page(live: Flask, page: Page) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    page.get_by_role("dialog").get_by_role("button", name="Dismiss").click()

    expect(page.get_by_role("heading", name="Payment not completed")).to_be_visible()
    assert page.url.endswith(f"/checkout/cancel/{payment.public_id}")
    assert status_of(payment.public_id) == ("processing", "pending")
