from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import Model
from app.models.base import UTCDateTime, utcnow


class Product(Model):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("unit_amount > 0", name="unit_amount_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    unit_amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # None means unlimited; otherwise units still available (reservations already taken off).
    stock: Mapped[int | None]
    active: Mapped[bool] = mapped_column(default=True)
    # False for a payment link's custom amount: sold only through its link, never listed.
    listed: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Product {self.sku}>"
