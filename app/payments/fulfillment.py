"""Fulfilment: the merchant says an order was sent (or will not be).

An order's fulfilment moves unfulfilled -> fulfilled (only once it is paid) or
unfulfilled -> canceled, never back: the customer has been told. Each move is audited,
writes its outbox event (order.fulfilled, order.fulfillment_canceled) and, when
fulfilled, sends the customer one email.
"""

from __future__ import annotations

from app import jobs
from app.models import FulfillmentStatus, Order, OrderStatus
from app.models.base import utcnow
from app.payments import audit, outbox
from app.payments.audit import Actor
from app.payments.errors import InvalidState, NotFound, ValidationFailed
from app.payments.state import Outcome
from app.payments.uow import lock, unit_of_work

F = FulfillmentStatus
FULFILLMENT_TRANSITIONS: dict[FulfillmentStatus, frozenset[FulfillmentStatus]] = {
    F.UNFULFILLED: frozenset({F.FULFILLED, F.CANCELED}),
    F.FULFILLED: frozenset(),
    F.CANCELED: frozenset(),
}
# Money must have been taken (and not all given back) before anything is sent.
FULFILLABLE = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})
EVENTS = {
    F.FULFILLED: outbox.EventType.ORDER_FULFILLED,
    F.CANCELED: outbox.EventType.ORDER_FULFILLMENT_CANCELED,
}
NOTE_MAX = 500


def fulfillment_outcome(
    order_status: OrderStatus, current: FulfillmentStatus, target: FulfillmentStatus
) -> Outcome:
    """Classify a requested move (pure; table-tested)."""
    if target == current:
        return Outcome.DUPLICATE
    if target not in FULFILLMENT_TRANSITIONS[current]:
        return Outcome.INVALID
    if target == F.FULFILLED and order_status not in FULFILLABLE:
        return Outcome.INVALID
    return Outcome.APPLIED


def set_fulfillment(
    order_public_id: str, target: FulfillmentStatus, actor: Actor, *, note: str | None = None
) -> Order:
    """Move an order's fulfilment; a repeat of the current status changes nothing."""
    note = (note or "").strip() or None
    if note and len(note) > NOTE_MAX:
        raise ValidationFailed(
            f"The note is longer than {NOTE_MAX} characters.",
            details=[{"field": "note", "message": f"at most {NOTE_MAX} characters"}],
        )
    with unit_of_work():
        order = lock(Order, public_id=order_public_id)
        if order is None:
            raise NotFound("No such order.")
        current = FulfillmentStatus(order.fulfillment_status)
        outcome = fulfillment_outcome(OrderStatus(order.status), current, target)
        if outcome is Outcome.DUPLICATE:
            return order
        if outcome is Outcome.INVALID:
            if current != F.UNFULFILLED:
                raise InvalidState(f"This order's fulfilment is already {current.value}.")
            raise InvalidState(
                f"Only a paid order can be fulfilled; this one is {order.status.replace('_', ' ')}."
            )
        order.fulfillment_status = target
        if target == F.FULFILLED:
            order.fulfilled_at = utcnow()
        if note:
            order.fulfillment_note = note
        audit.record(
            actor,
            "order.fulfillment_changed",
            order,
            from_state=current,
            to_state=target,
            details={"note": note} if note else None,
        )
        outbox.emit(EVENTS[target], order)
        if target == F.FULFILLED:
            jobs.enqueue("receipts.order_fulfilled", order.id)
    return order
