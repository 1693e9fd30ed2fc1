"""A checkout's first transaction on PostgreSQL is one statement (app/payments/checkout.py,
_write_order_and_attempt); it must write exactly what the one-INSERT-per-row path writes
(the path SQLite takes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Order, OrderItem, Payment, Product
from app.payments import checkout, orders
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


@pytest.mark.postgres
def test_the_one_statement_checkout_writes_what_one_insert_per_row_writes(
    make_app: Callable[..., Flask], pg_url: str
) -> None:
    with make_app(SQLALCHEMY_DATABASE_URI=pg_url).app_context():
        limited = _stock("print-usd")
        assert limited is not None
        with unit_of_work():
            plan = orders.plan_order(ITEMS, " Ann@Example.com ", "Ann Lee")
            order = orders.write_order(plan, CUSTOMER)
            attempt = checkout._new_attempt(order, "sandbox", CUSTOMER)
        one_per_row = _written(order.id, attempt.id)
        with unit_of_work():
            plan = orders.plan_order(ITEMS, " Ann@Example.com ", "Ann Lee")
            order, attempt = checkout._write_order_and_attempt(plan, "sandbox", CUSTOMER)
        one_statement = _written(order.id, attempt.id)
        assert one_statement == one_per_row
        assert one_statement["order"]["customer_email"] == "ann@example.com"
        assert [i["quantity"] for i in one_statement["items"]] == [2, 1]
        assert one_statement["audit"][0]["details"] == {
            "total": 2 * 2500 + 6000,
            "currency": "USD",
            "items": {"tee-usd": 2, "print-usd": 1},
        }
        # Both reserved the limited print; the T-shirt's stock is unlimited.
        assert _stock("print-usd") == limited - 2
        # The values handed back are the rows written.
        written = db.session.get(Payment, attempt.id)
        assert written is not None and written.public_id == attempt.public_id
        assert (attempt.amount, attempt.currency) == (written.amount, written.currency)


@pytest.mark.postgres
def test_a_one_statement_checkout_out_of_stock_writes_nothing(
    make_app: Callable[..., Flask], pg_url: str
) -> None:
    with make_app(SQLALCHEMY_DATABASE_URI=pg_url).app_context():
        left = _stock("print-usd")
        assert left is not None
        counts = _row_counts()
        with pytest.raises(OutOfStock), unit_of_work():
            plan = orders.plan_order(
                [ItemRequest("tee-usd", 1), ItemRequest("print-usd", 99)], "bo@example.com", "Bo"
            )
            checkout._write_order_and_attempt(plan, "sandbox", CUSTOMER)
        assert _row_counts() == counts
        assert _stock("print-usd") == left


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
