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

from flask_babel import gettext as _gettext
from sqlalchemy import select

from app.extensions import db
from app.i18n import N_, current_locale
from app.models import ApiKey, User
from app.money import format_minor
from app.presentation import status_label

GATEWAY_NAMES = {"sandbox": "Sandbox", "stripe": "Stripe", "razorpay": "Razorpay"}

# Sentences for a payment reaching a state (payment.status_changed).
PAYMENT_REACHED = {
    "processing": N_("Sent to the payment page; waiting for the customer to pay"),
    "requires_action": N_("The bank asked the customer to authenticate; they were sent a link"),
    "authorized": N_("Payment authorized; waiting to be captured"),
    "succeeded": N_("Payment succeeded"),
    "failed": N_("Payment failed"),
    "expired": N_("Checkout expired without a payment"),
    "canceled": N_("Checkout canceled"),
    "partially_refunded": N_("Partly refunded"),
    "refunded": N_("Refunded in full"),
}

ACTIONS = {
    "subscription.created": N_("Subscription started; waiting for the first payment"),
    "subscription.period_paid": N_("A billing period was paid"),
    "subscription.updated": N_("The gateway updated the subscription"),
    "subscription.gateway_error": N_("A call to the gateway failed"),
    "subscription.invoice_mismatch": N_(
        "The gateway's invoice did not match this subscription (flagged, not applied)"
    ),
    "subscription.fetch_stale": N_("Older news from the gateway ignored"),
    "subscription.plan_change_requested": N_("Plan change requested"),
    "subscription.cancel_at_period_end_requested": N_(
        "Asked the gateway to cancel at the end of the period"
    ),
    "subscription.cancel_requested": N_("Asked the gateway to cancel now"),
    "subscription.resume_requested": N_("Asked the gateway to keep the subscription going"),
    "plan.created": N_("Plan created"),
    "payment.created": N_("Payment attempt started"),
    "order.created": N_("Order placed"),
    "order.paid": N_("Order paid"),
    "order.paid_twice": N_("This order was paid twice: refund one of its payments"),
    "order.stock_released": N_("Reserved stock released"),
    "order.stock_reserved_again": N_("Stock reserved again for a late payment"),
    "checkout.payment_return": N_("The customer came back from the payment page"),
    "checkout.payment_cancel": N_("The customer left the payment page without paying"),
    "checkout.razorpay_callback": N_("Razorpay sent the customer back"),
    "checkout.razorpay_pay": N_("The customer opened Razorpay's payment window"),
    "payment.return_unverified": N_(
        "A return from the payment page could not be verified (nothing changed)"
    ),
    "payment.capture_requested": N_("Capture requested"),
    "payment.captured": N_("Payment captured"),
    "payment.refund_totals": N_("Refunded amount updated"),
    "payment.mismatch": N_("The gateway's data did not match this payment (flagged, not applied)"),
    "payment.gateway_error": N_("A call to the gateway failed"),
    "payment.expire_failed": N_("Closing the checkout at the gateway failed (retried later)"),
    "payment.cancel_failed": N_("Canceling at the gateway failed"),
    "payment.event_invalid": N_(
        "The gateway reported a change that is not possible here (recorded, not applied)"
    ),
    "refund.requested": N_("Refund requested"),
    "refund.created": N_("Refund made in the gateway's own dashboard"),
    "refund.failed": N_("Refund failed"),
    "refund.mismatch": N_("The gateway's refund data did not match (flagged)"),
    "refund.gateway_error": N_("A refund call to the gateway failed"),
    "dispute.opened": N_("The customer disputed this payment"),
    "dispute.status_changed": N_("Dispute updated"),
    "webhook.reprocess_requested": N_("A webhook was processed again by hand"),
}

# Audit actions that record a check which changed nothing.
ROUTINE_ACTIONS = frozenset(
    f"{kind}.event_{outcome}"
    for kind in ("payment", "refund", "dispute")
    for outcome in ("duplicate", "stale")
)
ROUTINE_OUTCOMES = ("duplicate", "stale", "ignored")

WEBHOOK_OUTCOMES = {
    "applied": N_("applied"),
    "duplicate": N_("already known, nothing changed"),
    "stale": N_("older than what we knew, nothing changed"),
    "invalid": N_("not possible here, recorded only"),
    "processed": N_("processed"),
    "received": N_("received, waiting to be processed"),
    "failed": N_("processing failed, will be retried"),
    "dead": N_("processing gave up; reprocess it from the webhook inbox"),
}


def gettext(message: str, **variables: Any) -> str:
    """Flask-Babel's gettext, typed (the sentences here are shown in the merchant's language)."""
    return str(_gettext(message, **variables))


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
                str(kid): gettext("API key “%(name)s” (%(prefix)s…)", name=name, prefix=prefix)
                for kid, name, prefix in key_rows
            }

    def name(self, actor_type: str, actor_id: str | None) -> str:
        if actor_type == "user":
            return self.users.get(actor_id or "") or gettext("a merchant user (since removed)")
        if actor_type == "api_key":
            return self.keys.get(actor_id or "") or gettext("an API key (since removed)")
        if actor_type == "customer":
            return gettext("the customer")
        if actor_type == "gateway":
            gateway = (actor_id or "").split(":", 1)[0]
            return (
                gettext("%(gateway)s (webhook)", gateway=gateway_name(gateway))
                if ":" in (actor_id or "")
                else (gateway_name(gateway) if gateway else gettext("the gateway"))
            )
        if actor_type == "job":
            return gettext("Kassa (automatic check)")
        return "Kassa"


def _amount(details: dict[str, Any] | None, currency: str) -> str | None:
    amount = (details or {}).get("amount")
    return (
        format_minor(int(amount), currency, current_locale()) if isinstance(amount, int) else None
    )


def _state(status: str | None) -> str:
    """A status label inside a sentence: translated, lower-cased where the language does."""
    label = gettext(status_label(status or ""))
    return label.lower() if current_locale().startswith("en") else label


def audit_sentence(
    action: str,
    from_state: str | None,
    to_state: str | None,
    details: dict[str, Any] | None,
    currency: str,
) -> str:
    """One audit entry as a sentence."""
    if action == "payment.status_changed" and to_state:
        reached = PAYMENT_REACHED.get(to_state)
        sentence = (
            gettext(reached) if reached else gettext("Payment %(status)s", status=_state(to_state))
        )
        if to_state == "succeeded" and (details or {}).get("late_success"):
            sentence = gettext(
                "%(sentence)s (late: after the checkout had closed)", sentence=sentence
            )
        return sentence
    if action == "subscription.status_changed" and to_state:
        return gettext("Subscription is now %(status)s", status=_state(to_state))
    if action == "subscription.period_paid" and _amount(details, currency):
        return gettext("Billing period paid: %(amount)s", amount=_amount(details, currency))
    if action == "order.status_changed" and to_state:
        return gettext("Order is now %(status)s", status=_state(to_state))
    if action in ("refund.status_changed", "refund.updated", "refund.succeeded") and to_state:
        return gettext("Refund %(status)s", status=_state(to_state))
    if action == "dispute.status_changed" and to_state:
        return gettext("Dispute %(status)s", status=_state(to_state))
    if action.endswith(".event_duplicate"):
        return gettext("Checked: no change (still %(status)s)", status=_state(from_state))
    if action.endswith(".event_stale"):
        return gettext("Older news ignored (%(status)s)", status=_state(to_state))
    amount = _amount(details, currency)
    if action == "refund.requested":
        if amount:
            return gettext("Refund of %(amount)s requested", amount=amount)
        return gettext("Refund requested")
    known = ACTIONS.get(action)
    if known is None:  # an action with no sentence yet: its own name, readable
        return action.replace(".", ": ", 1).replace("_", " ").capitalize()
    base = gettext(known)
    if action in ("refund.created", "dispute.opened") and amount:
        base = gettext("%(what)s of %(amount)s", what=base, amount=amount)
    return base


def webhook_sentence(event_type: str, gateway: str, outcome: str | None) -> str:
    """One inbox event as a sentence: which notice, from whom, and what it did."""
    what = event_type.replace("_", " ").replace(".", " ")
    parts = [p for p in (outcome or "").split(", ") if p]
    result = "; ".join(
        dict.fromkeys(gettext(WEBHOOK_OUTCOMES[p]) if p in WEBHOOK_OUTCOMES else p for p in parts)
    )
    if result:
        return gettext(
            "%(gateway)s sent “%(what)s”: %(result)s",
            gateway=gateway_name(gateway),
            what=what,
            result=result,
        )
    return gettext("%(gateway)s sent “%(what)s”", gateway=gateway_name(gateway), what=what)


def is_routine_webhook(outcome: str | None) -> bool:
    """A notice that changed nothing: every update in it was already known or older."""
    parts = [p for p in (outcome or "").split(", ") if p]
    return bool(parts) and all(p in ROUTINE_OUTCOMES for p in parts)


def requester(requested_by: str) -> str:
    """A refund's `requested_by` ("user:3", "api_key:7", "gateway", "job") in words."""
    kind, _, ident = requested_by.partition(":")
    if kind == "gateway" and not ident:
        return gettext("the gateway's dashboard")
    return People([(kind, ident or None)]).name(kind, ident or None)


def subscription_timeline(entries: Iterable[Any], currency: str) -> list[dict[str, Any]]:
    """A subscription's audit entries as sentences with who did them (raw record kept)."""
    rows = list(entries)
    people = People((e.actor_type, e.actor_id) for e in rows)
    return [
        {
            "when": e.created_at,
            "title": audit_sentence(e.action, e.from_state, e.to_state, e.details, currency),
            "actor": people.name(e.actor_type, e.actor_id),
            "raw": f"{e.action} {e.from_state or '∅'} → {e.to_state or '∅'}",
            "details": e.details,
        }
        for e in rows
    ]
