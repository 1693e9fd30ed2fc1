"""What the customer should be told about an order (used by the status widget)."""

from __future__ import annotations

from app.models import Order, OrderStatus, PaymentStatus
from app.models.enums import PAYABLE, UNPAID_ENDS


def is_settled(order: Order) -> bool:
    """True when nothing will change without someone acting: stop polling."""
    if order.status != OrderStatus.PENDING:
        return True
    latest = order.latest_payment
    if latest is None:
        return False
    if latest.status == PaymentStatus.AUTHORIZED:
        # Waiting on the merchant only under manual capture; otherwise capture is seconds away.
        return latest.capture_method == "manual"
    return latest.status in UNPAID_ENDS


def headline(order: Order) -> str:
    latest = order.latest_payment
    if order.status == OrderStatus.PENDING:
        if latest is None or latest.status in PAYABLE:
            return "Confirming your payment…"
        if latest.status == PaymentStatus.AUTHORIZED:
            return (
                "Payment authorized"
                if latest.capture_method == "manual"
                else "Confirming your payment…"
            )
        return "Payment not completed"
    return {
        OrderStatus.PAID: "Paid",
        OrderStatus.PARTIALLY_REFUNDED: "Paid (partially refunded)",
        OrderStatus.REFUNDED: "Refunded",
        OrderStatus.FAILED: "Payment failed",
        OrderStatus.EXPIRED: "Checkout expired",
        OrderStatus.CANCELED: "Canceled",
    }[OrderStatus(order.status)]
