"""The contract of app/payments/store.py, the core's fast paths, on SQLite and PostgreSQL:
each function writes the same rows whichever path it takes (on PostgreSQL a checkout's
first transaction is one statement; it must write exactly what the one-INSERT-per-row
path, the one SQLite takes, writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Order, OrderItem, Payment, Product, Receipt, WebhookEvent
from app.models.base import utcnow
from app.payments import audit, checkout, orders, store
from app.payments.audit import CUSTOMER
from app.payments.errors import OutOfStock
from app.payments.orders import ItemRequest
from app.payments.uow import unit_of_work

ITEMS = [ItemRequest("tee-usd", 2), ItemRequest("print-usd", 1)]
# Differ by nature between two writes: keys, public ids, clocks.
UNIQUE = {
    "id",
    "public_id",
    "order_id",
    "payment_id",
    "idempotency_key",
    "object_id",
    "created_at",
    "updated_at",
    "expires_at",
}


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in UNIQUE}


def _written(order_id: int, payment_id: int) -> dict[str, Any]:
    order = db.session.get(Order, order_id)
    payment = db.session.get(Payment, payment_id)
    assert order is not None and payment is not None
    assert payment.order_id == order.id
    assert payment.idempotency_key == f"kassa-checkout-{payment.public_id}"
    for moment in (order.created_at, order.expires_at, payment.created_at, payment.expires_at):
        assert isinstance(moment, datetime) and moment.tzinfo is not None
    assert payment.expires_at == order.expires_at
    items = db.session.scalars(
        select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.id)
    ).all()
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.order_id == order.id).order_by(AuditEntry.id)
    ).all()
    assert [e.object_id for e in entries] == [order.public_id, payment.public_id]
    assert [e.payment_id for e in entries] == [None, payment.id]
    return {
        "order": _row(order),
        "payment": _row(payment),
        "items": [_row(i) for i in items],
        "audit": [_row(e) for e in entries],
    }


def _row_counts() -> list[int]:
    return [db.session.query(m).count() for m in (Order, OrderItem, Payment, AuditEntry)]


def _stock(sku: str) -> int | None:
    return db.session.scalar(select(Product.stock).where(Product.sku == sku))


def _plan_checkout(items: list[ItemRequest], email: str, name: str) -> dict[str, Any]:
    """What create_checkout hands store.write_checkout, as keyword arguments."""
    plan = orders.plan_order(items, email, name, CUSTOMER)
    order = plan.values
    attempt = checkout._attempt_row(
        None,
        order["total_amount"],
        order["currency"],
        order["customer_email"],
        order["expires_at"],
        "sandbox",
    )
    return {
        "plan": plan,
        "order": order,
        "items": plan.item_rows,
        "payment": attempt,
        "audit": [plan.audit_row, checkout._created_audit_row(CUSTOMER, attempt)],
    }


def _write(planned: dict[str, Any], how: Callable[..., tuple[int, int]]) -> tuple[int, int]:
    ids = how(
        db.session.connection(),
        planned["order"],
        planned["items"],
        planned["payment"],
        planned["audit"],
    )
    orders.reserve(planned["plan"])
    return ids


@pytest.mark.postgres
def test_the_one_statement_checkout_writes_what_one_insert_per_row_writes(
    make_app: Callable[..., Flask], pg_url: str
) -> None:
    with make_app(SQLALCHEMY_DATABASE_URI=pg_url).app_context():
        limited = _stock("print-usd")
        assert limited is not None
        with unit_of_work():
            planned = _plan_checkout(ITEMS, " Ann@Example.com ", "Ann Lee")
            row_by_row = _written(*_write(planned, store._write_checkout_row_by_row))
        with unit_of_work():
            planned = _plan_checkout(ITEMS, " Ann@Example.com ", "Ann Lee")
            order_id, payment_id = _write(planned, store._write_checkout_in_one_statement)
        one_statement = _written(order_id, payment_id)
        assert one_statement == row_by_row
        assert one_statement["order"]["customer_email"] == "ann@example.com"
        assert [i["quantity"] for i in one_statement["items"]] == [2, 1]
        assert one_statement["audit"][0]["details"] == {
            "total": 2 * 2500 + 6000,
            "currency": "USD",
            "items": {"tee-usd": 2, "print-usd": 1},
        }
        # Both reserved the limited print; the T-shirt's stock is unlimited.
        assert _stock("print-usd") == limited - 2
        # The ids handed back are the rows written.
        written = db.session.get(Payment, payment_id)
        assert written is not None and written.public_id == planned["payment"]["public_id"]


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_a_checkout_out_of_stock_writes_nothing(
    db_backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    overrides = (
        {"SQLALCHEMY_DATABASE_URI": request.getfixturevalue("pg_url")}
        if db_backend == "postgres"
        else {}
    )
    with make_app(**overrides).app_context():
        left = _stock("print-usd")
        assert left is not None
        counts = _row_counts()
        with pytest.raises(OutOfStock), unit_of_work():
            planned = _plan_checkout(
                [ItemRequest("tee-usd", 1), ItemRequest("print-usd", 99)], "bo@example.com", "Bo"
            )
            store.write_checkout(
                planned["order"], planned["items"], planned["payment"], planned["audit"]
            )
            orders.reserve(planned["plan"])
        assert _row_counts() == counts
        assert _stock("print-usd") == left


def _backend_app(
    db_backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> Flask:
    if db_backend == "postgres":
        return make_app(SQLALCHEMY_DATABASE_URI=request.getfixturevalue("pg_url"))
    return make_app()


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_move_payment_is_a_compare_and_set_with_its_audit_row(
    db_backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    with _backend_app(db_backend, make_app, request).app_context():
        with unit_of_work():
            planned = _plan_checkout([ItemRequest("tee-usd", 1)], "mo@example.com", "Mo")
            order_id, payment_id = store.write_checkout(
                planned["order"], planned["items"], planned["payment"], planned["audit"]
            )
        entry = audit.row(
            CUSTOMER,
            "payment.status_changed",
            "payment",
            "",
            from_state="created",
            to_state="processing",
            details={"reason": "test"},
        )
        with unit_of_work():
            assert store.move_payment(
                payment_id, "created", "processing", {"gateway_reference": "ref_1"}, entry
            )
        with unit_of_work():  # no longer `created`: nothing written
            assert not store.move_payment(
                payment_id, "created", "processing", {"gateway_reference": "ref_2"}, entry
            )
        payment = db.session.get(Payment, payment_id)
        assert payment is not None
        assert (payment.status, payment.gateway_reference) == ("processing", "ref_1")
        moves = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "payment.status_changed")
        ).all()
        assert [(m.object_id, m.payment_id, m.order_id, m.details) for m in moves] == [
            (payment.public_id, payment_id, order_id, {"reason": "test"})
        ]
        with pytest.raises(ValueError, match="not payments columns"):
            store._move_and_audit_sql(("no_such_column",))


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_insert_or_ignore_and_the_inbox_inserter_store_a_key_once(
    db_backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    with _backend_app(db_backend, make_app, request).app_context():
        with unit_of_work():
            planned = _plan_checkout([ItemRequest("tee-usd", 1)], "ri@example.com", "Ri")
            order_id, _ = store.write_checkout(
                planned["order"], planned["items"], planned["payment"], planned["audit"]
            )
        receipt = {
            "kind": "order_paid",
            "subject_id": planned["order"]["public_id"],
            "order_id": order_id,
            "recipient": "ri@example.com",
            "status": "pending",
            "attempts": 0,
            "created_at": utcnow(),
        }
        with unit_of_work():
            first = store.insert_or_ignore(Receipt, receipt, conflict=("kind", "subject_id"))
            again = store.insert_or_ignore(Receipt, receipt, conflict=("kind", "subject_id"))
        assert first is not None and again is None
        assert db.session.scalar(select(Receipt.id)) == first.id

        def event(event_id: str) -> dict[str, Any]:
            return {
                "gateway": "sandbox",
                "event_id": event_id,
                "event_type": "t",
                "payload": "{}",
                "status": "received",
                "attempts": 0,
                "received_at": utcnow(),
            }

        insert_events = store.event_inserter(db.engine)
        stored = insert_events([event("evt_1"), event("evt_2")])
        assert sorted(e for _, _, e in stored) == ["evt_1", "evt_2"]
        # Committed by the inserter itself; a known (gateway, event_id) is skipped.
        assert [e for _, _, e in insert_events([event("evt_2"), event("evt_3")])] == ["evt_3"]
        ids = {e: i for i, _, e in stored}
        db.session.rollback()
        rows = db.session.execute(select(WebhookEvent.id, WebhookEvent.event_id)).all()
        assert {e: i for i, e in rows if e in ids} == ids and len(rows) == 3


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_opening_the_checkout_records_the_same_trail_on_both_databases(
    backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    # PostgreSQL moves the attempt and writes its audit entry in one statement.
    overrides = (
        {"SQLALCHEMY_DATABASE_URI": request.getfixturevalue("pg_url")}
        if backend == "postgres"
        else {}
    )
    with make_app(**overrides).test_request_context():
        payment = checkout.create_checkout(
            [ItemRequest("tee-usd", 1)], "cy@example.com", "Cy", "sandbox", CUSTOMER
        )
        assert payment.status == "processing"
        assert payment.gateway_reference and payment.checkout_url
        assert payment.updated_at >= payment.created_at
        trail = db.session.scalars(
            select(AuditEntry).where(AuditEntry.payment_id == payment.id).order_by(AuditEntry.id)
        ).all()
        assert [(e.action, e.from_state, e.to_state) for e in trail] == [
            ("payment.created", None, "created"),
            ("payment.status_changed", "created", "processing"),
        ]
        opened = trail[1]
        assert (opened.actor_type, opened.object_type, opened.object_id, opened.order_id) == (
            "customer",
            "payment",
            payment.public_id,
            payment.order_id,
        )
        assert opened.details == {
            "reason": "checkout opened",
            "reference": payment.gateway_reference,
        }


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_mark_dispatched_numbers_only_the_rows_given(
    db_backend: str, make_app: Callable[..., Flask], request: pytest.FixtureRequest
) -> None:
    from app.models import OutboxEvent

    with _backend_app(db_backend, make_app, request).app_context():
        with unit_of_work():
            for n in range(3):
                db.session.add(
                    OutboxEvent(
                        public_id=f"evt_md_{n}",
                        type="order.paid",
                        subject_type="order",
                        subject_id=f"ord_md_{n}",
                        data={"n": n},
                    )
                )
        rows = db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        ids = [r.id for r in rows]
        db.session.rollback()
        at = utcnow()
        with unit_of_work():
            store.mark_dispatched([(ids[0], 41), (ids[2], 42)], at)
        got = [
            (r.seq, r.dispatched_at)
            for r in db.session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        ]
        assert got == [(41, at), (None, None), (42, at)]
        with unit_of_work():
            store.mark_dispatched([], at)  # nothing to do: no statement
