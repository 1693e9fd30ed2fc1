"""Stripe Checkout through the whole app: the storefront form, the fake Stripe API over
HTTP, return pages, signed webhooks and their effect on our records."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.models import AuditEntry, Product, Refund, WebhookEvent
from app.payments import refunds as refund_service
from app.payments.audit import Actor
from app.payments.errors import KassaError
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import (
    FAKE_WEBHOOK_SECRET,
    fake_stripe,  # noqa: F401  (fixture)
)
from tests.fakes.stripe_signing import signature_header, signed_event
from tests.integration.stripe_support import (  # noqa: F401  (fixtures)
    Shop,
    make_stripe_app,
    shop,
)


def merchant() -> Actor:
    return Actor("user", "owner@example.com")


def new_events(fake: FakeStripe, since: int, *types: str) -> list[dict[str, Any]]:
    events = [{k: v for k, v in e.items() if not k.startswith("_")} for e in fake.events[since:]]
    return [e for e in events if not types or e["type"] in types]


# ----------------------------------------------------------------------------- checkout
def test_checkout_form_redirects_to_stripe_with_our_ids(shop: Shop) -> None:
    payment_id, session_id = shop.buy("tee-usd", quantity=2)
    [create] = shop.fake.calls("POST", "/v1/checkout/sessions")
    payment = shop.payment(payment_id)
    assert create.form["client_reference_id"] == payment_id
    assert create.form["metadata"] == {
        "order_id": payment.order.public_id,
        "payment_id": payment_id,
    }
    assert create.form["line_items"] == [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": "2500",
                "product_data": {"name": "Kassa T-shirt"},
            },
            "quantity": "2",
        }
    ]
    assert create.form["success_url"] == (
        f"http://127.0.0.1:5000/checkout/return/{payment_id}?session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert create.form["cancel_url"] == f"http://127.0.0.1:5000/checkout/cancel/{payment_id}"
    assert create.idempotency_key == payment.idempotency_key
    assert (payment.status, payment.gateway_reference) == ("processing", session_id)


def test_return_page_verifies_with_stripe_and_shows_paid(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    shop.fake.complete_session(session_id, brand="amex", last4="0005")
    page = shop.client.get(f"/checkout/return/{payment_id}?session_id={session_id}")
    assert page.status_code == 200
    assert 'data-status="paid"' in page.get_data(as_text=True)
    payment = shop.payment(payment_id)
    assert payment.status == "succeeded" and payment.order.status == "paid"
    assert payment.payment_method == {"brand": "amex", "last4": "0005"}
    assert payment.gateway_payment_id == shop.fake.sessions[session_id]["payment_intent"]


def test_return_page_for_a_processing_async_payment_says_confirming(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    shop.fake.complete_session(session_id, "unpaid")
    page = shop.client.get(f"/checkout/return/{payment_id}?session_id={session_id}")
    text = page.get_data(as_text=True)
    assert 'data-status="pending"' in text and "Confirming your payment" in text
    assert shop.payment(payment_id).status == "processing"


@pytest.mark.parametrize("forged", ["foreign", "made up", "missing"])
def test_success_page_with_forged_or_foreign_session_changes_nothing(
    shop: Shop, forged: str
) -> None:
    ours, our_session = shop.buy()
    theirs, their_session = shop.buy("mug-eur")
    shop.fake.complete_session(their_session)  # someone else's session is paid
    audit_before = shop.audit_rows()
    query = {
        "foreign": f"?session_id={their_session}",
        "made up": "?session_id=cs_test_forged",
        "missing": "",
    }[forged]
    page = shop.client.get(f"/checkout/return/{ours}{query}")
    assert 'data-status="paid"' not in page.get_data(as_text=True)
    assert shop.payment(ours).status == "processing"
    assert shop.payment(theirs).status == "processing"  # not touched by our page either
    with shop.app.app_context():
        changes = (
            db.session.execute(
                select(AuditEntry).where(
                    AuditEntry.id > audit_before, AuditEntry.action == "payment.status_changed"
                )
            )
            .scalars()
            .all()
        )
    assert changes == []
    # Only our own session was asked about.
    asked = {c.path for c in shop.fake.calls("GET", "/v1/checkout/sessions/*")}
    assert asked == {f"/v1/checkout/sessions/{our_session}"}


def test_cancel_page_offers_a_new_attempt(shop: Shop) -> None:
    payment_id, _ = shop.buy()
    page = shop.client.get(f"/checkout/cancel/{payment_id}")
    assert page.status_code == 200
    assert "/retry" in page.get_data(as_text=True)


def test_retry_expires_the_open_session_and_opens_a_new_one(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    order_id = shop.payment(payment_id).order.public_id
    response = shop.client.post(f"/orders/{order_id}/retry", data={"gateway": "stripe"})
    assert response.status_code == 303
    assert shop.fake.sessions[session_id]["status"] == "expired"
    new_session = response.headers["Location"].rsplit("/", 1)[1]
    assert new_session != session_id and shop.fake.sessions[new_session]["status"] == "open"
    assert shop.payment(payment_id).status == "canceled"


def test_retry_after_the_customer_paid_meanwhile_never_cancels_the_money(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    order_id = shop.payment(payment_id).order.public_id
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id)  # paid in another tab; webhook not yet in
    sessions_before = len(shop.fake.sessions)
    refused = shop.client.post(f"/orders/{order_id}/retry", data={"gateway": "stripe"})
    assert refused.status_code == 422
    assert "paid meanwhile" in refused.get_data(as_text=True)
    assert len(shop.fake.sessions) == sessions_before  # no second session to pay twice
    assert shop.payment(payment_id).status == "succeeded"  # the retry synced it
    shop.deliver_all(new_events(shop.fake, since, "checkout.session.completed"))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")


def test_stripe_down_shows_a_plain_message_and_keeps_the_order_retryable(shop: Shop) -> None:
    for _ in range(3):  # down for every attempt of the retry layer (GATEWAY_MAX_ATTEMPTS)
        shop.fake.queue_error(503, "api_error", should_retry=True, path="/v1/checkout/sessions")
    response = shop.client.post(
        "/products/tee-usd",
        data={"email": "ann@example.com", "name": "Ann Lee", "quantity": 1, "gateway": "stripe"},
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "not answering right now" in text
    assert "Traceback" not in text and "Injected" not in text


# ----------------------------------------------------------------------------- webhooks
def test_completed_webhook_marks_paid_and_records_the_card(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id, brand="mastercard", last4="4444")
    shop.deliver_all(new_events(shop.fake, since, "checkout.session.completed"))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")
    assert payment.payment_method == {"brand": "mastercard", "last4": "4444"}
    with shop.app.app_context():
        row = db.session.execute(select(WebhookEvent)).scalar_one()
        assert (row.status, row.event_type) == ("processed", "checkout.session.completed")
        assert "client_secret" not in row.payload


def test_async_payment_succeeds_later(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id, "unpaid")
    shop.deliver_all(new_events(shop.fake, since))
    assert shop.payment(payment_id).status == "processing"
    since = len(shop.fake.events)
    shop.fake.async_result(session_id, succeeded=True)
    shop.deliver_all(new_events(shop.fake, since))
    assert shop.payment(payment_id).order.status == "paid"


def _stock(shop: Shop, sku: str) -> int | None:
    with shop.app.app_context():
        return db.session.execute(select(Product.stock).where(Product.sku == sku)).scalar_one()


def test_async_payment_fails_later_and_stock_is_released(shop: Shop) -> None:
    before = _stock(shop, "print-usd")
    payment_id, session_id = shop.buy("print-usd", quantity=2)
    assert _stock(shop, "print-usd") == before - 2
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id, "unpaid")
    shop.fake.async_result(session_id, succeeded=False)
    shop.deliver_all(new_events(shop.fake, since))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("failed", "failed")
    assert payment.failure_code == "payment_method_provider_decline"
    assert _stock(shop, "print-usd") == before


def test_expired_session_expires_the_order_and_releases_stock(shop: Shop) -> None:
    before = _stock(shop, "print-usd")
    payment_id, session_id = shop.buy("print-usd")
    since = len(shop.fake.events)
    shop.fake.expire_session(session_id)
    shop.deliver_all(new_events(shop.fake, since))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("expired", "expired")
    assert _stock(shop, "print-usd") == before


def test_declined_card_is_recorded_but_not_final(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id, "failed")
    shop.deliver_all(new_events(shop.fake, since))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("processing", "pending")
    assert payment.failure_code == "generic_decline"
    # The customer tries another card on the same page and it works.
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id, "paid")
    shop.deliver_all(new_events(shop.fake, since))
    assert shop.payment(payment_id).order.status == "paid"


def _paid(shop: Shop, sku: str = "tee-usd") -> tuple[str, str, str]:
    payment_id, session_id = shop.buy(sku)
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id)
    shop.deliver_all(new_events(shop.fake, since))
    return payment_id, session_id, shop.fake.sessions[session_id]["payment_intent"]


def test_refunds_from_kassa_partial_then_full(shop: Shop) -> None:
    payment_id, _, pi = _paid(shop)
    with shop.app.test_request_context():
        first = refund_service.create_refund(payment_id, 1000, "requested_by_customer", merchant())
        first_id = first.public_id
    [call] = shop.fake.calls("POST", "/v1/refunds")
    assert call.form == {
        "payment_intent": pi,
        "amount": "1000",
        "reason": "requested_by_customer",
        "metadata": {"refund_id": first_id, "payment_id": payment_id},
    }
    # Stripe's webhooks for the same refund change nothing more.
    shop.deliver_all(new_events(shop.fake, 0, "refund.created", "charge.refunded"))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 1000)
    assert [(r.amount, r.status) for r in payment.refunds] == [(1000, "succeeded")]
    with shop.app.test_request_context():
        refund_service.create_refund(payment_id, None, None, merchant())
    payment = shop.payment(payment_id)
    assert (payment.status, payment.amount_refunded, payment.order.status) == (
        "refunded",
        2500,
        "refunded",
    )
    with shop.app.test_request_context(), pytest.raises(KassaError):
        refund_service.create_refund(payment_id, 1, None, merchant())
    assert len(shop.fake.refunds) == 2


def test_pending_refund_settles_then_fails_by_webhook(shop: Shop) -> None:
    payment_id, _, _ = _paid(shop)
    shop.fake.refund_status = "pending"
    with shop.app.test_request_context():
        refund = refund_service.create_refund(payment_id, 500, None, merchant())
        assert refund.status == "pending"
    [stripe_refund] = shop.fake.refunds
    since = len(shop.fake.events)
    shop.fake.set_refund_status(stripe_refund, "succeeded")
    shop.deliver_all(new_events(shop.fake, since))
    assert shop.payment(payment_id).amount_refunded == 500
    since = len(shop.fake.events)
    shop.fake.set_refund_status(stripe_refund, "failed", "expired_or_canceled_card")
    shop.deliver_all(new_events(shop.fake, since))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.amount_refunded) == ("succeeded", 0)
    assert [(r.status, r.failure_reason) for r in payment.refunds] == [
        ("failed", "expired_or_canceled_card")
    ]


def test_dashboard_refund_appears_as_a_refund_by_the_gateway(shop: Shop) -> None:
    payment_id, _, pi = _paid(shop)
    since = len(shop.fake.events)
    shop.fake.dashboard_refund(pi, 700)
    shop.deliver_all(new_events(shop.fake, since))
    payment = shop.payment(payment_id)
    assert [(r.amount, r.status, r.requested_by) for r in payment.refunds] == [
        (700, "succeeded", "gateway")
    ]
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 700)


def test_dispute_lifecycle(shop: Shop) -> None:
    payment_id, _, pi = _paid(shop)
    since = len(shop.fake.events)
    dispute = shop.fake.create_dispute(pi, reason="product_not_received")
    shop.fake.update_dispute(dispute["id"], "under_review")
    shop.deliver_all(new_events(shop.fake, since))
    [row] = shop.payment(payment_id).disputes
    assert (row.status, row.gateway_status, row.reason, row.amount) == (
        "open",
        "under_review",
        "product_not_received",
        2500,
    )
    assert row.evidence_due_by is not None
    since = len(shop.fake.events)
    shop.fake.update_dispute(dispute["id"], "won")
    shop.deliver_all(new_events(shop.fake, since))
    assert shop.payment(payment_id).disputes[0].status == "won"


def test_manual_capture_authorizes_then_captures(make_stripe_app, fake_stripe) -> None:
    app = make_stripe_app(CAPTURE_METHOD="manual")
    with app.test_client() as client:
        shop = Shop(app, client, fake_stripe)
        payment_id, session_id = shop.buy()
        since = len(fake_stripe.events)
        fake_stripe.complete_session(session_id)
        shop.deliver_all(new_events(fake_stripe, since, "checkout.session.completed"))
        payment = shop.payment(payment_id)
        assert (payment.status, payment.order.status) == ("authorized", "pending")
        assert payment.capture_deadline is not None
        with app.test_request_context():
            refund_service.capture_payment(payment_id, merchant())
        assert shop.payment(payment_id).order.status == "paid"
        [capture] = fake_stripe.calls("POST", "/v1/payment_intents/*")
        assert capture.idempotency_key == f"kassa-capture-{payment_id}"


def _authorized(app: Flask, client: Any, fake_stripe: FakeStripe) -> tuple[Shop, str, str]:
    shop = Shop(app, client, fake_stripe)
    payment_id, session_id = shop.buy()
    since = len(fake_stripe.events)
    fake_stripe.complete_session(session_id)
    shop.deliver_all(new_events(fake_stripe, since, "checkout.session.completed"))
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("authorized", "pending")
    return shop, payment_id, payment.gateway_payment_id or ""


def _outbox(shop: Shop, payment_id: str) -> list[str]:
    from app.models import OutboxEvent

    with shop.app.app_context():
        return list(
            db.session.execute(
                select(OutboxEvent.type).where(OutboxEvent.payment_id == payment_id)
            ).scalars()
        )


def test_an_authorization_voided_in_stripe_cancels_the_payment(
    make_stripe_app, fake_stripe
) -> None:
    """#17: payment_intent.canceled on an uncaptured intent used to be ignored (and an
    authorized payment could only become succeeded)."""
    app = make_stripe_app(CAPTURE_METHOD="manual")
    with app.test_client() as client:
        shop, payment_id, pi_id = _authorized(app, client, fake_stripe)
        since = len(fake_stripe.events)
        voided = requests.post(
            f"{fake_stripe.base_url}/v1/payment_intents/{pi_id}/cancel",
            data={"cancellation_reason": "requested_by_customer"},
            headers={"Authorization": "Bearer sk_test_fake"},
            timeout=5,
        )
        assert voided.status_code == 200, voided.text
        [event] = new_events(fake_stripe, since, "payment_intent.canceled")
        shop.deliver_all([event, event])
        # The authorization's older news, delivered again afterwards, changes nothing.
        shop.deliver_all(new_events(fake_stripe, 0, "checkout.session.completed"))
        payment = shop.payment(payment_id)
        assert (payment.status, payment.order.status) == ("canceled", "canceled")
        assert not payment.order.stock_reserved
        types = _outbox(shop, payment_id)
        assert types.count("payment.authorization_voided") == 1
        assert types.count("order.canceled") == 1


def test_the_merchant_voids_an_authorization_from_kassa(make_stripe_app, fake_stripe) -> None:
    app = make_stripe_app(CAPTURE_METHOD="manual")
    with app.test_client() as client:
        shop, payment_id, pi_id = _authorized(app, client, fake_stripe)
        with app.test_request_context():
            voided = refund_service.void_authorization(payment_id, merchant())
            assert (voided.status, voided.order.status) == ("canceled", "canceled")
        [call] = fake_stripe.calls("POST", f"/v1/payment_intents/{pi_id}/cancel")
        assert call.idempotency_key == f"kassa-void-{payment_id}"
        assert fake_stripe.payment_intents[pi_id]["status"] == "canceled"
        # Stripe's event for it, delivered afterwards, is a duplicate.
        shop.deliver_all(new_events(fake_stripe, 0, "payment_intent.canceled"))
        payment = shop.payment(payment_id)
        assert (payment.status, payment.order.status) == ("canceled", "canceled")
        assert not payment.order.stock_reserved
        assert _outbox(shop, payment_id).count("payment.authorization_voided") == 1


@pytest.mark.parametrize("first", ["charge.expired", "payment_intent.canceled"])
def test_a_lapsed_authorization_expires_the_payment_in_any_order(
    make_stripe_app, fake_stripe, first: str
) -> None:
    app = make_stripe_app(CAPTURE_METHOD="manual")
    with app.test_client() as client:
        shop, payment_id, pi_id = _authorized(app, client, fake_stripe)
        since = len(fake_stripe.events)
        fake_stripe.lapse_authorization(pi_id)
        events = new_events(fake_stripe, since, "charge.expired", "payment_intent.canceled")
        events.sort(key=lambda e: e["type"] != first)
        shop.deliver_all(events + events)
        payment = shop.payment(payment_id)
        assert (payment.status, payment.order.status) == ("expired", "expired")
        assert not payment.order.stock_reserved
        assert _outbox(shop, payment_id).count("payment.authorization_expired") == 1
        # A capture can no longer be asked for.
        with app.test_request_context(), pytest.raises(KassaError):
            refund_service.capture_payment(payment_id, merchant())


def test_other_event_types_are_stored_and_acknowledged(shop: Shop) -> None:
    _paid(shop)  # delivers charge.succeeded and payment_intent.succeeded as well
    with shop.app.app_context():
        rows = {r.event_type: r for r in db.session.execute(select(WebhookEvent)).scalars()}
    assert set(rows) == {
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    }
    for kind in ("charge.succeeded", "payment_intent.succeeded"):
        assert (rows[kind].status, rows[kind].outcome) == ("processed", "stored only")
    # The payment intent's client secret never reaches our database.
    assert "_secret_" in json.dumps(new_events(shop.fake, 0, "payment_intent.succeeded"))
    assert "client_secret" not in rows["payment_intent.succeeded"].payload
    assert "_secret_" not in rows["payment_intent.succeeded"].payload


def test_duplicate_delivery_is_acknowledged_and_ignored(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id)
    [event] = new_events(shop.fake, since, "checkout.session.completed")
    first, second = shop.deliver(event), shop.deliver(event)
    assert first.get_json() == {"received": True, "duplicate": False}
    assert second.status_code == 200 and second.get_json()["duplicate"] is True
    assert shop.webhook_rows() == 1
    assert shop.payment(payment_id).status == "succeeded"


# ----------------------------------------------------------------------------- signatures
def _bad_delivery(case: str, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body, headers = signed_event(event, FAKE_WEBHOOK_SECRET)
    now = int(time.time())
    if case == "tampered":
        return body.replace(b'"paid"', b'"unpaid"', 1), headers
    if case == "re-serialised":
        return json.dumps(json.loads(body), separators=(",", ":")).encode(), headers
    if case == "expired":
        return body, {"Stripe-Signature": signature_header(body, FAKE_WEBHOOK_SECRET, now - 301)}
    if case == "future":
        return body, {"Stripe-Signature": signature_header(body, FAKE_WEBHOOK_SECRET, now + 301)}
    if case == "missing":
        return body, {"Content-Type": "application/json"}
    if case == "other secret":
        return body, {"Stripe-Signature": signature_header(body, "whsec_someone_else")}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["tampered", "re-serialised", "expired", "future", "missing", "other secret"]
)
def test_bad_signatures_are_refused_and_nothing_is_stored(shop: Shop, case: str) -> None:
    payment_id, session_id = shop.buy()
    since = len(shop.fake.events)
    shop.fake.complete_session(session_id)
    [event] = new_events(shop.fake, since, "checkout.session.completed")
    audit_before = shop.audit_rows()
    body, headers = _bad_delivery(case, event)
    response = shop.client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status_code == 400
    assert shop.webhook_rows() == 0
    assert shop.audit_rows() == audit_before
    assert shop.payment(payment_id).status == "processing"


# ----------------------------------------------------------------------------- concurrency
class _Served:
    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _same_event_50_times(app: Flask, fake: FakeStripe) -> None:
    with app.test_client() as client:
        shop = Shop(app, client, fake)
        payment_id, session_id = shop.buy()
    since = len(fake.events)
    fake.complete_session(session_id)
    [event] = new_events(fake, since, "checkout.session.completed")
    body, headers = signed_event(event, FAKE_WEBHOOK_SECRET)
    served = _Served(app)
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def post() -> None:
        with requests.Session() as http:
            barrier.wait()
            statuses.append(
                http.post(
                    f"{served.url}/webhooks/stripe", data=body, headers=headers, timeout=60
                ).status_code
            )

    threads = [threading.Thread(target=post) for _ in range(50)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    finally:
        served.stop()
    assert statuses == [200] * 50
    with app.app_context():
        assert db.session.execute(select(WebhookEvent)).scalars().all().__len__() == 1
        transitions = (
            db.session.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "payment.status_changed",
                    AuditEntry.to_state == "succeeded",
                )
            )
            .scalars()
            .all()
        )
        assert len(transitions) == 1
        orders_paid = (
            db.session.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "order.status_changed", AuditEntry.to_state == "paid"
                )
            )
            .scalars()
            .all()
        )
        assert len(orders_paid) == 1
    with app.test_client() as client:
        assert Shop(app, client, fake).payment(payment_id).status == "succeeded"


def test_same_event_50_times_concurrently_sqlite(make_stripe_app, fake_stripe) -> None:
    _same_event_50_times(make_stripe_app(), fake_stripe)


@pytest.mark.postgres
def test_same_event_50_times_concurrently_postgres(make_stripe_app, fake_stripe, pg_url) -> None:
    app = make_stripe_app(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 20, "max_overflow": 40, "pool_pre_ping": True},
    )
    _same_event_50_times(app, fake_stripe)


# ----------------------------------------------------------------------------- orderings
ORDERED_TYPES = (
    "checkout.session.completed",
    "refund.created",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)


def _final_state(shop: Shop, payment_id: str) -> tuple[Any, ...]:
    p = shop.payment(payment_id)
    return (
        p.status,
        p.amount_refunded,
        p.order.status,
        p.gateway_payment_id is not None,
        tuple(sorted((p.payment_method or {}).items())),
        tuple(sorted((r.amount, r.status, r.requested_by) for r in p.refunds)),
        tuple(sorted((d.status, d.amount) for d in p.disputes)),
    )


def test_every_ordering_of_completed_refund_dispute_gives_the_same_state(shop: Shop) -> None:
    finals = set()
    orderings = list(itertools.permutations(range(len(ORDERED_TYPES))))
    assert len(orderings) == 120
    for order in orderings:
        payment_id, session_id = shop.buy()
        since = len(shop.fake.events)
        shop.fake.complete_session(session_id)
        pi = shop.fake.sessions[session_id]["payment_intent"]
        shop.fake.dashboard_refund(pi, 1000)
        dispute = shop.fake.create_dispute(pi, amount=1500)
        shop.fake.update_dispute(dispute["id"], "lost")
        by_type = {e["type"]: e for e in new_events(shop.fake, since, *ORDERED_TYPES)}
        assert sorted(by_type) == sorted(ORDERED_TYPES)
        shop.deliver_all([by_type[ORDERED_TYPES[i]] for i in order])
        finals.add(_final_state(shop, payment_id))
    assert finals == {
        (
            "partially_refunded",
            1000,
            "partially_refunded",
            True,
            (("brand", "visa"), ("last4", "4242")),
            ((1000, "succeeded", "gateway"),),
            (("lost", 1500),),
        )
    }


def test_refund_row_idempotency_keys_are_unique_per_gateway_refund(shop: Shop) -> None:
    _, _, pi = _paid(shop)
    since = len(shop.fake.events)
    shop.fake.dashboard_refund(pi, 100)
    shop.fake.dashboard_refund(pi, 200)
    shop.deliver_all(new_events(shop.fake, since))
    with shop.app.app_context():
        rows = db.session.execute(select(Refund)).scalars().all()
        assert sorted(r.amount for r in rows) == [100, 200]


# ----------------------------------------------------------------------------- settings
def _settings(tmp_path: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "k" * 40,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'settings.db'}",
        **overrides,
    }


def test_stripe_is_active_only_with_both_secrets(tmp_path: Any) -> None:
    from app import create_app

    app = create_app(_settings(tmp_path, STRIPE_SECRET_KEY="sk_test_x"))
    assert "stripe" not in app.extensions["kassa_gateways"]
    app = create_app(
        _settings(tmp_path, STRIPE_SECRET_KEY="sk_test_x", STRIPE_WEBHOOK_SECRET="whsec_x")
    )
    gateway = app.extensions["kassa_gateways"]["stripe"]
    assert gateway.mode == "test"
    gateway.close()


def test_live_key_in_debug_mode_refuses_to_start(tmp_path: Any) -> None:
    from app import create_app

    with pytest.raises(RuntimeError, match="live Stripe key"):
        create_app(
            _settings(
                tmp_path, DEBUG=True, STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="whsec_x"
            )
        )
    with pytest.raises(RuntimeError, match="not a Stripe secret key"):
        create_app(
            _settings(tmp_path, STRIPE_SECRET_KEY="pk_test_x", STRIPE_WEBHOOK_SECRET="whsec_x")
        )


def test_sync_brings_a_payment_up_to_date_when_webhooks_were_missed(shop: Shop) -> None:
    payment_id, session_id = shop.buy()
    shop.fake.complete_session(session_id, brand="visa", last4="1881")  # never delivered
    with shop.app.test_request_context():
        refund_service.sync_payment(payment_id, merchant())
    payment = shop.payment(payment_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")
    assert payment.payment_method == {"brand": "visa", "last4": "1881"}
