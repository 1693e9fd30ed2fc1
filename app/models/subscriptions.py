"""Plans (recurring prices) and subscriptions (a mirror of the gateway's subscription)."""

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
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import Model
from app.models.base import UTCDateTime, public_id, utcnow
from app.models.enums import PlanInterval, SubscriptionStatus, values

if TYPE_CHECKING:
    from app.models.orders import Payment


class Plan(Model):
    """A recurring price: amount every interval_count intervals, optional free trial.

    The gateways' own objects (Stripe Product + Price, Razorpay Plan) are created on demand
    and their ids kept here; a price never changes at a gateway, so neither does it here
    (a new price is a new plan)."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("interval_count BETWEEN 1 AND 365", name="interval_count_range"),
        CheckConstraint("trial_days BETWEEN 0 AND 730", name="trial_days_range"),
        CheckConstraint(f"interval IN ({values(PlanInterval)})", name="interval_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("plan")
    )
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(10))
    interval_count: Mapped[int] = mapped_column(default=1)
    trial_days: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    razorpay_plan_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def gateway_id(self, gateway: str) -> str | None:
        """The plan's id at a gateway (Stripe: the Price), None until created there."""
        return {"stripe": self.stripe_price_id, "razorpay": self.razorpay_plan_id}.get(gateway)


class Subscription(Model):
    """One gateway subscription, as the gateway last said it is (never a guess of ours:
    every field below is written from a re-fetch, app/payments/subscriptions.py)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({values(SubscriptionStatus)})", name="status_valid"),
        UniqueConstraint("gateway", "gateway_subscription_id"),
        UniqueConstraint("gateway", "checkout_reference"),
        Index("ix_subscriptions_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("sub")
    )
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24), default=SubscriptionStatus.INCOMPLETE)
    # Sent with the gateway's create call (a retried start never makes a second one).
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    # The checkout that starts it (Stripe Checkout Session; Razorpay/sandbox: the sub id).
    checkout_reference: Mapped[str | None] = mapped_column(String(255))
    checkout_url: Mapped[str | None] = mapped_column(Text)
    gateway_subscription_id: Mapped[str | None] = mapped_column(String(255))
    gateway_customer_id: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str] = mapped_column(String(254), index=True)
    customer_name: Mapped[str] = mapped_column(String(200), default="")
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latest_invoice_id: Mapped[str | None] = mapped_column(String(255))
    latest_invoice_status: Mapped[str | None] = mapped_column(String(30))
    # Dunning: when the gateway will try the failed renewal again (None: no retry planned).
    next_payment_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The gateway's own status word (Razorpay's halted, pending, ...), kept as it said it.
    gateway_status: Mapped[str | None] = mapped_column(String(30))
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    plan: Mapped[Plan] = relationship()
    payments: Mapped[list[Payment]] = relationship(
        back_populates="subscription", order_by="Payment.id"
    )


class SandboxSubscription(Model):
    """The sandbox gateway's own record of a subscription (its 'server side')."""

    __tablename__ = "sandbox_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    customer_email: Mapped[str] = mapped_column(String(254))
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    success_url: Mapped[str] = mapped_column(Text)
    cancel_url: Mapped[str] = mapped_column(Text)
    period_seconds: Mapped[int]
    trial_seconds: Mapped[int] = mapped_column(default=0)
    # incomplete, trialing, active, past_due, unpaid, canceled, incomplete_expired
    status: Mapped[str] = mapped_column(String(24), default="incomplete")
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latest_invoice_id: Mapped[str | None] = mapped_column(String(40))
    latest_invoice_status: Mapped[str | None] = mapped_column(String(20))
    next_payment_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many renewals are left to fail (the "renewal fails" scenario), and retries made.
    failures_left: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    invoices: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
