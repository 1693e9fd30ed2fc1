"""Returning customers and the payment methods they chose to save (issue 18).

Kassa keeps only the gateway's token for a saved method and what is safe to show (brand,
last four, expiry, wallet); never card data. The sensitive columns are all declared with
`sensitive()` below, the one place that decides how they are stored.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from app.crypto import EncryptedString, email_hash
from app.extensions import Model
from app.models.base import UTCDateTime, public_id, utcnow
from app.models.enums import values

if TYPE_CHECKING:
    from app.models.orders import Payment


def sensitive(length: int) -> TypeEngine[str]:
    """The column type of a sensitive value (tokens, gateway customer ids, emails, names):
    encrypted at rest (app/crypto.py EncryptedString; `length` is the plaintext's bound)."""
    return EncryptedString()


def email_index(email: str) -> str:
    """The lookup hash of an email (exact match, case-insensitive): what `email_hash` holds,
    so a customer is found by email without decrypting anything (app/crypto.py's keyed
    blind index, BLIND_INDEX_KEY)."""
    return email_hash(email)


class MethodStatus(StrEnum):
    ACTIVE = "active"
    DETACHED = "detached"  # removed by the merchant or the customer; detached at the gateway


class Customer(Model):
    """A customer of the store, found by email at checkout."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("cus")
    )
    email: Mapped[str] = mapped_column(sensitive(512))
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(sensitive(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    gateway_ids: Mapped[list[GatewayCustomer]] = relationship(
        back_populates="customer", order_by="GatewayCustomer.id"
    )
    methods: Mapped[list[SavedPaymentMethod]] = relationship(
        back_populates="customer", order_by="SavedPaymentMethod.id"
    )
    payments: Mapped[list[Payment]] = relationship(
        back_populates="customer", order_by="Payment.id", viewonly=True
    )

    def gateway_customer_id(self, gateway: str) -> str | None:
        for row in self.gateway_ids:
            if row.gateway == gateway:
                return row.gateway_customer_id
        return None


class GatewayCustomer(Model):
    """The gateway's id for a customer (Stripe cus_…, Razorpay cust_…, sandbox sbx_cus_…)."""

    __tablename__ = "customer_gateway_ids"
    __table_args__ = (UniqueConstraint("customer_id", "gateway"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_customer_id: Mapped[str] = mapped_column(sensitive(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="gateway_ids")


class SavedPaymentMethod(Model):
    """A method the customer agreed to save at checkout: the gateway's token plus what is
    safe to show."""

    __tablename__ = "saved_payment_methods"
    __table_args__ = (
        CheckConstraint(f"status IN ({values(MethodStatus)})", name="status_valid"),
        CheckConstraint("exp_month IS NULL OR exp_month BETWEEN 1 AND 12", name="exp_month_range"),
        # One saved method per payment it was saved from: recording it twice (webhook and
        # return page) keeps one row.
        UniqueConstraint("source_payment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: public_id("pm"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    gateway: Mapped[str] = mapped_column(String(20))
    gateway_token: Mapped[str] = mapped_column(sensitive(1024))
    brand: Mapped[str | None] = mapped_column(String(40))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None]
    exp_year: Mapped[int | None]
    wallet: Mapped[str | None] = mapped_column(String(40))
    # A wallet saved without a card (PayPal): the account's email, to tell wallets apart.
    account_email: Mapped[str | None] = mapped_column(sensitive(512))
    status: Mapped[str] = mapped_column(String(12), default=MethodStatus.ACTIVE)
    # The payment it was saved from (payments point back at the method they charge: the
    # cycle is broken by adding this key after both tables exist).
    source_payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", use_alter=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer: Mapped[Customer] = relationship(back_populates="methods")

    def is_expired(self, today: date | None = None) -> bool:
        """A card past its expiry month (methods without an expiry never expire)."""
        if self.exp_year is None or self.exp_month is None:
            return False
        today = today or utcnow().date()
        return (self.exp_year, self.exp_month) < (today.year, today.month)

    @property
    def expired(self) -> bool:
        return self.is_expired()

    @property
    def active(self) -> bool:
        return self.status == MethodStatus.ACTIVE

    @property
    def label(self) -> str:
        """How pages name it: "Visa •••• 4242", or the wallet and its account for one saved
        without a card ("PayPal (ada@example.com)": PayPal's vault shows Kassa no card)."""
        if self.wallet and not self.last4:
            name = WALLET_NAMES.get(self.wallet, self.wallet.capitalize())
            return f"{name} ({self.account_email})" if self.account_email else name
        return f"{(self.brand or 'card').capitalize()} •••• {self.last4 or '····'}"


WALLET_NAMES = {"paypal": "PayPal", "venmo": "Venmo"}
