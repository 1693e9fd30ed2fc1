"""Reconciliation with Stripe (issue 7): webhooks that never arrived are picked up from
Stripe's event list, each applied once; a pending refund whose last webhook was lost is
settled by retrieving it. Real SDK over HTTP against the fake Stripe API."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.gateways.stripe import HANDLED_EVENTS
from app.models import AuditEntry, WebhookEvent
from app.payments import refunds as refund_service
from app.payments.audit import Actor
from app.payments.reconcile import reconcile
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.stripe_support import (  # noqa: F401  (fixtures)
    Shop,
    make_stripe_app,
)


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _emitted(fake: FakeStripe, since: int) -> list[dict[str, Any]]:
    return [_public(e) for e in fake.events[since:]]


def _inbox(app: Flask) -> dict[str, tuple[int, str]]:
    """event id → (rows with that id, status)."""
    with app.app_context():
        rows = db.session.execute(
            select(WebhookEvent.event_id, func.count(), func.max(WebhookEvent.status))
            .where(WebhookEvent.gateway == "stripe")
            .group_by(WebhookEvent.event_id)
        ).all()
        db.session.rollback()
    return {event_id: (n, status) for event_id, n, status in rows}


def _run(app: Flask) -> Any:
    with app.test_request_context():
        return reconcile()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "sqlite":
        return {}
    return {"SQLALCHEMY_DATABASE_URI": request.getfixturevalue("pg_url")}


def test_webhooks_never_delivered_are_applied_once_by_reconcile(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe, db_settings: dict[str, Any]
) -> None:
    # A long grace period: payments are not re-fetched, only the event list can fix them.
    app = make_stripe_app(RECONCILE_GRACE_SECONDS=3600, **db_settings)
    with app.test_client() as client:
        shop = Shop(app, client, fake_stripe)
        paid, lost_paid, lost_async, lost_expiry = (shop.buy("tee-usd")[1] for _ in range(4))

        mark = len(fake_stripe.events)
        fake_stripe.complete_session(paid)
        fake_stripe.complete_session(lost_async, "unpaid")
        delivered = _emitted(fake_stripe, mark)
        shop.deliver_all(delivered)  # these arrive...

        mark = len(fake_stripe.events)
        fake_stripe.complete_session(lost_paid)  # ...these never do
        fake_stripe.async_result(lost_async, succeeded=True)
        fake_stripe.expire_session(lost_expiry)
        fake_stripe.create_dispute(fake_stripe.sessions[paid]["payment_intent"])
        lost = [e for e in _emitted(fake_stripe, mark) if e["type"] in HANDLED_EVENTS]
        ids = {
            s: fake_stripe.sessions[s]["client_reference_id"]
            for s in (paid, lost_paid, lost_async, lost_expiry)
        }

        assert shop.payment(ids[lost_paid]).status == "processing"
        assert shop.payment(ids[lost_async]).status == "processing"
        audit_before = shop.audit_rows()

        report = _run(app)

        assert report.errors == []
        handled = [e for e in _emitted(fake_stripe, 0) if e["type"] in HANDLED_EVENTS]
        assert (report.events_listed, report.events_new) == (len(handled), len(lost))
        states = {
            s: (p.status, p.order.status, len(p.disputes))
            for s, p in ((s, shop.payment(ids[s])) for s in ids)
        }
        assert states == {
            paid: ("succeeded", "paid", 1),
            lost_paid: ("succeeded", "paid", 0),
            lost_async: ("succeeded", "paid", 0),
            lost_expiry: ("expired", "expired", 0),
        }
        assert shop.payment(ids[lost_paid]).payment_method == {"brand": "visa", "last4": "4242"}
        # Every handled event is in the inbox exactly once, processed, whichever way it came
        # (beside the delivered ones of types we only store).
        expected = {e["id"]: (1, "processed") for e in [*delivered, *handled]}
        assert _inbox(app) == expected
        assert shop.audit_rows() > audit_before

        # Again, through the CLI: everything listed is a duplicate; nothing changes.
        audit_after = shop.audit_rows()
        result = app.test_cli_runner().invoke(args=["reconcile"])
        assert result.exit_code == 0, result.output
        assert f"0 new of {len(handled)} listed event(s); 0 change(s), 0 error(s)" in result.output
        assert shop.audit_rows() == audit_after
        assert _inbox(app) == expected


def test_a_pending_refund_whose_webhook_was_lost_is_settled_by_retrieving_it(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    app = make_stripe_app(RECONCILE_GRACE_SECONDS=0)
    with app.test_client() as client:
        shop = Shop(app, client, fake_stripe)
        payment_id, session_id = shop.buy("tee-usd")
        mark = len(fake_stripe.events)
        fake_stripe.complete_session(session_id)
        shop.deliver_all(_emitted(fake_stripe, mark))

        fake_stripe.refund_status = "pending"
        mark = len(fake_stripe.events)
        with app.test_request_context():
            refund = refund_service.create_refund(
                payment_id, 500, None, Actor("user", "owner@example.com")
            )
            refund_id = refund.public_id
        shop.deliver_all(_emitted(fake_stripe, mark))  # refund.created, charge.refunded
        [stripe_refund] = fake_stripe.refunds
        fake_stripe.set_refund_status(stripe_refund, "succeeded")
        # Its refund.updated was lost days ago: too old for the event list to find it.
        fake_stripe.events[-1]["created"] = int(time.time()) - 5 * 86400
        payment = shop.payment(payment_id)
        assert ([r.status for r in payment.refunds], payment.amount_refunded) == (["pending"], 0)

        report = _run(app)

        assert report.errors == [] and report.events_new == 0
        assert f"refund {refund_id}: pending → succeeded" in report.changes
        payment = shop.payment(payment_id)
        assert ([r.status for r in payment.refunds], payment.amount_refunded, payment.status) == (
            ["succeeded"],
            500,
            "partially_refunded",
        )
        assert fake_stripe.calls("GET", f"/v1/refunds/{stripe_refund}")
        assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1  # asked, never re-sent

        audit_rows = shop.count(AuditEntry)
        again = _run(app)
        assert (again.changes, again.errors, again.checked_refunds) == ([], [], 0)
        assert shop.count(AuditEntry) == audit_rows
