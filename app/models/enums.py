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


class PaymentStatus(StrEnum):
    CREATED = "created"  # intent committed, gateway not (yet) answered
    PROCESSING = "processing"  # customer at the gateway / async method in flight
    AUTHORIZED = "authorized"  # funds held, waiting for a manual capture
    SUCCEEDED = "succeeded"  # money captured
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


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
