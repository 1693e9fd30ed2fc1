"""Webhook events applied in batches (issue 21): one transaction for many events, each
still applied exactly once with its audit row, outbox row and receipt; a bad event in a
batch fails alone and the others are applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select, update

from app.extensions import db
from app.jobs import TASKS
from app.models import AuditEntry, Order, OutboxEvent, Payment, Receipt, WebhookEvent
from app.payments import events
from tests.integration.test_webhooks import start_purchase


class Collect:
    """A stand-in job runner that holds jobs until the test runs them (the seam the
    benchmarks use), so a whole group of events waits for one batch."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        self.jobs.append((name, args))

    def wait_idle(self, timeout: float = 10.0) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def run_all(self, app: Flask, skip: str = "") -> list[str]:
        ran = []
        while self.jobs:
            name, args = self.jobs.pop(0)
            if name == skip:
                continue
            with app.app_context():
                TASKS[name](*args)
            ran.append(name)
        return ran


def _stored_events(app: Flask, count: int) -> tuple[list[str], list[int], Collect]:
    """`count` purchases whose sandbox events are in the inbox, not yet applied."""
    payments, deliveries = [], []
    for _ in range(count):
        payment, sent = start_purchase(app)
        payments.append(payment.public_id)
        deliveries.extend(sent)
    collect = Collect()
    app.extensions["kassa_jobs"] = collect
    with app.test_request_context():
        for body, headers in deliveries:
            events.receive("sandbox", body, dict(headers))
    with app.app_context():
        ids = list(db.session.execute(select(WebhookEvent.id).order_by(WebhookEvent.id)).scalars())
    assert [n for n, _ in collect.jobs] == ["webhooks.process_batch"] * len(ids)
    collect.jobs.clear()  # the test runs the batch itself
    return payments, ids, collect


def _counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            "audit": db.session.execute(select(func.count(AuditEntry.id))).scalar_one(),
            "outbox": db.session.execute(select(func.count(OutboxEvent.id))).scalar_one(),
            "receipts": db.session.execute(select(func.count(Receipt.id))).scalar_one(),
        }


def test_a_batch_applies_each_event_once_with_its_audit_outbox_and_receipt(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(JOBS_EAGER=False)
    payments, ids, collect = _stored_events(app, 3)
    with app.app_context():
        assert events.process_batch(ids) == len(ids)
    # One relay run and one receipts job for the whole batch, after its commit.
    assert sorted(n for n, _ in collect.jobs) == ["outbox.relay", "receipts.orders_paid"]
    collect.run_all(app)
    with app.app_context():
        statuses = db.session.execute(
            select(Payment.status).where(Payment.public_id.in_(payments))
        ).scalars()
        assert set(statuses) == {"succeeded"}
        assert set(db.session.execute(select(Order.status)).scalars()) == {"paid"}
        rows = db.session.execute(select(WebhookEvent)).scalars().all()
        assert {r.status for r in rows} == {"processed"}
        assert all(r.payment_id is not None and r.attempts == 1 for r in rows)
        paid = db.session.execute(
            select(func.count(OutboxEvent.id)).where(OutboxEvent.type == "order.paid")
        ).scalar_one()
        assert paid == 3
        assert (
            db.session.execute(
                select(func.count(OutboxEvent.id)).where(OutboxEvent.dispatched_at.is_(None))
            ).scalar_one()
            == 0
        )
        sent = db.session.execute(select(Receipt.status, Receipt.kind)).all()
        assert sorted(sent) == [("sent", "order_paid")] * 3
        moves = db.session.execute(
            select(func.count(AuditEntry.id)).where(
                AuditEntry.action == "payment.status_changed",
                AuditEntry.to_state == "succeeded",
            )
        ).scalar_one()
        assert moves == 3
    eml = sorted(Path(app.instance_path, "outbox").glob("*.eml"))
    assert len(eml) == 3 and all(b"Receipt no." in p.read_bytes() for p in eml)
    before = _counts(app)
    # Run again (a redelivered job): nothing moves twice, nothing is sent twice.
    with app.app_context():
        events.process_batch(ids)
    collect.run_all(app)
    assert _counts(app) == before


def test_a_bad_event_fails_alone_and_the_rest_of_its_batch_is_applied(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(JOBS_EAGER=False)
    payments, ids, collect = _stored_events(app, 2)
    bad = ids[0]
    with app.app_context():
        db.session.execute(
            update(WebhookEvent).where(WebhookEvent.id == bad).values(payload="{not json")
        )
        db.session.commit()
        events.process_batch(ids)
    collect.run_all(app)
    with app.app_context():
        rows = {r.id: r for r in db.session.execute(select(WebhookEvent)).scalars()}
        assert rows[bad].status == "failed"
        assert rows[bad].attempts == 1 and "JSONDecodeError" in (rows[bad].last_error or "")
        assert rows[bad].next_attempt_at is not None  # the retry sweep takes it again
        assert all(r.status == "processed" for i, r in rows.items() if i != bad)
        statuses = dict(
            db.session.execute(
                select(Payment.public_id, Payment.status).where(Payment.public_id.in_(payments))
            ).all()
        )
        # The second purchase is paid; the first got its other event (the bad one was its
        # first), which its sandbox sends as succeeded too.
        assert statuses[payments[1]] == "succeeded"
        assert statuses[payments[0]] == "succeeded"
        # Nothing of the rolled-back batch was kept twice: one move each.
        moves = db.session.execute(
            select(AuditEntry.object_id, func.count())
            .where(
                AuditEntry.action == "payment.status_changed", AuditEntry.to_state == "succeeded"
            )
            .group_by(AuditEntry.object_id)
        ).all()
        assert sorted(n for _, n in moves) == [1, 1]
    # Retried while still broken, it fails again and counts the attempt; nothing else moves.
    before = _counts(app)
    with app.app_context():
        events.process_batch([bad])
        row = db.session.get(WebhookEvent, bad)
        assert row is not None and row.status == "failed" and row.attempts == 2
    assert _counts(app) == before
