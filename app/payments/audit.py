"""Who did it, and the append-only audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.extensions import db
from app.models import AuditEntry, Order, Payment


@dataclass(frozen=True, slots=True)
class Actor:
    type: str                 # customer, user, api_key, gateway, job, system
    id: str | None = None

    def __str__(self) -> str:
        return f"{self.type}:{self.id}" if self.id else self.type


CUSTOMER = Actor("customer")
SYSTEM = Actor("system")
JOB = Actor("job")


def gateway_actor(gateway: str, event_id: str | None = None) -> Actor:
    return Actor("gateway", f"{gateway}:{event_id}" if event_id else gateway)


def record(actor: Actor, action: str, obj: Any, *, from_state: str | None = None,
           to_state: str | None = None, details: dict[str, Any] | None = None,
           payment: Payment | None = None, order: Order | None = None) -> AuditEntry:
    """Add an audit entry to the current transaction (never committed on its own)."""
    if isinstance(obj, Payment):
        payment = payment or obj
    if isinstance(obj, Order):
        order = order or obj
    if payment is not None and order is None:
        order = payment.order
    entry = AuditEntry(
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        object_type=type(obj).__name__.lower(),
        object_id=str(getattr(obj, "public_id", None) or getattr(obj, "id", "")),
        from_state=from_state,
        to_state=to_state,
        details=details or None,
        payment_id=payment.id if payment is not None else None,
        order_id=order.id if order is not None else None,
    )
    db.session.add(entry)
    return entry
