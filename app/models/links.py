from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import Model
from app.models.base import UTCDateTime, public_id, utcnow

if TYPE_CHECKING:
    from app.models.catalog import Product
    from app.models.orders import Order


class PaymentLink(Model):
    """A link a merchant sends: the customer opens a Kassa page and pays for what it sells
    (a catalog product, or an unlisted product made for a custom amount)."""

    __tablename__ = "payment_links"
    __table_args__ = (CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_range"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("plink")
    )
    description: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(default=1)
    reusable: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(default=True)
    # Single-use links: when a customer claimed it (their order is in payment_link_orders).
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    product: Mapped[Product] = relationship()
    orders: Mapped[list[PaymentLinkOrder]] = relationship(
        back_populates="link", order_by="PaymentLinkOrder.id"
    )


class PaymentLinkOrder(Model):
    """An order placed through a payment link (one row per order)."""

    __tablename__ = "payment_link_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("payment_links.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    link: Mapped[PaymentLink] = relationship(back_populates="orders")
    order: Mapped[Order] = relationship()
