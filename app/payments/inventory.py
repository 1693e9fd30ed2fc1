"""Stock: reserved when an order is created, released exactly once, never oversold.

Reservations are single conditional UPDATEs (`stock >= quantity`), which are atomic on
PostgreSQL and SQLite alike, so concurrent buyers can never take the same unit.
"""

from __future__ import annotations

from sqlalchemy import update

from app.extensions import db
from app.models import Order, Product
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import OutOfStock


def take(product: Product, quantity: int) -> bool:
    """Take `quantity` units of a product; False when there are not enough."""
    result = db.session.execute(
        update(Product)
        .where(Product.id == product.id)
        .where((Product.stock.is_(None)) | (Product.stock >= quantity))
        .values(stock=Product.stock - quantity)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def put_back(product_id: int, quantity: int) -> None:
    db.session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock.is_not(None))
        .values(stock=Product.stock + quantity)
        .execution_options(synchronize_session=False)
    )


def reserve(order: Order, products: dict[int, Product]) -> None:
    """Reserve every line of a new order or raise OutOfStock (the caller rolls back)."""
    for item in order.items:
        product = products[item.product_id or 0]
        if not take(product, item.quantity):
            raise OutOfStock(f"Sorry, {product.name} has fewer than {item.quantity} left.",
                             details=[{"field": "quantity", "sku": product.sku}])


def release(order: Order, actor: Actor) -> None:
    """Give the order's units back, once (the flag flips in the same transaction)."""
    if not order.stock_reserved:
        return
    order.stock_reserved = False
    for item in order.items:
        if item.product_id is not None:
            put_back(item.product_id, item.quantity)
    audit.record(actor, "order.stock_released", order,
                 details={"items": {i.sku: i.quantity for i in order.items}})


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
        if product is None or not take(product, item.quantity):
            short.append(item.sku)
    order.stock_reserved = True
    audit.record(actor, "order.stock_reserved_again", order,
                 details={"short": short} if short else None)
