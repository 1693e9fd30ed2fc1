"""What a receipt says, for the email and the printable page alike: one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Order, Payment, Receipt, Refund, RefundStatus
from app.models.enums import CAPTURED


@dataclass
class ReceiptFacts:
    order: Order
    store: str
    number: str  # what the customer quotes to the shop
    paid_at: datetime | None
    payment: Payment | None
    method: str  # "Visa •••• 4242", "UPI ana@okbank", "Sandbox"
    order_url: str
    receipt_url: str
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds)


def method_words(payment: Payment | None) -> str:
    if payment is None:
        return ""
    pm = payment.payment_method or {}
    parts = []
    if pm.get("brand"):
        parts.append(str(pm["brand"]).capitalize())
    if pm.get("last4"):
        parts.append(f"•••• {pm['last4']}")
    if pm.get("wallet"):
        parts.append(str(pm["wallet"]).replace("_", " ").capitalize())
    if pm.get("vpa"):
        parts.append(f"UPI {pm['vpa']}")
    gateway = payment.gateway.capitalize()
    return f"{' '.join(parts)} (via {gateway})" if parts else gateway


def _absolute(path: str) -> str:
    base: str = current_app.config["PUBLIC_BASE_URL"]
    return base.rstrip("/") + path


def facts(order: Order, receipt_id: int | None = None) -> ReceiptFacts:
    """The receipt of a paid order (its captured payment, succeeded refunds, number);
    `receipt_id`: its order_paid receipt's id, when the caller knows it."""
    payment = next((p for p in order.payments if p.status in CAPTURED), None)
    row = receipt_id
    if row is None:
        row = db.session.execute(
            select(Receipt.id).where(
                Receipt.kind == "order_paid", Receipt.subject_id == order.public_id
            )
        ).scalar_one_or_none()
    # The receipt's own number once one was issued; the order id says it just as well before.
    number = f"R-{row:06d}" if row is not None else order.public_id
    refunds = [r for r in payment.refunds if r.status == RefundStatus.SUCCEEDED] if payment else []
    return ReceiptFacts(
        order=order,
        store=current_app.config["STORE_NAME"],
        number=number,
        paid_at=payment.captured_at if payment else None,
        payment=payment,
        method=method_words(payment),
        # Plain paths, not url_for: receipts are also built by jobs outside any request.
        order_url=_absolute(f"/orders/{order.public_id}"),
        receipt_url=_absolute(f"/orders/{order.public_id}/receipt"),
        refunds=refunds,
    )
