"""PayPal through the whole app: checkout, return (capture), cancel, webhooks, refunds,
manual capture, reconciliation and expiry.

Flask test client + database + the fake PayPal API over HTTP, webhooks signed with a
certificate chain the test made.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Dispute, OutboxEvent, Payment, Refund, WebhookEvent
from app.payments import reconcile, refunds
from app.payments.audit import Actor
from app.payments.errors import InvalidState
from tests.fakes.paypal_api import FakePayPal
from tests.fakes.paypal_certs import SigningBundle, make_bundle, sibling
from tests.integration.paypal_app import (
    add_products,
    paypal_config,
    route_certificates,
    start_checkout,
)

MERCHANT = Actor("user", "merchant@example.com")


@pytest.fixture(scope="module")
def bundle() -> SigningBundle:
    return make_bundle()


@pytest.fixture
def fake(bundle: SigningBundle) -> Iterator[FakePayPal]:
    with FakePayPal(bundle=bundle).running() as api:
        api.send_webhooks = False  # tests deliver the events they want, in their order
        yield api


@pytest.fixture
def make_paypal_app(
    make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path
) -> Callable[..., Flask]:
    def factory(**overrides: object) -> Flask:
        app = make_app(**paypal_config(fake, tmp_path / "paypal-root.pem", **overrides))
        route_certificates(app, fake)
        with app.app_context():
            add_products()
        return app

    return factory


@pytest.fixture
def app(make_paypal_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_paypal_app()
    with app.test_request_context():
        yield app


def fresh(public_id: str) -> Payment:
    db.session.rollback()
    return db.session.execute(select(Payment).where(Payment.public_id == public_id)).scalar_one()


def transitions(payment: Payment, to_state: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.payment_id == payment.id,
            AuditEntry.action == "payment.status_changed",
            AuditEntry.to_state == to_state,
        )
    ).scalar_one()


def post_webhook(client: FlaskClient, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post("/webhooks/paypal", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()  # type: ignore[no-any-return]


def approve_and_return(client: FlaskClient, fake: FakePayPal, payment: Payment) -> str:
    order_id = payment.gateway_reference or ""
    fake.approve(order_id)
    response = client.get(
        f"/checkout/return/{payment.public_id}?token={order_id}&PayerID=FAKEPAYER01"
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- checkout and return


def test_the_storefront_form_redirects_to_paypal(
    app: Flask, client: FlaskClient, fake: FakePayPal
) -> None:
    response = client.post(
        "/products/mug-usd",
        data={"email": "asha@example.com", "name": "Asha", "quantity": "2", "gateway": "paypal"},
    )
    assert response.status_code == 303
    (order_id,) = fake.orders
    assert response.headers["Location"] == f"{fake.url}/checkoutnow?token={order_id}"
    (call,) = fake.calls("POST", "/v2/checkout/orders")
    payment = db.session.execute(select(Payment)).scalars().all()[-1]
    assert call.request_id == payment.idempotency_key
    unit = call.json["purchase_units"][0]
    assert unit["custom_id"] == payment.public_id
    assert unit["invoice_id"] == payment.order.public_id
    assert unit["amount"]["value"] == "50.00"
    assert unit["items"][0]["quantity"] == "2"
    context = call.json["payment_source"]["paypal"]["experience_context"]
    assert context["return_url"] == f"http://127.0.0.1:5000/checkout/return/{payment.public_id}"
    assert context["brand_name"] == app.config["STORE_NAME"]
    assert payment.gateway_reference == order_id
    # The redirect to PayPal is a form submission's redirect: form-action must allow it.
    assert fake.url in response.headers["Content-Security-Policy"].split("form-action")[1]


def test_the_return_page_captures_and_shows_paid(client: FlaskClient, fake: FakePayPal) -> None:
    payment = start_checkout()
    html = approve_and_return(client, fake, payment)
    payment = fresh(payment.public_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")
    assert "Paid" in html
    assert payment.gateway_payment_id in fake.captures
    assert payment.payment_method == {
        "method": "wallet",
        "wallet": "paypal",
        "payer_id": "FAKEPAYER01",
    }
    # A reload reads the order again and never captures a second time.
    client.get(f"/checkout/return/{payment.public_id}?token={payment.gateway_reference}")
    assert len(fake.captures) == 1
    assert len(fake.calls("POST", f"/v2/checkout/orders/{payment.gateway_reference}/")) == 1
    assert transitions(payment, "succeeded") == 1


def test_a_forged_return_changes_nothing(client: FlaskClient, fake: FakePayPal) -> None:
    payment = start_checkout()
    other = start_checkout()
    fake.approve(other.gateway_reference or "")
    client.get(f"/checkout/return/{payment.public_id}?token={other.gateway_reference}")
    assert fresh(payment.public_id).status == "processing"
    assert not fake.captures


def test_cancel_offers_a_new_attempt(client: FlaskClient, fake: FakePayPal) -> None:
    payment = start_checkout()
    page = client.get(f"/checkout/cancel/{payment.public_id}?token={payment.gateway_reference}")
    assert page.status_code == 200
    assert f"/orders/{payment.order.public_id}/retry" in page.get_data(as_text=True)
    again = client.post(f"/orders/{payment.order.public_id}/retry", data={"gateway": "paypal"})
    assert again.status_code == 303
    assert len(fake.orders) == 2
    assert again.headers["Location"].startswith(f"{fake.url}/checkoutnow?token=")


def test_a_pending_capture_stays_pending_until_paypal_completes_it(
    client: FlaskClient, fake: FakePayPal
) -> None:
    fake.next_capture.append("PENDING")
    payment = start_checkout()
    approve_and_return(client, fake, payment)
    payment = fresh(payment.public_id)
    assert (payment.status, payment.order.status) == ("processing", "pending")
    assert payment.failure_code == "PENDING_REVIEW"
    capture_id = next(iter(fake.captures))
    fake.set_capture_status(capture_id, "COMPLETED")
    post_webhook(client, *fake.signed(fake.events_of("PAYMENT.CAPTURE.COMPLETED")[-1]))
    assert fresh(payment.public_id).status == "succeeded"


@pytest.mark.parametrize(
    ("sku", "value"), [("mug-usd", "25.00"), ("tenugui-jpy", "1800"), ("paprika-huf", "1900")]
)
def test_amounts_reach_paypal_in_its_exponent(
    client: FlaskClient, fake: FakePayPal, sku: str, value: str
) -> None:
    start_checkout(sku)
    assert (
        fake.calls("POST", "/v2/checkout/orders")[-1].json["purchase_units"][0]["amount"]["value"]
        == value
    )


def test_a_currency_paypal_does_not_take_is_refused_with_a_message(
    client: FlaskClient, fake: FakePayPal
) -> None:
    response = client.post(
        "/products/oud-kwd",
        data={"email": "asha@example.com", "name": "Asha", "quantity": "1", "gateway": "paypal"},
    )
    assert response.status_code in (422, 502, 400)
    assert not fake.calls("POST", "/v2/checkout/orders")


# ---------------------------------------------------------------- webhooks


def test_only_a_genuine_webhook_is_accepted_and_stored(
    client: FlaskClient, fake: FakePayPal, bundle: SigningBundle
) -> None:
    payment = start_checkout()
    fake.capture_now(payment.gateway_reference or "")
    event = fake.events_of("PAYMENT.CAPTURE.COMPLETED")[-1]
    body, headers = fake.signed(event)
    expired = sibling(bundle, expired=True)
    forgeries = [
        (body.replace(b'"COMPLETED"', b'"COMPLETEX"', 1), headers),  # tampered
        (json.dumps(event, indent=2).encode(), headers),  # re-serialised
        fake.signed(event, webhook_id="WH0ANOTHER0HOOK"),
        fake.signed(event, cert_url="https://evil.example/v1/notifications/certs/CERT-1"),
    ]
    for forged_body, forged_headers in forgeries:
        response = client.post("/webhooks/paypal", data=forged_body, headers=forged_headers)
        assert response.status_code == 400
    fake.bundle = expired  # PayPal's host now serves an expired certificate
    fake.cert_id += "-expired"
    response = client.post(
        "/webhooks/paypal", data=fake.signed(event)[0], headers=fake.signed(event)[1]
    )
    assert response.status_code == 400
    assert db.session.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 0
    assert fresh(payment.public_id).status == "processing"

    fake.bundle = bundle
    assert post_webhook(client, body, headers)["duplicate"] is False
    stored = db.session.execute(select(WebhookEvent)).scalar_one()
    assert (stored.event_id, stored.event_type) == (event["id"], "PAYMENT.CAPTURE.COMPLETED")
    assert fresh(payment.public_id).status == "succeeded"


EVENTS = (
    "CHECKOUT.ORDER.APPROVED",
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.REFUNDED",
    "CUSTOMER.DISPUTE.CREATED",
)


def deliver_in_order(client: FlaskClient, fake: FakePayPal, order: tuple[str, ...]) -> Payment:
    payment = start_checkout()
    capture = fake.capture_now(payment.gateway_reference or "")
    fake.dashboard_refund(capture["id"], "10.00")
    fake.create_dispute(capture["id"])
    built = {}
    for kind in EVENTS:
        event = next(
            e
            for e in reversed(fake.events)
            if e["event_type"] == kind and _names(e, payment, capture["id"])
        )
        built[kind] = fake.signed(event)
    for kind in order:
        body, headers = built[kind]
        assert post_webhook(client, body, headers)["duplicate"] is False
        # PayPal delivers at least once: every event comes again.
        assert post_webhook(client, body, headers)["duplicate"] is True
    return fresh(payment.public_id)


def _names(event: dict[str, Any], payment: Payment, capture_id: str) -> bool:
    text = json.dumps(event["resource"])
    return (payment.gateway_reference or "") in text or capture_id in text


def final_state(payment: Payment) -> tuple[object, ...]:
    refunds_ = tuple((r.amount, r.status, r.requested_by) for r in payment.refunds)
    disputes = tuple((d.amount, d.status) for d in payment.disputes)
    return (
        payment.status,
        payment.order.status,
        payment.amount_refunded,
        refunds_,
        disputes,
        transitions(payment, "succeeded"),
    )


def check_every_ordering(client: FlaskClient, fake: FakePayPal, every: int = 1) -> None:
    finals = set()
    for order in itertools.islice(itertools.permutations(EVENTS), 0, None, every):
        payment = deliver_in_order(client, fake, order)
        state = final_state(payment)
        assert state == (
            "partially_refunded",
            "partially_refunded",
            1000,
            ((1000, "succeeded", "gateway"),),
            ((2500, "open"),),
            1,
        ), order
        finals.add(state)
        stored = db.session.execute(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.payment_id == payment.id)
        ).scalar_one()
        assert stored == len(EVENTS)
    assert len(finals) == 1


def test_every_ordering_of_the_webhooks_ends_in_the_same_state(
    client: FlaskClient, fake: FakePayPal
) -> None:
    check_every_ordering(client, fake)


@pytest.mark.postgres
def test_every_ordering_on_postgresql(
    pg_url: str, make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(SQLALCHEMY_DATABASE_URI=pg_url)
    with app.test_request_context():
        check_every_ordering(app.test_client(), fake)
        db.session.remove()


def test_a_resolved_dispute_is_tracked(client: FlaskClient, fake: FakePayPal) -> None:
    payment = start_checkout()
    capture = fake.capture_now(payment.gateway_reference or "")
    dispute = fake.create_dispute(capture["id"])
    post_webhook(client, *fake.signed(fake.events_of("CUSTOMER.DISPUTE.CREATED")[-1]))
    fake.resolve_dispute(dispute["dispute_id"], "RESOLVED_BUYER_FAVOUR")
    post_webhook(client, *fake.signed(fake.events_of("CUSTOMER.DISPUTE.RESOLVED")[-1]))
    row = db.session.execute(select(Dispute)).scalar_one()
    assert (row.gateway_dispute_id, row.status, row.gateway_status) == (
        dispute["dispute_id"],
        "lost",
        "RESOLVED",
    )


# ---------------------------------------------------------------- refunds


def test_refunds_carry_their_own_request_ids_and_a_409_is_retried(
    client: FlaskClient, fake: FakePayPal
) -> None:
    payment = start_checkout()
    approve_and_return(client, fake, payment)
    fake.queue_error(
        409,
        "RESOURCE_CONFLICT",
        "A previous request with this PayPal-Request-Id is in progress.",
        "PREVIOUS_REQUEST_IN_PROGRESS",
        path="/v2/payments/captures/",
    )
    first = refunds.create_refund(payment.public_id, 1000, "damaged", MERCHANT)
    second = refunds.create_refund(payment.public_id, 500, None, MERCHANT)
    calls = fake.calls("POST", "/v2/payments/captures/")
    assert [c.request_id for c in calls] == [
        first.idempotency_key,
        first.idempotency_key,  # the 409, retried with the same id
        second.idempotency_key,
    ]
    assert calls[0].json["custom_id"] == first.public_id
    assert len(fake.refunds) == 2
    payment = fresh(payment.public_id)
    assert [r.status for r in payment.refunds] == ["succeeded", "succeeded"]
    assert (payment.amount_refunded, payment.status) == (1500, "partially_refunded")


def test_a_refund_made_in_paypals_dashboard_is_imported(
    client: FlaskClient, fake: FakePayPal
) -> None:
    payment = start_checkout()
    approve_and_return(client, fake, payment)
    theirs = fake.dashboard_refund(fresh(payment.public_id).gateway_payment_id or "")
    post_webhook(client, *fake.signed(fake.events_of("PAYMENT.CAPTURE.REFUNDED")[-1]))
    refund = db.session.execute(
        select(Refund).where(Refund.gateway_refund_id == theirs["id"])
    ).scalar_one()
    assert (refund.amount, refund.status, refund.requested_by) == (2500, "succeeded", "gateway")
    assert fresh(payment.public_id).order.status == "refunded"


# ---------------------------------------------------------------- manual capture


def test_manual_capture_authorizes_then_captures_from_the_core(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(CAPTURE_METHOD="manual")
    with app.test_request_context():
        client = app.test_client()
        payment = start_checkout()
        approve_and_return(client, fake, payment)
        payment = fresh(payment.public_id)
        assert payment.status == "authorized"
        assert payment.capture_deadline is not None
        assert (payment.payment_method or {}).get("honor_period_ends")
        captured = refunds.capture_payment(payment.public_id, MERCHANT)
        assert captured.status == "succeeded"
        (call,) = fake.calls("POST", "/v2/payments/authorizations/")
        assert call.json["amount"] == {"currency_code": "USD", "value": "25.00"}
        db.session.remove()


def _authorized(app: Flask, fake: FakePayPal) -> Payment:
    client = app.test_client()
    payment = start_checkout()
    approve_and_return(client, fake, payment)
    payment = fresh(payment.public_id)
    assert payment.status == "authorized" and payment.order.stock_reserved
    return payment


def _outbox_types(payment: Payment) -> list[str]:
    return list(
        db.session.execute(
            select(OutboxEvent.type).where(OutboxEvent.payment_id == payment.public_id)
        ).scalars()
    )


def test_an_authorization_voided_at_paypal_cancels_the_payment_and_releases_stock(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    """#17: PAYMENT.AUTHORIZATION.VOIDED used to be recorded as stale news (the
    authorization stayed "authorized" and held its stock)."""
    app = make_paypal_app(CAPTURE_METHOD="manual")
    with app.test_request_context():
        client = app.test_client()
        payment = _authorized(app, fake)
        created = [e for e in fake.events if e["event_type"] == "PAYMENT.AUTHORIZATION.CREATED"]
        voided = fake.void_in_dashboard(payment.gateway_payment_id or "")
        # Twice, then the older CREATED event after it: one transition, still voided.
        for event in [voided, voided, *created]:
            post_webhook(client, *fake.signed(event))
        payment = fresh(payment.public_id)
        assert (payment.status, payment.order.status) == ("canceled", "canceled")
        assert payment.authorized_at is not None  # its authorization ended, not a checkout
        assert not payment.order.stock_reserved
        assert transitions(payment, "canceled") == 1
        types = _outbox_types(payment)
        assert types.count("payment.authorization_voided") == 1
        assert types.count("order.canceled") == 1
        # Nothing can be captured on a void: the core refuses before calling PayPal.
        with pytest.raises(InvalidState):
            refunds.capture_payment(payment.public_id, MERCHANT)
        assert not fake.captures
        db.session.remove()


def test_the_merchant_voids_an_authorization_from_kassa(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(CAPTURE_METHOD="manual")
    with app.test_request_context():
        payment = _authorized(app, fake)
        assert refunds.can_void(payment)
        voided = refunds.void_authorization(payment.public_id, MERCHANT)
        assert (voided.status, voided.order.status) == ("canceled", "canceled")
        assert not voided.order.stock_reserved
        (call,) = fake.calls(
            "POST", f"/v2/payments/authorizations/{payment.gateway_payment_id}/void"
        )
        assert call.request_id == f"kassa-void-{payment.gateway_payment_id}"
        assert fake.authorizations[payment.gateway_payment_id or ""]["status"] == "VOIDED"
        assert _outbox_types(voided).count("payment.authorization_voided") == 1
        # Its webhook arriving afterwards changes nothing more.
        voided_events = [
            e for e in fake.events if e["event_type"] == "PAYMENT.AUTHORIZATION.VOIDED"
        ]
        post_webhook(app.test_client(), *fake.signed(voided_events[-1]))
        assert transitions(fresh(payment.public_id), "canceled") == 1
        assert not refunds.can_void(fresh(payment.public_id))
        with pytest.raises(InvalidState):
            refunds.void_authorization(payment.public_id, MERCHANT)
        db.session.remove()


def test_an_authorization_that_lapsed_expires_the_payment_on_sync(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(CAPTURE_METHOD="manual")
    with app.test_request_context():
        payment = _authorized(app, fake)
        fake.lapse(payment.gateway_payment_id or "")
        refunds.sync_payment(payment.public_id, MERCHANT)
        payment = fresh(payment.public_id)
        assert (payment.status, payment.order.status) == ("expired", "expired")
        assert not payment.order.stock_reserved
        types = _outbox_types(payment)
        assert "payment.authorization_expired" in types and "order.expired" in types
        db.session.remove()


# ---------------------------------------------------------------- reconcile and expiry


def test_a_crash_after_paypal_captured_is_completed_by_reconcile(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(FAULT_POINT="after_gateway_return:raise", RECONCILE_GRACE_SECONDS=0)
    app.testing = False  # let the crash be a 500, as in production
    with app.test_request_context():
        client = app.test_client()
        payment = start_checkout()
        fake.approve(payment.gateway_reference or "")
        response = client.get(f"/checkout/return/{payment.public_id}")
        assert response.status_code == 500
        assert len(fake.captures) == 1  # PayPal captured ...
        assert fresh(payment.public_id).status == "processing"  # ... we never committed
        app.config["FAULT_POINT"] = None
        report = reconcile.reconcile()
        payment = fresh(payment.public_id)
        assert (payment.status, payment.order.status) == ("succeeded", "paid")
        assert report.changes
        assert len(fake.captures) == 1
        assert len(fake.calls("POST", f"/v2/checkout/orders/{payment.gateway_reference}/")) == 1
        db.session.remove()


def test_reconcile_applies_events_that_were_never_delivered(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(RECONCILE_GRACE_SECONDS=3600)  # only the events list can tell
    with app.test_request_context():
        payment = start_checkout()
        capture = fake.capture_now(payment.gateway_reference or "")
        fake.dashboard_refund(capture["id"], "5.00")
        report = reconcile.reconcile()
        assert report.events_new == len(fake.events)
        payment = fresh(payment.public_id)
        assert (payment.status, payment.amount_refunded) == ("partially_refunded", 500)
        again = reconcile.reconcile()
        assert again.events_new == 0
        db.session.remove()


def test_an_approval_never_captured_is_closed_by_expiry(
    client: FlaskClient, fake: FakePayPal
) -> None:
    payment = start_checkout()
    fake.approve(payment.gateway_reference or "")
    assert reconcile.expire_order(payment.order.id) is True
    payment = fresh(payment.public_id)
    assert (payment.status, payment.order.status) == ("expired", "expired")
    # The customer comes back later: the page reads the order, it never captures.
    client.get(f"/checkout/return/{payment.public_id}?token={payment.gateway_reference}")
    assert not fake.captures
    assert fresh(payment.public_id).status == "expired"


def test_sync_uses_the_order(client: FlaskClient, fake: FakePayPal) -> None:
    payment = start_checkout()
    fake.capture_now(payment.gateway_reference or "")
    synced = refunds.sync_payment(payment.public_id, MERCHANT)
    assert synced.status == "succeeded"


def test_paypal_is_active_only_with_all_three_settings(
    make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path
) -> None:
    config = paypal_config(fake, tmp_path / "root.pem", SANDBOX_ENABLED=True)
    assert "paypal" in make_app(**config).extensions["kassa_gateways"]
    for missing in ("PAYPAL_CLIENT_SECRET", "PAYPAL_WEBHOOK_ID"):
        app = make_app(**{**config, missing: None})
        assert "paypal" not in app.extensions["kassa_gateways"]


def test_the_live_api_in_debug_mode_stops_the_app(
    make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path
) -> None:
    config = paypal_config(fake, tmp_path / "root.pem", PAYPAL_API_BASE="https://api-m.paypal.com")
    with pytest.raises(RuntimeError, match="live PayPal API"):
        make_app(**config, DEBUG=True)


def test_a_create_lost_in_a_crash_is_resent_with_the_same_request_id(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(FAULT_POINT="after_gateway_checkout:raise", RECONCILE_GRACE_SECONDS=0)
    with app.test_request_context():
        with pytest.raises(RuntimeError, match="injected fault"):
            start_checkout()
        assert len(fake.orders) == 1  # PayPal made the order; we never stored its id
        payment = db.session.execute(select(Payment)).scalars().all()[-1]
        db.session.rollback()
        assert (payment.status, payment.gateway_reference) == ("created", None)
        app.config["FAULT_POINT"] = None
        reconcile.reconcile()
        payment = fresh(payment.public_id)
        assert payment.gateway_reference in fake.orders
        assert len(fake.orders) == 1
        ids = [c.request_id for c in fake.calls("POST", "/v2/checkout/orders")]
        assert ids == [payment.idempotency_key, payment.idempotency_key]
        db.session.remove()


def test_a_pending_refund_is_settled_by_reconcile(
    make_paypal_app: Callable[..., Flask], fake: FakePayPal
) -> None:
    app = make_paypal_app(RECONCILE_GRACE_SECONDS=0)
    with app.test_request_context():
        client = app.test_client()
        payment = start_checkout()
        approve_and_return(client, fake, payment)
        fake.refund_status = "PENDING"
        refund = refunds.create_refund(payment.public_id, 700, None, MERCHANT)
        assert refund.status == "pending"
        fake.set_refund_status(refund.gateway_refund_id or "", "COMPLETED")
        report = reconcile.reconcile()
        db.session.rollback()
        assert db.session.get(Refund, refund.id).status == "succeeded"  # type: ignore[union-attr]
        assert any(refund.public_id in line for line in report.changes)
        assert fake.calls("GET", f"/v2/payments/refunds/{refund.gateway_refund_id}")
        db.session.remove()
