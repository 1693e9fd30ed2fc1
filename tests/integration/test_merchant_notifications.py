"""Owners and admins are mailed once about a dispute, a failed refund, a dead webhook."""

from __future__ import annotations

import email
import email.policy
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Flask
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Dispute, Order, OrderItem, Payment, Refund, User, WebhookEvent
from app.notifications import sweep


def _mails(app: Flask) -> list[email.message.EmailMessage]:
    outbox = Path(app.instance_path) / "outbox"
    return [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for f in sorted(outbox.glob("notice-*.eml"))
    ]


def _world(app: Flask) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        for role, mail in (
            ("owner", "boss@shop.test"),
            ("admin", "ops@shop.test"),
            ("viewer", "v@shop.test"),
        ):
            db.session.add(
                User(
                    email=mail,
                    role=role,
                    password_hash=generate_password_hash("x" * 16, method="pbkdf2:sha256:1000"),
                    session_token=secrets.token_hex(16),
                )
            )
        order = Order(
            currency="USD",
            total_amount=2500,
            customer_email="ann@example.com",
            customer_name="Ann",
            status="paid",
            stock_reserved=False,
            expires_at=now,
        )
        order.items.append(
            OrderItem(sku="tee-usd", name="Kassa T-shirt", unit_amount=2500, quantity=1)
        )
        payment = Payment(
            order=order,
            gateway="stripe",
            status="succeeded",
            amount=2500,
            currency="USD",
            idempotency_key=secrets.token_hex(8),
            customer_email="ann@example.com",
        )
        db.session.add_all(
            [
                payment,
                Dispute(
                    payment=payment,
                    gateway="stripe",
                    gateway_dispute_id="dp_123",
                    amount=2500,
                    currency="USD",
                    reason="fraudulent",
                    evidence_due_by=now + timedelta(days=7),
                ),
                Refund(
                    payment=payment,
                    gateway="stripe",
                    amount=1000,
                    currency="USD",
                    status="failed",
                    failure_reason="card expired",
                    idempotency_key=secrets.token_hex(8),
                    requested_by="user:1",
                ),
                WebhookEvent(
                    gateway="razorpay",
                    event_id="evt_dead_1",
                    event_type="payment.captured",
                    payload="{}",
                    status="dead",
                    attempts=8,
                    last_error="KeyError: 'notes'",
                ),
            ]
        )
        db.session.commit()


def test_each_notice_is_mailed_once_to_owners_and_admins(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    _world(app)
    with app.app_context():
        assert sweep() == 3
        assert sweep() == 0  # the next sweep finds nothing new
    mails = _mails(app)
    assert len(mails) == 3
    for mail in mails:
        assert mail["To"] == "demo@kassa.localhost, boss@shop.test, ops@shop.test"  # no viewer
        assert mail.get_body(preferencelist=("html",)) is not None
    texts = {m["Subject"]: m.get_body(preferencelist=("plain",)).get_content() for m in mails}  # type: ignore[union-attr]
    dispute = next(t for s, t in texts.items() if "Dispute opened: $25.00" in s)
    due = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    assert f"Evidence is due by {due}" in dispute and "/dashboard/payments/pay_" in dispute
    refund = next(t for s, t in texts.items() if "Refund failed: $10.00" in s)
    assert "card expired" in refund
    dead = next(t for s, t in texts.items() if "Webhook event given up on" in s)
    assert (
        "evt_dead_1" in dead and "reprocess" in dead and "/dashboard/webhooks?status=dead" in dead
    )
