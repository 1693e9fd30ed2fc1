"""Orders: created from catalog items, prices always from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select

from app.crypto import email_hash
from app.extensions import db
from app.i18n import current_locale
from app.models import FulfillmentStatus, Order, OrderItem, OrderStatus, Product
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
        if (
            isinstance(item.quantity, bool)
            or not isinstance(item.quantity, int)
            or not 1 <= item.quantity <= MAX_QUANTITY
        ):
            details.append(
                {
                    "field": f"items.{i}.quantity",
                    "message": f"Quantity must be between 1 and {MAX_QUANTITY}.",
                }
            )
    if not email or "@" not in email or len(email) > 254:
        details.append({"field": "customer.email", "message": "Enter a valid email address."})
    if not name or not name.strip() or len(name) > 200:
        details.append({"field": "customer.name", "message": "Enter your name."})
    if details:
        raise ValidationFailed("Please correct the highlighted fields.", details=details)


# The catalog read, built once: a statement object reused with new parameters skips
# rebuilding and re-keying it for SQLAlchemy's compiled cache on every call.
_CATALOG = select(
    Product.id, Product.sku, Product.name, Product.unit_amount, Product.currency, Product.stock
).where(Product.sku.in_(bindparam("skus", expanding=True)), Product.active.is_(True))


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: int
    sku: str
    name: str
    unit_amount: int
    quantity: int


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """A validated order priced from the catalog, not written yet: its rows, ready to write
    in one go (app/payments/store.py), and what its stock reservation needs."""

    values: dict[str, Any]  # the orders row
    lines: tuple[OrderLine, ...]
    stock: tuple[int | None, ...]  # each line's product stock, as read
    item_rows: list[dict[str, Any]]  # the order_items rows (order_id filled in on writing)
    details: dict[str, Any]  # the order.created audit entry's details
    audit_row: dict[str, Any]  # that entry, as a row (order_id filled in on writing)


def plan_order(items: Sequence[ItemRequest], email: str, name: str, actor: Actor) -> OrderPlan:
    """Validate the request and price it from the products table (never from the caller),
    in the caller's unit of work; `actor` is who the order.created entry will name."""
    _validate(items, email, name)
    skus = [i.sku for i in items]
    products = {p.sku: p for p in db.session.connection().execute(_CATALOG, {"skus": skus})}
    missing = [s for s in skus if s not in products]
    if missing:
        raise NotFound(
            f"Unknown product: {', '.join(missing)}",
            details=[{"field": "items", "sku": s} for s in missing],
        )
    currencies = {products[s].currency for s in skus}
    if len(currencies) > 1:
        raise ValidationFailed(
            "All items of one order must share a currency.",
            details=[{"field": "items", "message": "mixed currencies"}],
        )
    lines = tuple(
        OrderLine(
            products[i.sku].id, i.sku, products[i.sku].name, products[i.sku].unit_amount, i.quantity
        )
        for i in items
    )
    now = utcnow()
    values = {
        "public_id": public_id("ord"),
        "status": OrderStatus.PENDING,
        "currency": currencies.pop(),
        # Stored lower-cased so every search finds it (mail systems treat it so in practice).
        "customer_email": email.strip().lower(),
        # The blind index that finds it (the email itself is encrypted, app/crypto.py).
        "customer_email_hash": email_hash(email),
        "customer_name": name.strip(),
        # The language the customer ordered in: receipts and other emails follow it.
        "locale": current_locale(),
        "total_amount": sum(line.unit_amount * line.quantity for line in lines),
        "stock_reserved": True,
        "fulfillment_status": FulfillmentStatus.UNFULFILLED.value,
        "expires_at": now + timedelta(minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"]),
        "created_at": now,
        "updated_at": now,
    }
    details = {
        "total": values["total_amount"],
        "currency": values["currency"],
        "items": {i.sku: i.quantity for i in items},
    }
    return OrderPlan(
        values=values,
        lines=lines,
        stock=tuple(products[line.sku].stock for line in lines),
        item_rows=[
            {
                "product_id": line.product_id,
                "sku": line.sku,
                "name": line.name,
                "unit_amount": line.unit_amount,
                "quantity": line.quantity,
            }
            for line in lines
        ],
        details=details,
        audit_row=audit.row(
            actor,
            "order.created",
            "order",
            values["public_id"],
            to_state=values["status"],
            details=details,
        ),
    )


def reserve(plan: OrderPlan) -> None:
    """Take the order's stock (limited products only), or raise OutOfStock. Called last in
    the order's unit of work, so a limited product's row lock is held as briefly as can be."""
    inventory.reserve_lines(list(zip(plan.lines, plan.stock, strict=True)))


def create_order(items: Sequence[ItemRequest], email: str, name: str, actor: Actor) -> Order:
    """An order alone (no payment attempt), built from the catalog with its stock reserved,
    in the caller's unit of work."""
    plan = plan_order(items, email, name, actor)
    order = Order(**plan.values, items=[OrderItem(**row) for row in plan.item_rows])
    db.session.add(order)
    db.session.flush()
    reserve(plan)
    audit.record(actor, "order.created", order, to_state=order.status, details=plan.details)
    return order


def get_order(order_public_id: str) -> Order:
    order = db.session.execute(
        select(Order).where(Order.public_id == order_public_id)
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("No such order.")
    return order
