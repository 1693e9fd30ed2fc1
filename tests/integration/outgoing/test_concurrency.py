"""On PostgreSQL: relays and sweepers running at once in several threads (as several
workers and instances do) hand out stream numbers in order and send every delivery once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import OutboxEvent, WebhookDelivery
from app.payments import outbox
from app.payments.audit import Actor
from app.payments.outgoing import delivery, endpoints
from app.payments.uow import unit_of_work
from tests.integration.outgoing.receiver import Receiver

pytestmark = pytest.mark.postgres
EVENTS = 120


def test_parallel_sweepers_send_each_event_once(
    hook_app: Callable[..., Flask], pg_url: str, receiver: Receiver
) -> None:
    app = hook_app(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10, "max_overflow": 0},
        JOBS_EAGER=False,  # the relay's delivery jobs run on the pool, beside the sweepers
        OUTGOING_WEBHOOK_BATCH=10,
        OUTBOX_RELAY_BATCH=7,
    )
    with app.test_request_context():
        _, secret = endpoints.create_endpoint(receiver.url, None, "", Actor("user", "1"))
        receiver.secrets = [secret]
        with unit_of_work():
            for n in range(EVENTS):
                outbox.insert_rows(
                    [
                        outbox.row(
                            outbox.EventType.ORDER_PAID,
                            {"id": f"ord_{n}", "object": "order", "status": "paid"},
                            order_id=f"ord_{n}",
                            payment_id=None,
                        )
                    ]
                )
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def sweep() -> None:
        with app.app_context():
            try:
                barrier.wait()
                delivery.sweep()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    app.extensions["kassa_jobs"].wait_idle(30)
    with app.app_context():
        problems = db.session.execute(
            select(WebhookDelivery.status, WebhookDelivery.last_error).where(
                WebhookDelivery.status != "delivered"
            )
        ).all()
    assert problems == []
    got = receiver.wait_for(EVENTS)
    assert len(got) == EVENTS  # nothing twice
    assert len({r.webhook_id for r in got}) == EVENTS
    assert all(r.verified_with == [0] for r in got)
    with app.app_context():
        seqs = db.session.execute(select(OutboxEvent.seq).order_by(OutboxEvent.id)).scalars().all()
        assert sorted(seqs) == list(range(1, EVENTS + 1))  # no gaps, no repeats
        assert (
            db.session.execute(
                select(func.count()).where(WebhookDelivery.status == "delivered")
            ).scalar_one()
            == EVENTS
        )
