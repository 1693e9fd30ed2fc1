from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.crypto import EncryptedString, email_hash
from app.extensions import Model
from app.models.base import UTCDateTime, public_id, utcnow
from app.models.enums import (
    CAPTURED,
    FINAL_PAYMENT_STATUSES,
    DisputeStatus,
    FulfillmentStatus,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    values,
)

if TYPE_CHECKING:
    from app.models.catalog import Product
    from app.models.customers import Customer
    from app.models.subscriptions import Subscription


class Order(Model):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_amount > 0", name="total_positive"),
        CheckConstraint(f"status IN ({values(OrderStatus)})", name="status_valid"),
        CheckConstraint(
            f"fulfillment_status IN ({values(FulfillmentStatus)})", name="fulfillment_status_valid"
        ),
        Index("ix_orders_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("ord")
    )
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int]
    # Encrypted at rest (app/crypto.py); found by exact email through the keyed hash,
    # which every writer sets with the email (email_hash; the validator below for ORM rows).
    customer_email: Mapped[str] = mapped_column(EncryptedString())
    customer_email_hash: Mapped[str] = mapped_column(String(64), index=True)
    customer_name: Mapped[str] = mapped_column(EncryptedString())
    # True while the items' stock is held for this order; flipped exactly once on release.
    stock_reserved: Mapped[bool] = mapped_column(default=True)
    # Set by the merchant (dashboard or API): unfulfilled -> fulfilled, or canceled.
    fulfillment_status: Mapped[str] = mapped_column(
        String(20), default=FulfillmentStatus.UNFULFILLED, server_default="unfulfilled"
    )
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Shown to the customer with the fulfilment (carrier and tracking number, say).
    fulfillment_note: Mapped[str | None] = mapped_column(String(500))
    # The customer's language at checkout (app/i18n.py): their emails are written in it.
    # NULL (orders from before it was kept): DEFAULT_LOCALE.
    locale: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )
    payments: Mapped[list[Payment]] = relationship(back_populates="order", order_by="Payment.id")

    @validates("customer_email")
    def _hash_email(self, _key: str, value: str) -> str:
        self.customer_email_hash = email_hash(value)
        return value

    @property
    def latest_payment(self) -> Payment | None:
        return self.payments[-1] if self.payments else None

    @property
    def is_final(self) -> bool:
        return self.status not in (OrderStatus.PENDING,)


class OrderItem(Model):
    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_range"),
        CheckConstraint("unit_amount > 0", name="unit_amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    # Snapshot of the catalog at purchase time: later price edits never change an order.
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    unit_amount: Mapped[int]
    quantity: Mapped[int]

    order: Mapped[Order] = relationship(back_populates="items")
    product: Mapped[Product | None] = relationship()

    @property
    def line_amount(self) -> int:
        return self.unit_amount * self.quantity


class Payment(Model):
    """One attempt at paying an order through one gateway."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount", name="refunded_within_amount"
        ),
        CheckConstraint(f"status IN ({values(PaymentStatus)})", name="status_valid"),
        CheckConstraint("capture_method IN ('automatic', 'manual')", name="capture_method_valid"),
        UniqueConstraint("gateway", "gateway_reference"),
        UniqueConstraint("gateway", "gateway_payment_id"),
        UniqueConstraint("gateway", "gateway_invoice_id"),
        Index("ix_payments_created", "created_at", "id"),
        Index("ix_payments_status_created", "status", "created_at"),
        Index("ix_payments_gateway_created", "gateway", "created_at"),
        # The dashboard overview's per-day, per-gateway, per-currency sums over a date range
        # as an index-only scan (PostgreSQL; a plain created_at index elsewhere).
        Index(
            "ix_payments_created_overview",
            "created_at",
            postgresql_include=["status", "gateway", "currency", "amount"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("pay")
    )
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24), default=PaymentStatus.CREATED)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    amount_refunded: Mapped[int] = mapped_column(default=0)
    capture_method: Mapped[str] = mapped_column(String(10), default="automatic")
    # Sent with the gateway create call; derived from the attempt so a retry never duplicates.
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    # Stripe Checkout Session id / Razorpay order id / sandbox session id.
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    # Stripe PaymentIntent id / Razorpay payment id / sandbox payment id.
    gateway_payment_id: Mapped[str | None] = mapped_column(String(255))
    checkout_url: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(Text)
    # Safe-to-keep method details only: brand, last4, wallet, vpa. Never a full number.
    payment_method: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Encrypted at rest, like the order's; customer_email_hash finds it (app/crypto.py).
    customer_email: Mapped[str] = mapped_column(EncryptedString())
    customer_email_hash: Mapped[str] = mapped_column(String(64), index=True)
    # The store's customer (matched by email at checkout) and, for a charge of a saved
    # method, which one; save_payment_method: the customer agreed to save this one.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    saved_method_id: Mapped[int | None] = mapped_column(ForeignKey("saved_payment_methods.id"))
    save_payment_method: Mapped[bool] = mapped_column(default=False, server_default=false())
    authorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capture_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A subscription's paid period: its invoice at the gateway and the period it pays for.
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    gateway_invoice_id: Mapped[str | None] = mapped_column(String(255))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    order: Mapped[Order] = relationship(back_populates="payments")
    subscription: Mapped[Subscription | None] = relationship(back_populates="payments")
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")
    disputes: Mapped[list[Dispute]] = relationship(back_populates="payment", order_by="Dispute.id")
    customer: Mapped[Customer | None] = relationship(back_populates="payments")

    @validates("customer_email")
    def _hash_email(self, _key: str, value: str) -> str:
        self.customer_email_hash = email_hash(value)
        return value

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_PAYMENT_STATUSES

    @property
    def amount_captured(self) -> int:
        return self.amount if self.status in CAPTURED else 0

    @property
    def net_amount(self) -> int:
        return self.amount_captured - self.amount_refunded


class Refund(Model):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"status IN ({values(RefundStatus)})", name="status_valid"),
        UniqueConstraint("gateway", "gateway_refund_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("rfd")
    )
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=RefundStatus.PENDING)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    # "user:3", "api_key:7", "gateway" (made in the gateway's own dashboard), "job"
    requested_by: Mapped[str] = mapped_column(String(80))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class Dispute(Model):
    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(f"status IN ({values(DisputeStatus)})", name="status_valid"),
        UniqueConstraint("gateway", "gateway_dispute_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_dispute_id: Mapped[str] = mapped_column(String(255))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=DisputeStatus.OPEN)
    # The gateway's own status word (needs_response, under_review, won, lost, ...).
    gateway_status: Mapped[str | None] = mapped_column(String(40))
    evidence_due_by: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="disputes")
