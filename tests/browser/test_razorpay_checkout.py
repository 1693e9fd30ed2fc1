"""The Razorpay checkout page in Chromium, with checkout.js replaced by the fake's stand-in.

Kassa runs on a loopback port (werkzeug, threaded) and the fake Razorpay API on another;
RAZORPAY_CHECKOUT_JS points at the fake, so the page's CSP must allow that origin and
nothing inline. The flow goes page -> modal -> Razorpay's form POST to our callback ->
server-side verification with the fake -> "Paid".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import select

from app.extensions import db
from app.models import Payment
from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.razorpay_app import add_products, razorpay_config, start_checkout

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("live_server", "csp_violations")]


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def app(
    request: pytest.FixtureRequest, make_app: Callable[..., Flask], fake: FakeRazorpay
) -> Iterator[Flask]:
    """The shared app fixture's Kassa, with Razorpay (on the fake) as its only gateway."""
    overrides = razorpay_config(fake)
    if "live_server" in request.fixturenames:
        server = request.getfixturevalue("_live_http_server")
        overrides["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    app = make_app(**overrides)
    with app.app_context():
        add_products()
    with app.test_request_context(base_url=overrides.get("PUBLIC_BASE_URL")):
        yield app


@pytest.fixture
def csp_violations(page: Page) -> Iterator[list[str]]:
    """Console reports of anything the page's CSP refused; must stay empty."""
    seen: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            seen.append(message.text)

    page.on("console", watch)
    yield seen
    # checkout.js, our script and the stand-in's calls to its origin all passed the CSP.
    assert seen == []


def status_of(payment_public_id: str) -> tuple[str, str]:
    # End the read transaction: SQLite (WAL) would keep showing its old snapshot.
    db.session.rollback()
    payment = db.session.execute(
        select(Payment).where(Payment.public_id == payment_public_id)
    ).scalar_one()
    return payment.status, payment.order.status


def test_pay_through_checkout_js_and_the_callback_to_paid(page: Page, fake: FakeRazorpay) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    modal = page.get_by_role("dialog", name="Fake Razorpay Checkout")
    expect(modal).to_be_visible()  # opened by our script, with our order id
    expect(modal).to_contain_text(payment.gateway_reference or "")
    expect(modal).to_contain_text("asha@example.com")
    modal.get_by_role("button", name="Pay").click()

    expect(page.locator('[data-status="paid"]')).to_be_visible()
    expect(page.get_by_role("heading", name="Paid")).to_be_visible()
    assert page.url.endswith(f"/checkout/return/{payment.public_id}")
    assert status_of(payment.public_id) == ("succeeded", "paid")


def test_a_failed_try_shows_the_reason_then_a_retry_pays(page: Page, fake: FakeRazorpay) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    page.get_by_role("dialog").get_by_role("button", name="Fail").click()

    expect(page.get_by_role("alert")).to_contain_text("card was declined")
    expect(page.get_by_role("dialog")).to_have_count(0)  # not reopened over the reason
    assert status_of(payment.public_id) == ("processing", "pending")
    page.get_by_role("button", name="Try again").click()
    page.get_by_role("dialog").get_by_role("button", name="Pay").click()

    expect(page.get_by_role("heading", name="Paid")).to_be_visible()
    assert status_of(payment.public_id) == ("succeeded", "paid")
    assert len(fake.orders) == 1


def test_dismissing_the_modal_leads_to_the_cancel_page(page: Page) -> None:
    payment = start_checkout()

    page.goto(payment.checkout_url or "")
    page.get_by_role("dialog").get_by_role("button", name="Dismiss").click()

    expect(page.get_by_role("heading", name="Payment not completed")).to_be_visible()
    assert page.url.endswith(f"/checkout/cancel/{payment.public_id}")
    assert status_of(payment.public_id) == ("processing", "pending")
