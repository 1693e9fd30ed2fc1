"""Expiry (gateway session closed, order expired, stock back), the in-process scheduler,
`flask reconcile`, and receipts over real SMTP (exactly one under concurrent jobs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.jobs.scheduler import Scheduler
from app.models import Order, Payment, Product, Receipt, SandboxSession
from app.models.base import utcnow
from app.payments import receipts
from app.payments.audit import CUSTOMER
from app.payments.checkout import create_checkout
from app.payments.orders import ItemRequest
from app.payments.reconcile import expire_overdue
from tests.integration.reliability.conftest import post_events
from tests.integration.test_webhooks import start_purchase


class Bought:
    def __init__(self, payment: Payment) -> None:
        self.id = payment.id
        self.gateway_reference = payment.gateway_reference


def _buy_prints(app: Flask, quantity: int = 2) -> Bought:
    with app.test_request_context():
        return Bought(
            create_checkout(
                [ItemRequest("print-usd", quantity)], "p@example.com", "P", "sandbox", CUSTOMER
            )
        )


def _make_overdue(app: Flask) -> None:
    with app.app_context():
        past = utcnow() - timedelta(minutes=1)
        db.session.execute(update(Order).values(expires_at=past))
        db.session.commit()


def _stock(app: Flask) -> int:
    with app.app_context():
        value = db.session.execute(
            select(Product.stock).where(Product.sku == "print-usd")
        ).scalar_one()
        db.session.rollback()
        return int(value)


def test_overdue_checkout_is_expired_at_the_gateway_and_stock_released(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    payment = _buy_prints(app)
    assert _stock(app) == 3
    with app.app_context():
        assert expire_overdue() == 0  # not overdue yet: untouched
    _make_overdue(app)
    with app.app_context():
        assert expire_overdue() == 1
        order = db.session.execute(select(Order)).scalar_one()
        assert order.status == "expired"
        assert db.session.get(Payment, payment.id).status == "expired"  # type: ignore[union-attr]
        assert db.session.get(SandboxSession, payment.gateway_reference).status == "expired"
        assert expire_overdue() == 0  # idempotent
    assert _stock(app) == 5
    # The customer can no longer pay the closed session.
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    with app.app_context():
        processor.complete(payment.gateway_reference, "succeed")
        assert db.session.get(SandboxSession, payment.gateway_reference).status == "expired"


def test_paid_just_before_expiry_is_not_expired(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment = _buy_prints(app)
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    with app.app_context():
        processor.complete(payment.gateway_reference, "succeed")  # its webhooks never arrive
    _make_overdue(app)
    with app.app_context():
        expire_overdue()
        assert db.session.execute(select(Order.status)).scalar_one() == "paid"
        assert db.session.get(Payment, payment.id).status == "succeeded"  # type: ignore[union-attr]
    assert _stock(app) == 3


def test_in_process_scheduler_runs_periodic_jobs(make_app: Callable[..., Flask]) -> None:
    app = make_app(JOBS_EAGER=False)
    _buy_prints(app)
    _make_overdue(app)
    scheduler = Scheduler(app, {"checkouts.expire": 0.2, "webhooks.retry_due": 0.2}, tick=0.05)
    scheduler.next_run = {name: 0.0 for name in scheduler.schedule}
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while _stock(app) != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.stop()
        app.extensions["kassa_jobs"].wait_idle()
    assert _stock(app) == 5
    with app.app_context():
        assert db.session.execute(select(Order.status)).scalar_one() == "expired"


def test_scheduler_starts_with_the_first_request_only_outside_tests(
    make_app: Callable[..., Flask],
) -> None:
    assert "kassa_scheduler" not in make_app().extensions  # TESTING: never
    app = make_app(
        TESTING=False,
        SCHEDULER_ENABLED=True,
        RECONCILE_INTERVAL_SECONDS=3600,
        EXPIRE_INTERVAL_SECONDS=3600,
        WEBHOOK_RETRY_INTERVAL_SECONDS=3600,
        RECEIPT_RESEND_INTERVAL_SECONDS=3600,
    )
    scheduler = app.extensions["kassa_scheduler"]
    assert not scheduler.running  # CLI commands: never
    app.test_client().get("/")
    assert scheduler.running
    scheduler.stop()
    assert (
        "kassa_scheduler"
        not in make_app(TESTING=False, CELERY_BROKER_URL="redis://127.0.0.1:1/0").extensions
    )  # beat's job


def test_flask_reconcile_command_reports_what_it_changed(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment, _events = start_purchase(app)  # paid at the sandbox, webhooks lost
    result = app.test_cli_runner().invoke(args=["reconcile", "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "Checked 1 payment(s)" in result.output
    assert (
        f"payment {payment.public_id}: processing → succeeded (order pending → paid)"
        in result.output
    )
    again = app.test_cli_runner().invoke(args=["reconcile", "--grace", "0"])
    assert "0 change(s)" in again.output


class _Sink:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Sink]]:
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    from tests.integration.conftest import free_port

    sink = _Sink()
    port = free_port()
    controller = controller_mod.Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, sink
    controller.stop()


def test_receipts_go_out_over_smtp_exactly_once(
    make_app: Callable[..., Flask], smtp_server: tuple[int, _Sink]
) -> None:
    port, sink = smtp_server
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_USE_TLS=False,
        MAIL_DEFAULT_SENDER="shop@example.com",
    )
    _payment, events = start_purchase(app)
    post_events(app, events + events)  # every event twice
    with app.app_context():
        order_id = db.session.execute(select(Order.id)).scalar_one()
        receipt_id = db.session.execute(select(Receipt.id)).scalar_one()
        db.session.rollback()

    def again() -> None:
        with app.app_context():
            receipts.order_paid(order_id)
            receipts.send(receipt_id)

    threads = [threading.Thread(target=again) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        assert receipts.resend_pending() == 0
    assert len(sink.messages) == 1
    message = message_from_bytes(sink.messages[0])
    assert message["To"] == "cy@example.com" and message["From"] == "shop@example.com"
    assert "Your receipt" in message["Subject"]
    assert not list((Path(app.instance_path) / "outbox").glob("*.eml"))


def test_celery_app_settings_and_beat_schedule(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        CELERY_BROKER_URL="redis://127.0.0.1:1/0", CELERY_QUEUE="q1", EXPIRE_INTERVAL_SECONDS=60
    )
    celery = app.extensions["kassa_celery"]
    conf = celery.conf
    assert (
        conf.task_acks_late,
        conf.task_reject_on_worker_lost,
        conf.worker_prefetch_multiplier,
    ) == (True, True, 1)
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_default_queue == "q1"
    schedule = {entry["task"]: entry["schedule"] for entry in conf.beat_schedule.values()}
    assert set(schedule) == {
        "payments.reconcile",
        "checkouts.expire",
        "webhooks.retry_due",
        "receipts.resend_pending",
        "api.purge_idempotency_keys",
        "notifications.sweep",
        "outgoing.sweep",
    }
    assert schedule["checkouts.expire"] == timedelta(seconds=60)
    from app import jobs

    celery.loader.import_default_modules()
    assert set(jobs.TASKS) <= set(celery.tasks)
