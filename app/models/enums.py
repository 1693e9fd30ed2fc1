"""Status vocabularies shared by models, the core and the templates."""

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELED = "canceled"
    EXPIRED = "expired"
    FAILED = "failed"


# An order that ended without being paid (its stock is released; buying again makes a new one).
ORDER_UNPAID_ENDS = frozenset({OrderStatus.FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELED})


# An order whose money was taken (refunds since then included).
ORDER_PAID = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


class PaymentStatus(StrEnum):
    CREATED = "created"  # intent committed, gateway not (yet) answered
    PROCESSING = "processing"  # customer at the gateway / async method in flight
    # A charge of a saved method that the bank wants the customer to authenticate.
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"  # funds held, waiting for a manual capture
    SUCCEEDED = "succeeded"  # money captured
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


# Sets of payment states, each fact once (the state machines: app/payments/state.py).
# An attempt the customer can still pay: its checkout is open (or about to be), or a charge
# waits for them to authenticate.
PAYABLE = frozenset(
    {PaymentStatus.CREATED, PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION}
)
# An attempt that keeps its order pending: payable, or authorized and not yet captured.
STILL_OPEN = PAYABLE | {PaymentStatus.AUTHORIZED}
# The money was taken (refunds since then included).
CAPTURED = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
)
# Captured money that can still be refunded, in part at least.
REFUNDABLE = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED})
# Over without money taken (late money can still move it to succeeded).
UNPAID_ENDS = frozenset({PaymentStatus.FAILED, PaymentStatus.EXPIRED, PaymentStatus.CANCELED})
# Nothing more to wait for without someone acting (the dashboard stops refreshing).
FINAL_PAYMENT_STATUSES = CAPTURED | UNPAID_ENDS


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class DisputeStatus(StrEnum):
    OPEN = "open"  # needs response / under review
    WON = "won"
    LOST = "lost"
    CLOSED = "closed"


class WebhookStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"  # will be retried
    DEAD = "dead"  # gave up after N attempts; reprocessable by hand


class FulfillmentStatus(StrEnum):
    UNFULFILLED = "unfulfilled"
    FULFILLED = "fulfilled"
    CANCELED = "canceled"


class DeliveryStatus(StrEnum):
    """An outgoing webhook delivery (one event to one endpoint)."""

    PENDING = "pending"  # due at next_attempt_at (or being sent, under a lease)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # retries used up, endpoint disabled, or a replay that failed


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


class ApiKeyScope(StrEnum):
    READ = "read"
    WRITE = "write"


def values(enum: type[StrEnum]) -> str:
    """SQL list for CHECK constraints."""
    return ", ".join(f"'{m.value}'" for m in enum)


class SubscriptionStatus(StrEnum):
    """A subscription as its gateway has it (Stripe's words; the adapters map theirs)."""

    INCOMPLETE = "incomplete"  # started, first payment not made yet
    INCOMPLETE_EXPIRED = "incomplete_expired"  # the first payment never came
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a renewal failed; the gateway is retrying
    UNPAID = "unpaid"  # retries used up, still open (Razorpay: halted)
    PAUSED = "paused"
    CANCELED = "canceled"  # ended (Razorpay: cancelled, completed)


# A subscription that is over: nothing can move it again.
SUBSCRIPTION_ENDS = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
# Still running at the gateway (reconciliation re-fetches these).
SUBSCRIPTION_OPEN = frozenset(SubscriptionStatus) - SUBSCRIPTION_ENDS


class PlanInterval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
