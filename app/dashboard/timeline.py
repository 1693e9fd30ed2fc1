"""A payment's history in plain words: what happened, and who did it.

The audit trail and the webhook inbox keep the raw facts (action names, state pairs,
actor ids, payloads); the dashboard shows a sentence per entry and folds the raw record
under it. Entries that changed nothing (a webhook repeating what we already knew, a
periodic reconcile finding the payment as it was) are routine: kept, counted, and folded
away so they don't bury what did happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, User
from app.money import format_minor
from app.presentation import status_label

GATEWAY_NAMES = {"sandbox": "Sandbox", "stripe": "Stripe", "razorpay": "Razorpay"}

# Sentences for a payment reaching a state (payment.status_changed).
PAYMENT_REACHED = {
    "processing": "Sent to the payment page; waiting for the customer to pay",
    "requires_action": "The bank asked the customer to authenticate; they were sent a link",
    "authorized": "Payment authorized; waiting to be captured",
    "succeeded": "Payment succeeded",
    "failed": "Payment failed",
    "expired": "Checkout expired without a payment",
    "canceled": "Checkout canceled",
    "partially_refunded": "Partly refunded",
    "refunded": "Refunded in full",
}

ACTIONS = {
    "payment.created": "Payment attempt started",
    "order.created": "Order placed",
    "order.paid": "Order paid",
    "order.paid_twice": "This order was paid twice: refund one of its payments",
    "order.stock_released": "Reserved stock released",
    "order.stock_reserved_again": "Stock reserved again for a late payment",
    "checkout.payment_return": "The customer came back from the payment page",
    "checkout.payment_cancel": "The customer left the payment page without paying",
    "checkout.razorpay_callback": "Razorpay sent the customer back",
    "checkout.razorpay_pay": "The customer opened Razorpay's payment window",
    "payment.return_unverified": "A return from the payment page could not be verified "
    "(nothing changed)",
    "payment.capture_requested": "Capture requested",
    "payment.captured": "Payment captured",
    "payment.refund_totals": "Refunded amount updated",
    "payment.mismatch": "The gateway's data did not match this payment (flagged, not applied)",
    "payment.gateway_error": "A call to the gateway failed",
    "payment.expire_failed": "Closing the checkout at the gateway failed (retried later)",
    "payment.cancel_failed": "Canceling at the gateway failed",
    "payment.event_invalid": "The gateway reported a change that is not possible here "
    "(recorded, not applied)",
    "refund.requested": "Refund requested",
    "refund.created": "Refund made in the gateway's own dashboard",
    "refund.failed": "Refund failed",
    "refund.mismatch": "The gateway's refund data did not match (flagged)",
    "refund.gateway_error": "A refund call to the gateway failed",
    "dispute.opened": "The customer disputed this payment",
    "dispute.status_changed": "Dispute updated",
    "webhook.reprocess_requested": "A webhook was processed again by hand",
}

# Audit actions that record a check which changed nothing.
ROUTINE_ACTIONS = frozenset(
    f"{kind}.event_{outcome}"
    for kind in ("payment", "refund", "dispute")
    for outcome in ("duplicate", "stale")
)
ROUTINE_OUTCOMES = ("duplicate", "stale", "ignored")

WEBHOOK_OUTCOMES = {
    "applied": "applied",
    "duplicate": "already known, nothing changed",
    "stale": "older than what we knew, nothing changed",
    "invalid": "not possible here, recorded only",
    "processed": "processed",
    "received": "received, waiting to be processed",
    "failed": "processing failed, will be retried",
    "dead": "processing gave up; reprocess it from the webhook inbox",
}


def gateway_name(name: str) -> str:
    return GATEWAY_NAMES.get(name, name.capitalize())


class People:
    """Resolves actor ids to names a merchant recognises (emails, key names), in bulk."""

    def __init__(self, actors: Iterable[tuple[str, str | None]]) -> None:
        user_ids = {int(i) for t, i in actors if t == "user" and i and i.isdigit()}
        key_ids = {int(i) for t, i in actors if t == "api_key" and i and i.isdigit()}
        self.users: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        if user_ids:
            rows = db.session.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
            self.users = {str(uid): email for uid, email in rows}
        if key_ids:
            key_rows = db.session.execute(
                select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.id.in_(key_ids))
            )
            self.keys = {
                str(kid): f"API key “{name}” ({prefix}…)" for kid, name, prefix in key_rows
            }

    def name(self, actor_type: str, actor_id: str | None) -> str:
        if actor_type == "user":
            return self.users.get(actor_id or "", "a merchant user (since removed)")
        if actor_type == "api_key":
            return self.keys.get(actor_id or "", "an API key (since removed)")
        if actor_type == "customer":
            return "the customer"
        if actor_type == "gateway":
            gateway = (actor_id or "").split(":", 1)[0]
            return (
                f"{gateway_name(gateway)} (webhook)"
                if ":" in (actor_id or "")
                else (gateway_name(gateway) if gateway else "the gateway")
            )
        if actor_type == "job":
            return "Kassa (automatic check)"
        return "Kassa"


def _amount(details: dict[str, Any] | None, currency: str) -> str:
    amount = (details or {}).get("amount")
    return f" of {format_minor(int(amount), currency)}" if isinstance(amount, int) else ""


def audit_sentence(
    action: str,
    from_state: str | None,
    to_state: str | None,
    details: dict[str, Any] | None,
    currency: str,
) -> str:
    """One audit entry as a sentence."""
    if action == "payment.status_changed" and to_state:
        sentence = PAYMENT_REACHED.get(to_state, f"Payment {status_label(to_state).lower()}")
        if to_state == "succeeded" and (details or {}).get("late_success"):
            sentence += " (late: after the checkout had closed)"
        return sentence
    if action == "order.status_changed" and to_state:
        return f"Order is now {status_label(to_state).lower()}"
    if action in ("refund.status_changed", "refund.updated", "refund.succeeded") and to_state:
        return f"Refund {status_label(to_state).lower()}"
    if action == "dispute.status_changed" and to_state:
        return f"Dispute {status_label(to_state).lower()}"
    if action.endswith(".event_duplicate"):
        return f"Checked: no change (still {status_label(from_state or '').lower()})"
    if action.endswith(".event_stale"):
        return f"Older news ignored ({status_label(to_state or '').lower()})"
    if action == "refund.requested":
        return f"Refund{_amount(details, currency)} requested"
    base = ACTIONS.get(action)
    if base is None:
        base = action.replace(".", ": ", 1).replace("_", " ").capitalize()
    if action in ("refund.created", "dispute.opened"):
        base += _amount(details, currency)
    return base


def webhook_sentence(event_type: str, gateway: str, outcome: str | None) -> str:
    """One inbox event as a sentence: which notice, from whom, and what it did."""
    what = event_type.replace("_", " ").replace(".", " ")
    parts = [p for p in (outcome or "").split(", ") if p]
    result = "; ".join(dict.fromkeys(WEBHOOK_OUTCOMES.get(p, p) for p in parts))
    return f"{gateway_name(gateway)} sent “{what}”" + (f": {result}" if result else "")


def is_routine_webhook(outcome: str | None) -> bool:
    """A notice that changed nothing: every update in it was already known or older."""
    parts = [p for p in (outcome or "").split(", ") if p]
    return bool(parts) and all(p in ROUTINE_OUTCOMES for p in parts)


def requester(requested_by: str) -> str:
    """A refund's `requested_by` ("user:3", "api_key:7", "gateway", "job") in words."""
    kind, _, ident = requested_by.partition(":")
    if kind == "gateway" and not ident:
        return "the gateway's dashboard"
    return People([(kind, ident or None)]).name(kind, ident or None)
