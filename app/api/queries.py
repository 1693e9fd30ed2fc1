"""Read-only lookups for the API (lists with filters and keyset pagination, timelines).

Nothing here changes state; state changes go through app/payments.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from app.api.errors import ApiError
from app.crypto import email_hash
from app.extensions import db
from app.inputs import row_id
from app.models import AuditEntry, Customer, Order, Payment, Product, Refund, WebhookEvent
from app.payments.errors import NotFound
from app.presentation import status_condition


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Any]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        if version != "v1" or not value.isascii() or not value.isdigit():
            raise ValueError(cursor)
        if not row_id(int(value)):  # beyond a 64-bit id: no row could follow it
            raise ValueError(cursor)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid_cursor() from None


def _invalid_cursor() -> ApiError:
    return ApiError(
        400,
        "validation_error",
        "The cursor is not valid.",
        [{"field": "cursor", "in": "query", "message": "use next_cursor from the previous page"}],
    )


def decode_id_cursor(cursor: str | None) -> int | None:
    """A cursor that is a row id (the delivery log's next_cursor); 400 when it is not one."""
    if not cursor:
        return None
    if cursor.isascii() and cursor.isdigit() and row_id(int(cursor)):
        return int(cursor)
    raise _invalid_cursor()


def _page(stmt: Select[Any], model: Any, limit: int, cursor: str | None) -> Page:
    # Newest first, keyset on the primary key: stable while rows are being added.
    if cursor:
        stmt = stmt.where(model.id < decode_cursor(cursor))
    rows = db.session.execute(stmt.order_by(model.id.desc()).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)


def active_products() -> Sequence[Product]:
    return (
        db.session.execute(
            select(Product)
            .where(Product.active.is_(True), Product.listed.is_(True))
            .order_by(Product.id)
        )
        .scalars()
        .all()
    )


def _created(
    stmt: Select[Any], model: Any, after: datetime | None, before: datetime | None
) -> Select[Any]:
    if after is not None:
        stmt = stmt.where(model.created_at >= after)
    if before is not None:
        stmt = stmt.where(model.created_at < before)
    return stmt


def list_orders(
    *,
    status: str | None,
    email: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page:
    stmt = select(Order)
    if status:
        stmt = stmt.where(Order.status == status)
    if email:
        # Exact match through the blind index (the email is encrypted, app/crypto.py).
        stmt = stmt.where(Order.customer_email_hash == email_hash(email))
    return _page(_created(stmt, Order, created_after, created_before), Order, limit, cursor)


def list_payments(
    *,
    status: str | None,
    gateway: str | None,
    currency: str | None,
    email: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page:
    stmt = select(Payment)
    if status:
        stmt = stmt.where(status_condition(status))
    if gateway:
        stmt = stmt.where(Payment.gateway == gateway)
    if currency:
        stmt = stmt.where(Payment.currency == currency.upper())
    if email:
        stmt = stmt.where(Payment.customer_email_hash == email_hash(email))
    return _page(_created(stmt, Payment, created_after, created_before), Payment, limit, cursor)


def list_customers(*, email: str | None, limit: int, cursor: str | None) -> Page:
    """Customers newest first with their saved methods, keyset like the other lists."""
    stmt = select(Customer).options(selectinload(Customer.methods))
    if email:
        # Exact match through the lookup hash (the email is encrypted).
        stmt = stmt.where(Customer.email_hash == email_hash(email))
    return _page(stmt, Customer, limit, cursor)


def get_refund(refund_public_id: str) -> Refund:
    refund = db.session.execute(
        select(Refund).where(Refund.public_id == refund_public_id)
    ).scalar_one_or_none()
    if refund is None:
        raise NotFound("No such refund.")
    return refund


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    source: str
    at: datetime
    type: str
    actor: str | None
    from_state: str | None
    to_state: str | None
    details: dict[str, Any] | None


def payment_timeline(payment: Payment) -> list[TimelineEntry]:
    """Audit entries and gateway events of one payment, oldest first."""
    entries = [
        TimelineEntry(
            "audit",
            e.created_at,
            e.action,
            f"{e.actor_type}:{e.actor_id}" if e.actor_id else e.actor_type,
            e.from_state,
            e.to_state,
            e.details,
        )
        for e in db.session.execute(
            select(AuditEntry).where(AuditEntry.payment_id == payment.id).order_by(AuditEntry.id)
        ).scalars()
    ]
    entries += [
        TimelineEntry(
            "gateway",
            e.received_at,
            e.event_type,
            f"gateway:{e.gateway}",
            None,
            None,
            {
                "event_id": e.event_id,
                "status": e.status,
                "outcome": e.outcome,
                "attempts": e.attempts,
            },
        )
        for e in db.session.execute(
            select(WebhookEvent)
            .where(WebhookEvent.payment_id == payment.id)
            .order_by(WebhookEvent.id)
        ).scalars()
    ]
    return sorted(entries, key=lambda e: e.at)
