"""The transactional outbox: what merchants' systems and screens are told, and when.

Every change they care about writes one OutboxEvent in the same transaction as the change
(emit(), called by the transition functions). Nothing is published from a request: after
the commit the relay job takes the new rows in order, gives each the next stream sequence
number, fans it out into one delivery per subscribed endpoint and publishes it to the live
streams (app/live). A crash before the relay runs loses nothing: the periodic sweep relays
whatever is still undispatched.

Rows are relayed under one lock (PostgreSQL: an advisory transaction lock; SQLite writes
are serialised anyway), so sequence numbers are handed out in commit order of the relay:
a stream that has seen number N has seen, or can still read, everything before it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, select, text

from app import jobs, live
from app.extensions import db
from app.models import (
    DeliveryStatus,
    Dispute,
    Order,
    OutboxEvent,
    Payment,
    Refund,
    Subscription,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.models.base import public_id, utcnow
from app.payments import faults, store
from app.payments.uow import unit_of_work

log = logging.getLogger(__name__)

# An arbitrary constant: the relay's PostgreSQL advisory lock.
RELAY_LOCK = 0x6B617373  # "kass"
RELAY_BATCH = 500


class EventType(StrEnum):
    ORDER_PAID = "order.paid"
    ORDER_EXPIRED = "order.expired"
    ORDER_CANCELED = "order.canceled"
    ORDER_FULFILLED = "order.fulfilled"
    ORDER_FULFILLMENT_CANCELED = "order.fulfillment_canceled"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_FAILED = "payment.failed"
    # An authorization ended unpaid: voided (by the merchant or the gateway), or lapsed.
    PAYMENT_AUTHORIZATION_VOIDED = "payment.authorization_voided"
    PAYMENT_AUTHORIZATION_EXPIRED = "payment.authorization_expired"
    PAYMENT_REQUIRES_ACTION = "payment.requires_action"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    DISPUTE_CREATED = "dispute.created"
    DISPUTE_CLOSED = "dispute.closed"
    CUSTOMER_CREATED = "customer.created"  # matched by a new email at checkout
    SUBSCRIPTION_ACTIVATED = "subscription.activated"  # first paid (or trial) period
    SUBSCRIPTION_UPDATED = "subscription.updated"  # a scheduled end set or lifted, a new period
    SUBSCRIPTION_PAST_DUE = "subscription.past_due"  # a renewal failed; the gateway retries
    SUBSCRIPTION_UNPAID = "subscription.unpaid"  # retries used up (Razorpay: halted)
    SUBSCRIPTION_PAUSED = "subscription.paused"
    SUBSCRIPTION_CANCELED = "subscription.canceled"  # ended
    # An endpoint was disabled (410, or failing for days); streamed to managers only.
    ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    # Sent to one endpoint when the merchant asks ("send test event"); never streamed.
    ENDPOINT_TEST = "webhook_endpoint.test"


# What an endpoint may subscribe to (the test event goes to whoever asked for it).
SUBSCRIBABLE = tuple(t.value for t in EventType if t is not EventType.ENDPOINT_TEST)


# --------------------------------------------------------------------------- payloads


def order_data(order: Order) -> dict[str, Any]:
    return {
        "id": order.public_id,
        "object": "order",
        "status": order.status,
        "fulfillment_status": order.fulfillment_status,
        "total_amount": order.total_amount,
        "currency": order.currency,
    }


def payment_data(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.public_id,
        "object": "payment",
        "order_id": payment.order.public_id,
        "status": payment.status,
        "amount": payment.amount,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
        "gateway": payment.gateway,
        "failure_code": payment.failure_code,
    }


def refund_data(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.public_id,
        "object": "refund",
        "payment_id": refund.payment.public_id,
        "order_id": refund.payment.order.public_id,
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
    }


def customer_data(customer_public_id: str, created_at: datetime) -> dict[str, Any]:
    """Thin, like the others, and without the email or name (the outbox is stored
    unencrypted; GET /api/v1/customers/{id} answers them)."""
    return {"id": customer_public_id, "object": "customer", "created_at": created_at.isoformat()}


def endpoint_data(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.public_id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
    }


def dispute_data(dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.gateway_dispute_id,
        "object": "dispute",
        "payment_id": dispute.payment.public_id,
        "order_id": dispute.payment.order.public_id,
        "status": dispute.status,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "reason": dispute.reason,
    }


def subscription_data(sub: Subscription) -> dict[str, Any]:
    def at(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": sub.public_id,
        "object": "subscription",
        "status": sub.status,
        "plan_id": sub.plan.public_id,
        "gateway": sub.gateway,
        "customer_email": sub.customer_email,
        "current_period_start": at(sub.current_period_start),
        "current_period_end": at(sub.current_period_end),
        "cancel_at": at(sub.cancel_at),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": at(sub.canceled_at),
        "ended_at": at(sub.ended_at),
        "trial_end": at(sub.trial_end),
        "next_payment_attempt": at(sub.next_payment_attempt),
    }


# --------------------------------------------------------------------------- writing


def emit(
    event_type: EventType,
    subject: Order | Payment | Refund | Dispute | WebhookEndpoint | Subscription,
) -> OutboxEvent:
    """Add the outbox row for `subject`'s change to the caller's transaction; the relay
    is enqueued to run after its commit."""
    if isinstance(subject, Order):
        data, order_id = order_data(subject), subject.public_id
        # The attempt the order follows (its captured one, else its latest): the payment
        # page that shows it updates too.
        followed = next((p for p in subject.payments if p.amount_captured), subject.latest_payment)
        payment_id = followed.public_id if followed is not None else None
    elif isinstance(subject, Payment):
        data = payment_data(subject)
        order_id, payment_id = data["order_id"], subject.public_id
    elif isinstance(subject, Refund):
        data = refund_data(subject)
        order_id, payment_id = data["order_id"], data["payment_id"]
    elif isinstance(subject, WebhookEndpoint):
        data, order_id, payment_id = endpoint_data(subject), None, None
    elif isinstance(subject, Subscription):
        data, order_id, payment_id = subscription_data(subject), None, None
    else:
        data = dispute_data(subject)
        order_id, payment_id = data["order_id"], data["payment_id"]
    row = OutboxEvent(
        public_id=public_id("evt"),
        type=str(event_type),
        subject_type=data["object"],
        subject_id=data["id"],
        order_id=order_id,
        payment_id=payment_id,
        data=data,
        created_at=utcnow(),
    )
    db.session.add(row)
    jobs.enqueue_once("outbox.relay")
    return row


def row(
    event_type: EventType,
    data: dict[str, Any],
    *,
    order_id: str | None,
    payment_id: str | None,
    endpoint_id: int | None = None,
) -> dict[str, Any]:
    """An outbox_events row as values, for code that writes rows rather than ORM objects
    (the store's one-statement paths); insert_rows() or the caller's statement writes it,
    and the caller enqueues the relay with jobs.enqueue_once("outbox.relay")."""
    return {
        "public_id": public_id("evt"),
        "type": str(event_type),
        "subject_type": data["object"],
        "subject_id": data["id"],
        "order_id": order_id,
        "payment_id": payment_id,
        "endpoint_id": endpoint_id,
        "data": data,
        "created_at": utcnow(),
        "seq": None,
        "dispatched_at": None,
    }


def insert_rows(rows: list[dict[str, Any]]) -> None:
    if rows:
        db.session.connection().execute(insert(OutboxEvent.__table__), rows)
        jobs.enqueue_once("outbox.relay")


# --------------------------------------------------------------------------- the relay


def _take_relay_lock() -> None:
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK})


def relay_batch(limit: int = RELAY_BATCH) -> list[live.Message]:
    """Dispatch up to `limit` undispatched rows in one transaction; returns what to
    publish (after that transaction's commit)."""
    with unit_of_work():
        _take_relay_lock()
        events = (
            db.session.execute(
                select(OutboxEvent)
                .where(OutboxEvent.dispatched_at.is_(None))
                .order_by(OutboxEvent.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        if not events:
            return []
        faults.hit("outbox_relay")
        endpoints = db.session.execute(select(WebhookEndpoint)).scalars().all()
        seq = latest_seq()
        now = utcnow()
        deliveries: list[dict[str, Any]] = []
        messages: list[live.Message] = []
        due: list[int] = []
        numbered: list[tuple[int, int]] = []
        for event in events:
            seq += 1
            numbered.append((event.id, seq))
            for endpoint in endpoints:
                if event.endpoint_id is not None:
                    if endpoint.id != event.endpoint_id:
                        continue
                elif not endpoint.wants(event.type):
                    continue
                # A disabled endpoint's deliveries are kept as failed, so "recover since"
                # can send them once it is enabled again.
                deliveries.append(
                    {
                        "public_id": public_id("dlv"),
                        "endpoint_id": endpoint.id,
                        "event_id": event.id,
                        "status": DeliveryStatus.PENDING
                        if endpoint.enabled
                        else DeliveryStatus.FAILED,
                        "attempts": 0,
                        "manual_trigger": None,
                        "next_attempt_at": now if endpoint.enabled else None,
                        "last_error": None if endpoint.enabled else "endpoint disabled",
                        "created_at": now,
                    }
                )
                if endpoint.enabled and event.id not in due[-1:]:
                    due.append(event.id)
            if event.endpoint_id is None:
                messages.append(live.Message.from_event(event, seq))
        store.mark_dispatched(numbered, now)
        if deliveries:
            db.session.execute(insert(WebhookDelivery.__table__), deliveries)
        for start in range(0, len(due), 100):
            jobs.enqueue("outgoing.deliver_events", due[start : start + 100])
    return messages


@jobs.task("outbox.relay")
def relay() -> int:
    """Relay every undispatched outbox row (in batches), publishing each batch to the live
    streams after its commit. Safe to run anywhere, any number of times at once."""
    total = 0
    while True:
        messages = relay_batch(int(current_app.config.get("OUTBOX_RELAY_BATCH", RELAY_BATCH)))
        if not messages and not _undispatched():
            return total
        live.publish(messages)
        total += len(messages)


def _undispatched() -> bool:
    found = db.session.execute(
        select(OutboxEvent.id).where(OutboxEvent.dispatched_at.is_(None)).limit(1)
    ).first()
    db.session.rollback()
    return found is not None


def events_since(seq: int, limit: int = 500) -> list[OutboxEvent]:
    """Dispatched events after stream number `seq` (a stream resuming, a gap filled)."""
    return list(
        db.session.execute(
            select(OutboxEvent)
            .where(OutboxEvent.seq > seq, OutboxEvent.endpoint_id.is_(None))
            .order_by(OutboxEvent.seq)
            .limit(limit)
        )
        .scalars()
        .all()
    )


def latest_seq() -> int:
    return int(
        db.session.execute(select(func.coalesce(func.max(OutboxEvent.seq), 0))).scalar_one() or 0
    )
