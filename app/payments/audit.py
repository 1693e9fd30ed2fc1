"""Who did it, and the append-only audit trail.

record() is the one way to write an entry; row() gives the same entry as plain values for
the fast paths (app/payments/store.py), which write it with their own statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.extensions import db
from app.models import AuditEntry, Order, Payment
from app.models.base import utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # customer, user, api_key, gateway, job, system
    id: str | None = None

    def __str__(self) -> str:
        return f"{self.type}:{self.id}" if self.id else self.type


CUSTOMER = Actor("customer")
SYSTEM = Actor("system")
JOB = Actor("job")


def gateway_actor(gateway: str, event_id: str | None = None) -> Actor:
    return Actor("gateway", f"{gateway}:{event_id}" if event_id else gateway)


def row(
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    *,
    from_state: str | None = None,
    to_state: str | None = None,
    details: dict[str, Any] | None = None,
    payment_id: int | None = None,
    order_id: int | None = None,
) -> dict[str, Any]:
    """An audit entry as the values of its row, for the fast paths that write rows rather
    than ORM objects (app/payments/store.py); they write it in the same transaction."""
    return {
        "created_at": utcnow(),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "from_state": from_state,
        "to_state": to_state,
        "details": details or None,
        "payment_id": payment_id,
        "order_id": order_id,
    }


def record(
    actor: Actor,
    action: str,
    obj: Any,
    *,
    from_state: str | None = None,
    to_state: str | None = None,
    details: dict[str, Any] | None = None,
    payment: Payment | None = None,
    order: Order | None = None,
) -> AuditEntry:
    """Add an audit entry to the current transaction (never committed on its own).

    Links go through relationships, not ids, so recording for an object created in
    this transaction needs no flush: the one flush at commit fills the keys in.
    """
    if isinstance(obj, Payment):
        payment = payment or obj
    if isinstance(obj, Order):
        order = order or obj
    object_id = getattr(obj, "public_id", None) or getattr(obj, "id", "")
    entry = AuditEntry(
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(object_id),
        from_state=from_state,
        to_state=to_state,
        details=details or None,
    )
    if payment is not None:
        entry.payment = payment
    if order is not None:
        entry.order = order
    elif payment is not None:
        # The payment's order: by key when it has one (no load), else the new object.
        if payment.order_id is not None:
            entry.order_id = payment.order_id
        else:
            entry.order = payment.order
    db.session.add(entry)
    return entry
