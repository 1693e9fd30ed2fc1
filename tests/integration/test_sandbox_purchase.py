"""A customer buys through the sandbox gateway, over real HTTP, with webhooks delivered
by the sandbox over HTTP after the redirect, as a real gateway would."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Order, Payment, Product, WebhookEvent
from tests.integration.conftest import Browser, LiveServer, wait_for

HEADLINE = re.compile(r'class="status-headline" data-status="([a-z_]+)">([^<]*)<')


def buy(browser: Browser, sku: str, scenario: str, quantity: int = 1) -> str:
    """Fill the checkout form, pick a scenario on the hosted page; return the landing URL."""
    page = browser.get(f"/products/{sku}")
    assert page.status_code == 200
    hosted = browser.submit(
        page,
        None,
        {"email": "ann@example.com", "name": "Ann Lee", "quantity": quantity, "gateway": "sandbox"},
    )
    assert "/sandbox/pay/" in hosted.url, hosted.text[:500]
    if scenario.startswith("3ds"):
        challenge = browser.submit(hosted, None, {"scenario": scenario})
        assert "/challenge" in challenge.url
        result = "complete" if scenario == "3ds_succeed" else "fail"
        landing = browser.submit(challenge, None, {"result": result})
    else:
        landing = browser.submit(hosted, None, {"scenario": scenario})
    assert landing.status_code == 200
    return landing.url


def order_id_of(landing_html: str) -> str:
    match = re.search(r"(ord_[A-Za-z0-9]+)", landing_html)
    assert match
    return match.group(1)


def headline(browser: Browser, order_id: str) -> tuple[str, str]:
    match = HEADLINE.search(browser.get(f"/orders/{order_id}").text)
    assert match
    return match.group(1), match.group(2)


def settled(browser: Browser, order_id: str) -> Callable[[], tuple[str, str] | None]:
    def check() -> tuple[str, str] | None:
        status = headline(browser, order_id)
        return status if status[0] != "pending" else None

    return check


def test_pay_then_paid(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve()
    browser = browser_for(server.url)
    landing = buy(browser, "tee-usd", "succeed", quantity=2)
    assert "/checkout/return/" in landing
    order_id = order_id_of(browser.get(landing).text)
    assert wait_for(settled(browser, order_id)) == ("paid", "Paid")
    page = browser.get(f"/orders/{order_id}").text
    assert "$50.00" in page and "Kassa T-shirt" in page
    with server.app.app_context():
        payment = db.session.execute(select(Payment)).scalar_one()
        assert payment.status == "succeeded"
        assert payment.payment_method == {"brand": "visa", "last4": "4242"}


def test_success_page_says_confirming_until_the_webhook_lands(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    # The sandbox waits before delivering: the return page must not claim "paid" yet.
    server = serve(SANDBOX_WEBHOOK_DELAY_SECONDS=1.5)
    browser = browser_for(server.url)
    landing = browser.get(buy(browser, "mug-eur", "succeed"))
    status = HEADLINE.search(landing.text)
    assert status and status.group(1) == "pending"
    assert "Confirming your payment" in landing.text
    # The status widget refreshes on the page's event stream.
    assert 'hx-trigger="sse:order"' in landing.text and "sse-connect=" in landing.text
    order_id = order_id_of(landing.text)
    assert wait_for(settled(browser, order_id))[0] == "paid"
    # Settled: 286 (htmx stops any polling); it still listens to its stream (fulfilment).
    partial = browser.http.get(
        f"{server.url}/orders/{order_id}/status", headers={"HX-Request": "true"}, timeout=5
    )
    assert partial.status_code == 286
    assert "every 1s" not in partial.text and 'hx-trigger="sse:order"' in partial.text


def test_declined_shows_the_reason_and_offers_a_retry(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve()
    browser = browser_for(server.url)
    order_id = order_id_of(browser.get(buy(browser, "print-usd", "insufficient_funds")).text)
    assert wait_for(settled(browser, order_id)) == ("failed", "Payment failed")
    page = browser.get(f"/orders/{order_id}").text
    assert "Your card has insufficient funds." in page
    assert "Try again" in page
    with server.app.app_context():
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 5
        )


def test_3ds_failure_is_a_failed_payment(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve()
    browser = browser_for(server.url)
    order_id = order_id_of(browser.get(buy(browser, "tee-usd", "3ds_fail")).text)
    assert wait_for(settled(browser, order_id))[0] == "failed"
    assert "3-D Secure authentication failed" in browser.get(f"/orders/{order_id}").text


def test_3ds_success_is_paid(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve()
    browser = browser_for(server.url)
    order_id = order_id_of(browser.get(buy(browser, "tenugui-jpy", "3ds_succeed")).text)
    assert wait_for(settled(browser, order_id)) == ("paid", "Paid")
    assert "¥1,800" in browser.get(f"/orders/{order_id}").text


def test_abandoned_checkout_expires_and_releases_stock(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve()
    browser = browser_for(server.url)
    landing = buy(browser, "print-usd", "abandon", quantity=3)
    assert "/checkout/cancel/" in landing
    cancel_page = browser.get(landing)
    assert "Try again" in cancel_page.text
    order_id = order_id_of(cancel_page.text)
    with server.app.app_context():
        # Reserved while the checkout was open...
        assert wait_for(lambda: _order_status(order_id) == "expired")
        # ...and given back once it expired.
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 5
        )
    assert headline(browser, order_id) == ("expired", "Checkout expired")
    # "Try again" buys the same items again as a new order.
    retry = browser.submit(cancel_page, f"/orders/{order_id}/retry", {"gateway": "sandbox"})
    assert "/sandbox/pay/" in retry.url


def test_retry_after_cancel_on_a_pending_order_opens_a_new_attempt(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve(SANDBOX_DELIVER_WEBHOOKS=False)  # the first attempt stays open
    browser = browser_for(server.url)
    page = browser.get("/products/print-usd")
    hosted = browser.submit(
        page, None, {"email": "bo@example.com", "name": "Bo", "quantity": 1, "gateway": "sandbox"}
    )
    with server.app.app_context():
        payment = db.session.execute(select(Payment)).scalar_one()
        order_id = payment.order.public_id
    cancel_page = browser.get(f"/checkout/cancel/{payment.public_id}")
    again = browser.submit(cancel_page, f"/orders/{order_id}/retry", {"gateway": "sandbox"})
    assert "/sandbox/pay/" in again.url and again.url != hosted.url, again.text
    paid = browser.submit(again, None, {"scenario": "succeed"})
    assert paid.status_code == 200
    with server.app.app_context():
        statuses = sorted(p.status for p in db.session.execute(select(Payment)).scalars())
        assert statuses == ["canceled", "processing"]  # webhooks are off in this test
        # Only one order, and its stock was reserved once.
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 4
        )


def test_duplicate_and_out_of_order_deliveries_make_one_transition_each(
    serve: Callable[..., LiveServer], browser_for: Callable[[str], Browser]
) -> None:
    server = serve(SANDBOX_WEBHOOK_MODE="twice_out_of_order")
    browser = browser_for(server.url)
    order_id = order_id_of(browser.get(buy(browser, "tee-usd", "succeed")).text)
    assert wait_for(settled(browser, order_id))[0] == "paid"
    processor = server.app.extensions["kassa_gateways"]["sandbox"].processor
    # processing + succeeded, each delivered twice, newest first
    wait_for(lambda: len(processor.deliveries) >= 4)
    server.app.extensions["kassa_jobs"].wait_idle()
    assert [status for _, status in processor.deliveries] == [200, 200, 200, 200]
    with server.app.app_context():
        assert db.session.execute(select(func.count(WebhookEvent.id))).scalar_one() == 2
        actions = [
            (a.action, a.to_state)
            for a in db.session.execute(
                select(AuditEntry)
                .where(AuditEntry.object_type == "payment")
                .order_by(AuditEntry.id)
            ).scalars()
        ]
        assert actions.count(("payment.status_changed", "succeeded")) == 1
        # The late "processing" event was recorded as stale, and changed nothing.
        assert ("payment.event_stale", "processing") in actions
        order_changes = db.session.execute(
            select(func.count(AuditEntry.id)).where(AuditEntry.action == "order.status_changed")
        ).scalar_one()
        assert order_changes == 1


def _order_status(order_id: str) -> str:
    db.session.rollback()  # end the read transaction: each poll sees a fresh snapshot
    return db.session.execute(select(Order.status).where(Order.public_id == order_id)).scalar_one()
