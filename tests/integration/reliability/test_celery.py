"""A real Celery worker (subprocess, solo pool) on Redis and on RabbitMQ runs the webhook
and receipt jobs; a worker killed in the middle of a task leaves it to the next worker,
which completes it exactly once (acks late, reject on worker lost)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Payment, Receipt, WebhookEvent
from tests.integration.reliability.conftest import Worker, base_env, post_events
from tests.integration.test_webhooks import start_purchase

pytestmark = [pytest.mark.postgres, pytest.mark.celery]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _state(app: Flask, payment_id: int) -> tuple[str, list[str], list[tuple[str, int]]]:
    with app.app_context():
        status = db.session.get(Payment, payment_id).status  # type: ignore[union-attr]
        receipts = list(db.session.execute(select(Receipt.status)).scalars())
        inbox = [
            (e.status, e.attempts)
            for e in db.session.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars()
        ]
        db.session.rollback()
        return status, receipts, inbox


def _apps(
    make_pg_app: Callable[..., Flask], broker_url: str, tmp_path: Path
) -> tuple[Flask, dict[str, str]]:
    queue = f"kassa-test-{secrets.token_hex(4)}"  # never share a queue with another run
    app = make_pg_app(CELERY_BROKER_URL=broker_url, CELERY_QUEUE=queue, JOBS_EAGER=False)
    env = base_env(
        app.config["SQLALCHEMY_DATABASE_URI"],
        tmp_path / "worker-instance",
        CELERY_BROKER_URL=broker_url,
        CELERY_QUEUE=queue,
    )
    return app, env


def test_worker_processes_webhook_and_receipt_jobs(
    make_pg_app: Callable[..., Flask],
    broker_url: str,
    tmp_path: Path,
    start_worker: Callable[..., Worker],
) -> None:
    app, env = _apps(make_pg_app, broker_url, tmp_path)
    start_worker(env)
    payment, events = start_purchase(app)
    post_events(app, events)  # stored and committed here; the worker applies them

    _wait(
        lambda: _state(app, payment.id)[:2] == ("succeeded", ["sent"]),
        30,
        "the worker to apply the events and send the receipt",
    )
    inbox = _state(app, payment.id)[2]
    assert inbox == [("processed", 1), ("processed", 1)]
    outbox = list((tmp_path / "worker-instance" / "outbox").glob("*.eml"))
    assert len(outbox) == 1 and "Your receipt" in outbox[0].read_text()


def test_worker_killed_mid_task_then_task_completes_once(
    make_pg_app: Callable[..., Flask],
    broker_url: str,
    tmp_path: Path,
    start_worker: Callable[..., Worker],
) -> None:
    app, env = _apps(make_pg_app, broker_url, tmp_path)
    marker = tmp_path / "in-task"
    # Redis hands an unacknowledged task to another worker after the visibility timeout.
    env["CELERY_VISIBILITY_TIMEOUT"] = "2"
    first = start_worker(
        {**env, "KASSA_FAULT_POINT": "webhook_process:sleep=60", "KASSA_FAULT_MARKER": str(marker)}
    )
    payment, events = start_purchase(app)
    succeeded = [e for e in events if b'"payment.succeeded"' in e[0]]
    post_events(app, succeeded)

    _wait(marker.exists, 30, "the first worker to be inside the task")
    first.kill()  # mid-task, inside the inbox transaction, before its commit
    status, receipts, inbox = _state(app, payment.id)
    assert status == "processing" and receipts == [] and inbox == [("received", 0)]

    time.sleep(2.5)  # past Redis's visibility timeout
    start_worker(env)
    _wait(
        lambda: _state(app, payment.id)[:2] == ("succeeded", ["sent"]),
        40,
        "the second worker to complete the task",
    )
    time.sleep(0.5)  # give a (wrong) second run the chance to show up
    status, receipts, inbox = _state(app, payment.id)
    assert inbox == [("processed", 1)]
    with app.app_context():
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
    assert len(list((tmp_path / "worker-instance" / "outbox").glob("*.eml"))) == 1
