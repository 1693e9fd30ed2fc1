"""Orders: created from catalog items, prices always from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, insert, select

from app.extensions import db
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


# The checkout's statements, built once (see audit._INSERT).
_CATALOG = select(
    Product.id, Product.sku, Product.name, Product.unit_amount, Product.currency, Product.stock
).where(Product.sku.in_(bindparam("skus", expanding=True)), Product.active.is_(True))
_INSERT_ORDER = insert(Order.__table__).returning(Order.__table__.c.id)
_INSERT_ITEM = insert(OrderItem.__table__)


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: int
    sku: str
    name: str
    unit_amount: int
    quantity: int


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order just written in the caller's unit of work, as plain values: nothing for
    the ORM to flush, track or reload (this is every checkout's hot path)."""

    id: int
    public_id: str
    status: str
    currency: str
    total_amount: int
    customer_email: str
    customer_name: str
    expires_at: datetime
    items: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """A validated order priced from the catalog, not written yet."""

    values: dict[str, Any]  # the orders row
    lines: tuple[OrderLine, ...]
    stock: tuple[int | None, ...]  # each line's product stock, as read
    quantities: dict[str, int]  # sku -> quantity, for the audit entry

    def audit_row(self, actor: Actor, order_id: int | None) -> dict[str, Any]:
        return audit.row(
            actor,
            "order.created",
            "order",
            self.values["public_id"],
            to_state=self.values["status"],
            details={
                "total": self.values["total_amount"],
                "currency": self.values["currency"],
                "items": self.quantities,
            },
            order_id=order_id,
        )

    def written(self, order_id: int) -> NewOrder:
        v = self.values
        return NewOrder(
            id=order_id,
            public_id=v["public_id"],
            status=v["status"],
            currency=v["currency"],
            total_amount=v["total_amount"],
            customer_email=v["customer_email"],
            customer_name=v["customer_name"],
            expires_at=v["expires_at"],
            items=self.lines,
        )


def plan_order(items: Sequence[ItemRequest], email: str, name: str) -> OrderPlan:
    """Validate the request and price it from the products table (never from the caller),
    in the caller's unit of work."""
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
        "customer_name": name.strip(),
        "total_amount": sum(line.unit_amount * line.quantity for line in lines),
        "stock_reserved": True,
        "fulfillment_status": FulfillmentStatus.UNFULFILLED.value,
        "expires_at": now + timedelta(minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"]),
        "created_at": now,
        "updated_at": now,
    }
    return OrderPlan(
        values,
        lines,
        tuple(products[line.sku].stock for line in lines),
        {i.sku: i.quantity for i in items},
    )


def item_rows(plan: OrderPlan, order_id: int | None) -> list[dict[str, Any]]:
    return [
        {
            "order_id": order_id,
            "product_id": line.product_id,
            "sku": line.sku,
            "name": line.name,
            "unit_amount": line.unit_amount,
            "quantity": line.quantity,
        }
        for line in plan.lines
    ]


def reserve(plan: OrderPlan) -> None:
    """Take the order's stock (limited products only), or raise OutOfStock."""
    inventory.reserve_lines(list(zip(plan.lines, plan.stock, strict=True)))


def create_order(items: Sequence[ItemRequest], email: str, name: str, actor: Actor) -> NewOrder:
    """Build an order from the catalog and reserve its stock, in the caller's unit of work."""
    return write_order(plan_order(items, email, name), actor)


def write_order(plan: OrderPlan, actor: Actor) -> NewOrder:
    """Write a planned order, its items, its stock reservation and its audit entry."""
    conn = db.session.connection()
    order_id = conn.execute(_INSERT_ORDER, plan.values).scalar_one()
    conn.execute(_INSERT_ITEM, item_rows(plan, order_id))
    # Last, so a limited product's row lock is held for as short a time as possible.
    reserve(plan)
    audit.insert_row(plan.audit_row(actor, order_id))
    return plan.written(order_id)


def get_order(order_public_id: str) -> Order:
    order = db.session.execute(
        select(Order).where(Order.public_id == order_public_id)
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("No such order.")
    return order
