"""How statuses are named for people: customers, merchants and API clients.

The core's payment states say where an attempt is in its life. Two of them, `created` and
`processing`, also cover a checkout the customer opened and never paid (or paid with a card
that was declined and may try again). Calling that "Processing" misleads: nothing is being
processed, the shop is waiting for the customer. Here such an attempt is *incomplete*;
`processing` is kept for a payment the gateway really has in flight (an asynchronous method,
a payment id at the gateway and no failure).

One predicate in Python and the same one in SQL, so the badge, the filters, the API and the
success rate agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_

from app.i18n import N_
from app.models import Order, OrderStatus, Payment, PaymentStatus

INCOMPLETE = "incomplete"
OPEN_STATES = (PaymentStatus.CREATED.value, PaymentStatus.PROCESSING.value)

# Every word a person may see for a status, in one table.
STATUS_LABELS = {
    "pending": N_("Awaiting payment"),
    "paid": N_("Paid"),
    "partially_refunded": N_("Partially refunded"),
    "refunded": N_("Refunded"),
    "canceled": N_("Canceled"),
    "expired": N_("Expired"),
    "failed": N_("Payment failed"),
    "created": N_("Incomplete"),
    INCOMPLETE: N_("Incomplete"),
    "processing": N_("Processing"),
    "requires_action": N_("Waiting for the customer to authenticate"),
    "authorized": N_("Authorized"),
    "succeeded": N_("Succeeded"),
    # refunds, disputes, webhooks
    "open": N_("Open"),
    "won": N_("Won"),
    "lost": N_("Lost"),
    "closed": N_("Closed"),
    "received": N_("Received"),
    "processed": N_("Processed"),
    "dead": N_("Dead"),
    # subscriptions
    "trialing": N_("Trial"),
    "active": N_("Active"),
    "past_due": N_("Past due"),
    "unpaid": N_("Unpaid"),
    "paused": N_("Paused"),
    "incomplete_expired": N_("Never started"),
}

# Why a subscription's customer has (or has no) access, in words (app/payments/entitlement.py).
ACCESS_REASONS = {
    "awaiting_first_payment": N_("waiting for the first payment"),
    "never_paid": N_("the first payment never came"),
    "past_due": N_("a payment failed; it is being retried"),
    "unpaid": N_("payments failed"),
    "paused": N_("paused"),
    "ended": N_("ended"),
    "no_period": N_("no paid period yet"),
    "trialing": N_("trial"),
    "active": N_("active"),
    "canceling": N_("ends at the end of the period"),
    "renewal_due": N_("renewal due"),
    "renewal_overdue": N_("the renewal is overdue"),
}

# What each label means, for the filter's option titles and the API docs.
STATUS_HINTS = {
    INCOMPLETE: "checkout opened, the customer has not paid (yet)",
    "processing": "the gateway is confirming a payment the customer made",
    "requires_action": "a charge of a saved method waits for the customer to authenticate it",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def access_reason(reason: str) -> str:
    return ACCESS_REASONS.get(reason, reason.replace("_", " "))


def shown_status(status: str, gateway_payment_id: str | None, failure_code: str | None) -> str:
    """The status people see, from a payment's columns (the CSV export has no objects)."""
    if status in OPEN_STATES and (gateway_payment_id is None or failure_code is not None):
        return INCOMPLETE
    return str(status)


def is_incomplete(payment: Payment) -> bool:
    """Waiting for the customer: opened (or declined and open for a retry), not paid."""
    return payment_status(payment) == INCOMPLETE


def payment_status(payment: Payment) -> str:
    """The status people see: `incomplete` instead of created/processing while the customer
    has not paid; otherwise the core's state."""
    return shown_status(payment.status, payment.gateway_payment_id, payment.failure_code)


def incomplete_condition() -> Any:
    """`is_incomplete` as a SQL condition on payments."""
    return and_(
        Payment.status.in_(OPEN_STATES),
        or_(Payment.gateway_payment_id.is_(None), Payment.failure_code.is_not(None)),
    )


def processing_condition() -> Any:
    """A payment the gateway really has in flight (the complement of incomplete)."""
    return and_(
        Payment.status.in_(OPEN_STATES),
        Payment.gateway_payment_id.is_not(None),
        Payment.failure_code.is_(None),
    )


def status_condition(status: str) -> Any:
    """The filter for a displayed status (incomplete and processing are split as above)."""
    if status == INCOMPLETE:
        return incomplete_condition()
    if status == PaymentStatus.PROCESSING:
        return processing_condition()
    return Payment.status == status


def filter_statuses() -> list[str]:
    """The payment statuses one can filter by, as people see them."""
    return [INCOMPLETE] + [s.value for s in PaymentStatus if s not in (PaymentStatus.CREATED,)]


def return_heading(order: Order) -> str:
    """The return page's heading: thanks once paid, plain words otherwise (the live widget
    under it says what is going on while the payment is confirmed)."""
    if order.status in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED):
        return "Thank you for your order"
    if order.status == OrderStatus.PENDING:
        latest = order.latest_payment
        if latest is not None and latest.status in (
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
            PaymentStatus.EXPIRED,
        ):
            return "Payment not completed"
        return "Your order"
    return "Payment not completed"
