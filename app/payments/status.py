"""What the customer should be told about an order (used by the status widget)."""

from __future__ import annotations

from app.models import Order, OrderStatus, PaymentStatus


def is_settled(order: Order) -> bool:
    """True when nothing will change without someone acting: stop polling."""
    if order.status != OrderStatus.PENDING:
        return True
    latest = order.latest_payment
    return latest is not None and latest.status in (
        PaymentStatus.AUTHORIZED, PaymentStatus.FAILED, PaymentStatus.CANCELED,
        PaymentStatus.EXPIRED)


def headline(order: Order) -> str:
    latest = order.latest_payment
    if order.status == OrderStatus.PENDING:
        if latest is None or latest.status in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
            return "Confirming your payment…"
        if latest.status == PaymentStatus.AUTHORIZED:
            return "Payment authorized"
        return "Payment not completed"
    return {
        OrderStatus.PAID: "Paid",
        OrderStatus.PARTIALLY_REFUNDED: "Paid (partially refunded)",
        OrderStatus.REFUNDED: "Refunded",
        OrderStatus.FAILED: "Payment failed",
        OrderStatus.EXPIRED: "Checkout expired",
        OrderStatus.CANCELED: "Canceled",
    }[OrderStatus(order.status)]
