"""Orders: created from catalog items, prices always from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Order, OrderItem, Product
from app.models.base import public_id, utcnow
from app.payments import audit, inventory
from app.payments.audit import Actor
from app.payments.errors import NotFound, ValidationFailed

MAX_QUANTITY = 99
MAX_LINES = 20


@dataclass(frozen=True, slots=True)
class ItemRequest:
    sku: str
    quantity: int


def _validate(items: Sequence[ItemRequest], email: str, name: str) -> None:
    details = []
    if not items:
        details.append({"field": "items", "message": "Add at least one item."})
    if len(items) > MAX_LINES:
        details.append({"field": "items", "message": f"At most {MAX_LINES} lines."})
    seen = set()
    for i, item in enumerate(items):
        if item.sku in seen:
            details.append({"field": f"items.{i}.sku", "message": "Each SKU only once."})
        seen.add(item.sku)
        if isinstance(item.quantity, bool) or not isinstance(item.quantity, int) or \
                not 1 <= item.quantity <= MAX_QUANTITY:
            details.append({"field": f"items.{i}.quantity",
                            "message": f"Quantity must be between 1 and {MAX_QUANTITY}."})
    if not email or "@" not in email or len(email) > 254:
        details.append({"field": "customer.email", "message": "Enter a valid email address."})
    if not name or not name.strip() or len(name) > 200:
        details.append({"field": "customer.name", "message": "Enter your name."})
    if details:
        raise ValidationFailed("Please correct the highlighted fields.", details=details)


def create_order(items: Sequence[ItemRequest], email: str, name: str, actor: Actor) -> Order:
    """Build an order from the catalog and reserve its stock (caller's unit of work)."""
    _validate(items, email, name)
    skus = [i.sku for i in items]
    products = {
        p.sku: p for p in db.session.execute(
            select(Product).where(Product.sku.in_(skus), Product.active.is_(True))
        ).scalars()
    }
    missing = [s for s in skus if s not in products]
    if missing:
        raise NotFound(f"Unknown product: {', '.join(missing)}",
                       details=[{"field": "items", "sku": s} for s in missing])
    currencies = {products[s].currency for s in skus}
    if len(currencies) > 1:
        raise ValidationFailed("All items of one order must share a currency.",
                               details=[{"field": "items", "message": "mixed currencies"}])
    order = Order(
        public_id=public_id("ord"),
        currency=currencies.pop(),
        # Stored lower-cased so every search finds it (mail systems treat it so in practice).
        customer_email=email.strip().lower(),
        customer_name=name.strip(),
        total_amount=sum(products[i.sku].unit_amount * i.quantity for i in items),
        expires_at=utcnow() + timedelta(minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"]),
    )
    for item in items:
        product = products[item.sku]
        order.items.append(OrderItem(product_id=product.id, sku=product.sku, name=product.name,
                                     unit_amount=product.unit_amount, quantity=item.quantity))
    db.session.add(order)
    db.session.flush()
    inventory.reserve(order, {p.id: p for p in products.values()})
    audit.record(actor, "order.created", order, to_state=order.status,
                 details={"total": order.total_amount, "currency": order.currency,
                          "items": {i.sku: i.quantity for i in items}})
    return order


def get_order(order_public_id: str) -> Order:
    order = db.session.execute(
        select(Order).where(Order.public_id == order_public_id)
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("No such order.")
    return order
