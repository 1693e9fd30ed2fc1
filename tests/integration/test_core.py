"""The core against a real database: stock under concurrency, refunds, migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEntry, Order, Payment, Product, Refund
from app.payments import refunds
from app.payments.audit import CUSTOMER, Actor
from app.payments.errors import InvalidState, OutOfStock, RefundExceedsRemaining
from app.payments.orders import ItemRequest, create_order
from app.payments.uow import unit_of_work
from tests.integration.test_webhooks import start_purchase

MERCHANT = Actor("user", "1")


def deliver(app: Flask, events: list[tuple[bytes, dict[str, str]]]) -> None:
    client = app.test_client()
    for body, headers in events:
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200


def paid_payment(app: Flask) -> str:
    payment, events = start_purchase(app)
    deliver(app, events)
    return payment.public_id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_schema_matches_models(
    backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    """Models and migrations never drift apart (autogenerate finds nothing to do)."""
    overrides = {}
    if backend == "postgres":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("pg_url")
    app = make_app(**overrides)
    with app.app_context(), db.engine.connect() as conn:
        compare_type = app.extensions["migrate"].configure_args["compare_type"]
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": compare_type}), db.metadata
        )
        assert diff == []
        if backend == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


@pytest.mark.postgres
def test_twenty_buyers_for_five_units(make_app: Callable[..., Flask], pg_url: str) -> None:
    app = make_app(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 25, "max_overflow": 0},
    )
    barrier = threading.Barrier(20)
    results: list[str] = []

    def buy(n: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                with unit_of_work():
                    create_order(
                        [ItemRequest("print-usd", 1)], f"b{n}@example.com", "Buyer", CUSTOMER
                    )
                results.append("ok")
            except OutOfStock:
                results.append("sold out")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=buy, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 5 and results.count("sold out") == 15
    with app.app_context():
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 0
        )
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 5


def test_quantities_and_prices_come_from_the_catalog(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with app.app_context():
        with unit_of_work():
            order = create_order([ItemRequest("print-usd", 2)], "d@example.com", "Di", CUSTOMER)
        assert order.total_amount == 12000 and order.currency == "USD"
        assert order.items[0].unit_amount == 6000
        with pytest.raises(OutOfStock), unit_of_work():
            create_order([ItemRequest("print-usd", 4)], "d@example.com", "Di", CUSTOMER)
        # The failed attempt rolled back whole: stock and orders as before.
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 3
        )
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_partial_and_full_refunds_never_exceed_the_payment(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment_id = paid_payment(app)
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    with app.test_request_context():
        first = refunds.create_refund(payment_id, 1000, "damaged", MERCHANT)
        assert first.status == "pending" and first.gateway_refund_id
        with pytest.raises(RefundExceedsRemaining):
            refunds.create_refund(payment_id, 1501, None, MERCHANT)
        deliver(app, processor.undelivered)
        processor.undelivered.clear()
        db.session.rollback()
        payment = db.session.execute(
            select(Payment).where(Payment.public_id == payment_id)
        ).scalar_one()
        assert payment.status == "partially_refunded" and payment.amount_refunded == 1000
        assert payment.order.status == "partially_refunded"
        rest = refunds.create_refund(payment_id, None, None, MERCHANT)  # the rest
        assert rest.amount == 1500
        deliver(app, processor.undelivered)
        db.session.rollback()
        payment = db.session.execute(
            select(Payment).where(Payment.public_id == payment_id)
        ).scalar_one()
        assert payment.status == "refunded" and payment.amount_refunded == 2500
        assert payment.order.status == "refunded"
        with pytest.raises(InvalidState):
            refunds.create_refund(payment_id, 1, None, MERCHANT)


def test_same_idempotency_key_refunds_once(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment_id = paid_payment(app)
    with app.test_request_context():
        a = refunds.create_refund(payment_id, 500, None, MERCHANT, idempotency_key="form-123")
        b = refunds.create_refund(payment_id, 500, None, MERCHANT, idempotency_key="form-123")
        assert a.id == b.id
        assert db.session.execute(select(func.count(Refund.id))).scalar_one() == 1


def test_every_change_is_audited_with_its_actor(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    payment_id = paid_payment(app)
    with app.test_request_context():
        refunds.create_refund(payment_id, 100, "goodwill", MERCHANT)
        entries = db.session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        actions = [(e.actor_type, e.action) for e in entries]
        assert ("customer", "order.created") in actions
        assert ("gateway", "payment.status_changed") in actions
        assert ("user", "refund.requested") in actions
        assert ("customer", "customer.created") in actions  # the buyer was new
        # Everything about the purchase is filed under its order; the customer is not.
        assert all(e.order_id is not None for e in entries if e.object_type != "customer")


def test_retry_never_opens_a_second_checkout_for_a_paid_order(
    make_app: Callable[..., Flask],
) -> None:
    """Paid in another tab, webhook not here yet: "try again" must not let them pay twice."""
    from app.gateways.sandbox import SandboxSession
    from app.payments.checkout import retry_checkout

    app = make_app()
    payment, _events = start_purchase(app, "succeed")  # paid at the gateway, no webhook yet
    with app.test_request_context():
        order_id = db.session.get(Payment, payment.id).order.public_id
        with pytest.raises(InvalidState, match="paid meanwhile"):
            retry_checkout(order_id, "sandbox", CUSTOMER)
        db.session.rollback()
        assert db.session.execute(select(func.count(SandboxSession.id))).scalar_one() == 1
        order = db.session.execute(select(Order)).scalar_one()
        assert order.status == "paid"  # the retry's sync found the payment


def test_a_second_captured_attempt_is_flagged(make_app: Callable[..., Flask]) -> None:
    """Money wins, but two captures on one order must be visible to the merchant."""
    from app.gateways.base import PaymentRef, PaymentUpdate
    from app.models import PaymentStatus
    from app.payments.checkout import new_attempt
    from app.payments.updates import apply_update_now

    app = make_app()
    first = paid_payment(app)
    with app.test_request_context():
        order = (
            db.session.execute(select(Payment).where(Payment.public_id == first)).scalar_one().order
        )
        with unit_of_work():
            second_id = new_attempt(order, "sandbox", CUSTOMER)
        second = db.session.get(Payment, second_id)
        assert second is not None
        apply_update_now(
            "sandbox",
            PaymentUpdate(
                PaymentRef(payment_id=second.public_id),
                PaymentStatus.SUCCEEDED,
                amount=2500,
                currency="USD",
            ),
            CUSTOMER,
            source="test",
        )
        flags = (
            db.session.execute(select(AuditEntry).where(AuditEntry.action == "order.paid_twice"))
            .scalars()
            .all()
        )
        assert len(flags) == 1 and flags[0].details == {"payment": second.public_id}


def test_customer_emails_are_stored_lower_cased(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with app.app_context(), unit_of_work():
        order = create_order([ItemRequest("tee-usd", 1)], " Raj@Example.COM ", "Raj", CUSTOMER)
        assert order.customer_email == "raj@example.com"


class _WebhookFirst:
    """The sandbox, except that the payment's webhook is applied before create_checkout
    returns: the checkout then records the session on an attempt that already moved."""

    def __init__(self, inner: Any, status: str) -> None:
        self.inner, self.status = inner, status

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_checkout(self, request: Any) -> Any:
        from app.gateways.base import PaymentRef, PaymentUpdate
        from app.models import PaymentStatus
        from app.payments.audit import gateway_actor
        from app.payments.updates import apply_update_now

        session = self.inner.create_checkout(request)
        apply_update_now(
            "sandbox",
            PaymentUpdate(
                PaymentRef(payment_id=request.payment_id),
                PaymentStatus(self.status),
                amount=2500,
                currency="USD",
            ),
            gateway_actor("sandbox", "evt_early"),
            source="test",
        )
        return session


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("early", [None, "succeeded", "failed"])
def test_checkout_records_its_session_whatever_the_webhook_did_first(
    backend: str, early: str | None, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    """The session's reference and URL are always recorded; the opening never drags a
    payment that a webhook already moved back to processing."""
    from app.payments.checkout import create_checkout

    overrides = {}
    if backend == "postgres":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("pg_url")
    app = make_app(**overrides)
    gateways = app.extensions["kassa_gateways"]
    if early:
        gateways["sandbox"] = _WebhookFirst(gateways["sandbox"], early)
    with app.test_request_context():
        returned = create_checkout(
            [ItemRequest("tee-usd", 1)], "a@example.com", "A", "sandbox", CUSTOMER
        )
        assert returned.checkout_url
        db.session.rollback()
        payment = db.session.execute(select(Payment)).scalar_one()
        assert payment.gateway_reference and payment.checkout_url == returned.checkout_url
        assert payment.status == (early or "processing")
        moves = db.session.execute(
            select(
                AuditEntry.actor_type,
                AuditEntry.action,
                AuditEntry.from_state,
                AuditEntry.to_state,
                AuditEntry.order_id,
            )
            .where(AuditEntry.payment_id == payment.id)
            .order_by(AuditEntry.id)
        ).all()
        opened = ("customer", "payment.status_changed", "created", "processing", payment.order_id)
        if early:
            assert opened not in moves
            assert (
                "gateway",
                "payment.status_changed",
                "created",
                early,
                payment.order_id,
            ) in moves
        else:
            assert moves[-1] == opened
