"""A process killed after the gateway acted and before our commit: reconciliation completes
the record, and the gateway holds exactly one object (session, capture, refund)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Order, Payment, Refund, SandboxRefund, SandboxSession
from app.payments.reconcile import reconcile
from tests.integration.reliability.conftest import count, post_events, run_in_subprocess
from tests.integration.test_webhooks import start_purchase

pytestmark = pytest.mark.postgres


def _payment(app: Flask, **filters: object) -> Payment:
    with app.app_context():
        payment = db.session.execute(select(Payment).filter_by(**filters)).scalar_one()
        db.session.expunge(payment)
        return payment


def _reconcile(app: Flask) -> list[str]:
    with app.test_request_context():
        report = reconcile()
    assert not report.errors, report.errors
    return report.changes


def test_crash_after_checkout_creation(make_pg_app: Callable[..., Flask]) -> None:
    app = make_pg_app()
    result = run_in_subprocess(app, "checkout", "tee-usd", FAULT_POINT="after_gateway_checkout")
    assert result.returncode == 1 and "survived" not in result.stdout, result.stderr
    # The gateway made a session; we never recorded it.
    assert count(app, SandboxSession) == 1
    stuck = _payment(app)
    assert stuck.status == "created" and stuck.gateway_reference is None

    changes = _reconcile(app)

    payment = _payment(app)
    assert payment.status == "processing"
    with app.app_context():
        session_id = db.session.execute(select(SandboxSession.id)).scalar_one()
    assert payment.gateway_reference == session_id  # the same session, not a second one
    assert count(app, SandboxSession) == 1
    assert any(payment.public_id in c and "created → processing" in c for c in changes)
    # And the customer can still pay it.
    with app.app_context():
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        processor.complete(session_id, "succeed")
        events = list(processor.undelivered)
    post_events(app, events)
    assert _payment(app).status == "succeeded"
    assert count(app, SandboxSession) == 1


def test_crash_after_capture(make_pg_app: Callable[..., Flask]) -> None:
    app = make_pg_app(CAPTURE_METHOD="manual")
    payment, events = start_purchase(app)
    post_events(app, events)
    assert _payment(app, id=payment.id).status == "authorized"

    result = run_in_subprocess(
        app, "capture", payment.public_id, FAULT_POINT="after_gateway_capture"
    )
    assert result.returncode == 1, result.stderr
    assert _payment(app, id=payment.id).status == "authorized"  # the capture went unrecorded
    with app.app_context():
        assert db.session.get(SandboxSession, payment.gateway_reference).status == "succeeded"

    _reconcile(app)

    assert _payment(app, id=payment.id).status == "succeeded"
    with app.app_context():
        assert db.session.execute(select(Order.status)).scalar_one() == "paid"
    assert count(app, SandboxSession) == 1
    # A second run finds nothing to do.
    assert _reconcile(app) == []


def test_crash_after_refund(make_pg_app: Callable[..., Flask]) -> None:
    app = make_pg_app()
    payment, events = start_purchase(app)
    post_events(app, events)
    assert _payment(app, id=payment.id).status == "succeeded"

    result = run_in_subprocess(app, "refund", payment.public_id, FAULT_POINT="after_gateway_refund")
    assert result.returncode == 1, result.stderr
    assert count(app, SandboxRefund) == 1
    with app.app_context():
        refund = db.session.execute(select(Refund)).scalar_one()
        assert refund.status == "pending" and refund.gateway_refund_id is None
        db.session.rollback()

    changes = _reconcile(app)

    assert count(app, SandboxRefund) == 1  # re-sent with the same key: no second refund
    with app.app_context():
        refund = db.session.execute(select(Refund)).scalar_one()
        sandbox_refund = db.session.execute(select(SandboxRefund)).scalar_one()
        assert refund.status == "succeeded"
        assert refund.gateway_refund_id == sandbox_refund.id
        assert db.session.execute(select(Order.status)).scalar_one() == "refunded"
    assert _payment(app, id=payment.id).status == "refunded"
    assert any("pending → succeeded" in c for c in changes)
