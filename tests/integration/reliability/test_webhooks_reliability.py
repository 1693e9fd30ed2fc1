"""Webhook intake under duplication and loss: 1,000 concurrent deliveries of one event, 10%
of events dropped, processing failures retried with backoff, then dead-lettered."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Order, Payment, Receipt, SandboxSession, WebhookEvent
from app.payments import events
from app.payments.audit import CUSTOMER, Actor
from app.payments.checkout import create_checkout
from app.payments.orders import ItemRequest
from app.payments.reconcile import reconcile
from tests.integration.reliability.conftest import count, post_events
from tests.integration.test_webhooks import start_purchase

pytestmark = pytest.mark.postgres


def test_a_thousand_deliveries_from_fifty_threads_apply_once(
    serve: Callable[..., object], pg_url: str
) -> None:
    server = serve(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SANDBOX_DELIVER_WEBHOOKS=False,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 20, "max_overflow": 10},
    )
    app: Flask = server.app  # type: ignore[attr-defined]
    payment, sent = start_purchase(app)
    succeeded = [(b, h) for b, h in sent if b'"payment.succeeded"' in b]
    assert len(succeeded) == 1
    body, headers = succeeded[0]
    url = f"{server.url}/webhooks/sandbox"  # type: ignore[attr-defined]
    statuses: list[int] = []
    slow: list[float] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        with requests.Session() as http:
            for _ in range(n):
                started = time.monotonic()
                response = http.post(url, data=body, headers=headers, timeout=30)
                with lock:
                    statuses.append(response.status_code)
                    slow.append(time.monotonic() - started)

    threads = [threading.Thread(target=deliver, args=(20,)) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.extensions["kassa_jobs"].wait_idle()

    assert statuses.count(200) == 1000
    with app.app_context():
        assert count(app, WebhookEvent) == 1
        transitions = (
            db.session.execute(
                select(AuditEntry).where(
                    AuditEntry.payment_id == payment.id,
                    AuditEntry.action == "payment.status_changed",
                    AuditEntry.to_state == "succeeded",
                )
            )
            .scalars()
            .all()
        )
        assert len(transitions) == 1
        assert db.session.execute(select(Order.status)).scalar_one() == "paid"
        receipts = db.session.execute(select(Receipt)).scalars().all()
        assert [(r.kind, r.status) for r in receipts] == [("order_paid", "sent")]
    assert len(list((Path(app.instance_path) / "outbox").glob("*.eml"))) == 1
    slow.sort()
    assert slow[len(slow) // 2] < 1.0, f"median answer {slow[len(slow) // 2]:.3f}s"


def test_ten_percent_of_webhooks_lost_for_200_payments(make_pg_app: Callable[..., Flask]) -> None:
    app = make_pg_app()
    rng = random.Random(7)
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    expected: dict[str, str] = {}

    def buy(i: int) -> None:
        # Many customers at once (and a faster test: the database, not Python, is the wait).
        with app.test_request_context():
            payment = create_checkout(
                [ItemRequest("tee-usd", 1)], f"c{i}@example.com", "C", "sandbox", CUSTOMER
            )
            scenario = "decline" if i % 10 == 3 else "succeed"
            processor.complete(payment.gateway_reference, scenario)
            expected[payment.public_id] = "failed" if scenario == "decline" else "succeeded"
            db.session.remove()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(buy, range(200)))
    all_events = list(processor.undelivered)
    processor.undelivered.clear()
    dropped = set(rng.sample(range(len(all_events)), len(all_events) // 10))
    delivered = [e for i, e in enumerate(all_events) if i not in dropped]

    def deliver(chunk: list[tuple[bytes, dict[str, str]]]) -> None:
        post_events(app, chunk)
        with app.app_context():
            db.session.remove()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deliver, [delivered[i::8] for i in range(8)]))

    def wrong() -> dict[str, str]:
        with app.app_context():
            rows = db.session.execute(select(Payment.public_id, Payment.status)).all()
            db.session.rollback()
        return {pid: status for pid, status in rows if expected[pid] != status}

    assert len(wrong()) > 0  # the losses are visible before reconciling

    with app.test_request_context():
        report = reconcile()
    assert not report.errors
    assert wrong() == {}
    with app.app_context():
        orders = dict(db.session.execute(select(Order.public_id, Order.status)).all())
        paid = sum(1 for s in orders.values() if s == "paid")
        assert paid == sum(1 for s in expected.values() if s == "succeeded") == 180
        assert sum(1 for s in orders.values() if s == "failed") == 20
        assert count(app, Receipt, Receipt.kind == "order_paid") == 180
    assert count(app, SandboxSession) == 200
    assert len(report.changes) >= len(dropped) // 2


def test_failing_event_backs_off_then_goes_dead_and_can_be_reprocessed(
    make_pg_app: Callable[..., Flask],
) -> None:
    app = make_pg_app(
        WEBHOOK_MAX_ATTEMPTS=3, WEBHOOK_RETRY_BASE_SECONDS=0, FAULT_POINT="webhook_process:raise"
    )
    payment, sent = start_purchase(app)
    succeeded = [e for e in sent if b'"payment.succeeded"' in e[0]]
    post_events(app, succeeded)  # answered 200: stored, even though processing fails

    def row() -> WebhookEvent:
        with app.app_context():
            event = db.session.execute(select(WebhookEvent)).scalar_one()
            db.session.expunge(event)
            return event

    first = row()
    assert (first.status, first.attempts) == ("failed", 1)
    assert first.next_attempt_at is not None and "injected fault" in (first.last_error or "")

    with app.app_context():
        assert events.retry_due() == 1  # backoff passed (base 0): retried
        assert events.retry_due() == 1  # third failure → dead
        assert events.retry_due() == 0  # dead events are not retried by themselves
    dead = row()
    assert (dead.status, dead.attempts) == ("dead", 3)
    with app.app_context():
        assert db.session.get(Payment, payment.id).status == "processing"

    with app.app_context():  # what the merchant's inbox shows
        assert [e.id for e in events.inbox(status="dead")] == [dead.id]
        assert events.counts_by_status() == {"dead": 1}

    # The merchant fixes the cause and reprocesses it.
    app.config["FAULT_POINT"] = None
    with app.app_context():
        assert events.reprocess(dead.id, Actor("user", "owner@example.com")) == "applied"
        assert events.counts_by_status() == {"processed": 1}
        assert (
            db.session.execute(
                select(AuditEntry.actor_id).where(
                    AuditEntry.action == "webhook.reprocess_requested"
                )
            ).scalar_one()
            == "owner@example.com"
        )
    done = row()
    assert done.status == "processed" and done.last_error is None
    with app.app_context():
        assert db.session.get(Payment, payment.id).status == "succeeded"
