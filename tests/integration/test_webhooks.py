"""POST /webhooks/sandbox: verify first, store once, answer fast; bad signatures store nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.gateways.sandbox import SIGNATURE_HEADER, sign
from app.models import Order, Payment, WebhookEvent
from app.payments.audit import CUSTOMER
from app.payments.checkout import create_checkout
from app.payments.orders import ItemRequest

SECRET = "whsec_sandbox_test_secret"


def start_purchase(
    app: Flask, scenario: str = "succeed"
) -> tuple[Payment, list[tuple[bytes, dict[str, str]]]]:
    """Create a checkout and complete it at the sandbox; return the events it would send."""
    with app.test_request_context():
        payment = create_checkout(
            [ItemRequest("tee-usd", 1)], "cy@example.com", "Cy", "sandbox", CUSTOMER
        )
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        processor.complete(payment.gateway_reference, scenario)
        events = list(processor.undelivered)
        processor.undelivered.clear()
        return payment, events


def inbox_count(app: Flask) -> int:
    with app.app_context():
        return db.session.execute(select(func.count(WebhookEvent.id))).scalar_one()


def payment_status(app: Flask, public_id: str) -> str:
    with app.app_context():
        return db.session.execute(
            select(Payment.status).where(Payment.public_id == public_id)
        ).scalar_one()


def test_signed_events_are_stored_once_and_applied(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment, events = start_purchase(app)
    client = app.test_client()
    for body, headers in events:
        first = client.post("/webhooks/sandbox", data=body, headers=headers)
        assert first.status_code == 200 and first.json == {"received": True, "duplicate": False}
        again = client.post("/webhooks/sandbox", data=body, headers=headers)
        assert again.status_code == 200 and again.json["duplicate"] is True
    assert inbox_count(app) == 2
    assert payment_status(app, payment.public_id) == "succeeded"
    with app.app_context():
        order = db.session.execute(select(Order)).scalar_one()
        assert order.status == "paid"
        stored = db.session.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars().all()
        assert [e.status for e in stored] == ["processed", "processed"]
        assert all(e.payment_id == order.payments[0].id for e in stored)


def _tamper(body: bytes) -> bytes:
    event = json.loads(body)
    event["data"]["object"]["amount"] = 1
    return json.dumps(event, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "attack",
    [
        "tampered body",
        "missing header",
        "wrong secret",
        "replayed (old timestamp)",
        "future timestamp",
        "garbage header",
        "re-serialised body",
    ],
)
def test_bad_signatures_answer_400_and_store_nothing(
    make_app: Callable[..., Flask], attack: str
) -> None:
    app = make_app()
    payment, events = start_purchase(app)
    body, headers = events[-1]
    headers = dict(headers)
    if attack == "tampered body":
        body = _tamper(body)
    elif attack == "missing header":
        del headers[SIGNATURE_HEADER]
    elif attack == "wrong secret":
        headers[SIGNATURE_HEADER] = sign("whsec_someone_else", body)
    elif attack == "replayed (old timestamp)":
        headers[SIGNATURE_HEADER] = sign(SECRET, body, int(time.time()) - 301)
    elif attack == "future timestamp":
        headers[SIGNATURE_HEADER] = sign(SECRET, body, int(time.time()) + 301)
    elif attack == "garbage header":
        headers[SIGNATURE_HEADER] = "t=abc,v1=zzz"
    elif attack == "re-serialised body":
        body = json.dumps(json.loads(body), indent=2).encode()
    response = app.test_client().post("/webhooks/sandbox", data=body, headers=headers)
    assert response.status_code == 400
    assert inbox_count(app) == 0
    assert payment_status(app, payment.public_id) == "processing"


def test_unknown_gateway_is_404(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert app.test_client().post("/webhooks/paypal", data=b"{}").status_code == 404


def test_out_of_order_delivery_ends_in_the_same_state(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment, events = start_purchase(app)
    client = app.test_client()
    for body, headers in reversed(events):  # succeeded first, then processing
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
    assert payment_status(app, payment.public_id) == "succeeded"


def test_forged_event_for_another_session_changes_nothing(make_app: Callable[..., Flask]) -> None:
    """A validly signed event whose ids match no payment of ours is stored, not applied."""
    app = make_app()
    payment, events = start_purchase(app, "succeed")
    body, _ = events[-1]
    event = json.loads(body)
    event["id"] = "evt_forged"
    event["data"]["object"]["id"] = "sbx_cs_someone_else"
    event["data"]["object"]["metadata"] = {"payment_id": "pay_unknown"}
    forged = json.dumps(event).encode()
    client = app.test_client()
    response = client.post(
        "/webhooks/sandbox", data=forged, headers={SIGNATURE_HEADER: sign(SECRET, forged)}
    )
    assert response.status_code == 200
    assert payment_status(app, payment.public_id) == "processing"
    with app.app_context():
        row = db.session.execute(select(WebhookEvent)).scalar_one()
        assert row.outcome == "no matching payment"


def test_amount_mismatch_is_flagged_not_paid(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment, events = start_purchase(app, "succeed")
    body, _ = events[-1]
    event = json.loads(body)
    event["data"]["object"]["amount"] = 1  # signed by the gateway, but not what we charged
    forged = json.dumps(event).encode()
    app.test_client().post(
        "/webhooks/sandbox", data=forged, headers={SIGNATURE_HEADER: sign(SECRET, forged)}
    )
    assert payment_status(app, payment.public_id) == "processing"
    with app.app_context():
        from app.models import AuditEntry

        flagged = db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "payment.mismatch")
        ).scalar_one()
        assert flagged.details["amount"] == {"ours": 2500, "gateway": 1}
