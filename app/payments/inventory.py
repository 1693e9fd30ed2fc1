"""Stock: reserved when an order is created, released exactly once, never oversold.

Reservations are single conditional UPDATEs (`stock >= quantity`), which are atomic on
PostgreSQL and SQLite alike, so concurrent buyers can never take the same unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, update

from app.extensions import db
from app.models import Order, Product
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import OutOfStock

if TYPE_CHECKING:
    from app.payments.orders import OrderLine


def _take(product_id: int, quantity: int) -> bool:
    """Take `quantity` units of a product; False when there are not enough."""
    # Session.execute is typed as returning Result; a DML statement's is a CursorResult,
    # which has rowcount (SQLAlchemy's own stubs cannot tell the two apart by statement).
    result = cast(
        "CursorResult[Any]",
        db.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .where((Product.stock.is_(None)) | (Product.stock >= quantity))
            .values(stock=Product.stock - quantity)
            .execution_options(synchronize_session=False)
        ),
    )
    matched: int = result.rowcount
    return matched == 1


def put_back(product_id: int, quantity: int) -> None:
    db.session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock.is_not(None))
        .values(stock=Product.stock + quantity)
        .execution_options(synchronize_session=False)
    )


def reserve_lines(lines: Sequence[tuple[OrderLine, int | None]]) -> None:
    """Reserve every line of a new order (with its product's stock as read in this
    transaction) or raise OutOfStock; the caller's unit of work rolls back."""
    for line, stock in lines:
        if stock is None:
            # Unlimited stock: nothing to count, and no UPDATE, so the buyers of one
            # product don't queue on its row lock.
            continue
        if not _take(line.product_id, line.quantity):
            raise OutOfStock(
                f"Sorry, {line.name} has fewer than {line.quantity} left.",
                details=[{"field": "quantity", "sku": line.sku}],
            )


def release(order: Order, actor: Actor) -> None:
    """Give the order's units back, once (the flag flips in the same transaction)."""
    if not order.stock_reserved:
        return
    order.stock_reserved = False
    for item in order.items:
        if item.product_id is not None:
            put_back(item.product_id, item.quantity)
    audit.record(
        actor,
        "order.stock_released",
        order,
        details={"items": {i.sku: i.quantity for i in order.items}},
    )


def reserve_again(order: Order, actor: Actor) -> None:
    """A late payment for an order whose stock was released: take the units back.

    The customer has paid, so the order stands even if a unit is gone; the audit
    entry says which lines could not be covered so the merchant can act.
    """
    short = []
    for item in order.items:
        if item.product_id is None:
            continue
        product = db.session.get(Product, item.product_id)
        if product is None or not _take(product.id, item.quantity):
            short.append(item.sku)
    order.stock_reserved = True
    audit.record(
        actor, "order.stock_reserved_again", order, details={"short": short} if short else None
    )
