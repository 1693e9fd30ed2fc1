"""The transactional outbox and the merchant's outgoing webhook endpoints.

An OutboxEvent is written in the same transaction as the change it reports; the relay
(app/payments/outbox.py) later gives it its stream sequence number, fans it out into one
WebhookDelivery per endpoint and publishes it to the live streams. Every attempt at
sending a delivery is a WebhookAttempt row (the delivery log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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

from app.crypto import EncryptedString
from app.extensions import Model
from app.models.base import UTCDateTime, public_id, utcnow
from app.models.enums import DeliveryStatus, values


class OutboxEvent(Model):
    """One change a merchant's systems care about (order.paid, refund.succeeded, ...)."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The relay's queue: rows not yet dispatched, oldest first.
        Index("ix_outbox_events_undispatched", "dispatched_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Sent as `webhook-id` (constant across retries and replays) and in the payload.
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("evt")
    )
    type: Mapped[str] = mapped_column(String(60))
    # What the event is about: "order", "payment", "refund", "dispute", "webhook_endpoint".
    subject_type: Mapped[str] = mapped_column(String(30))
    subject_id: Mapped[str] = mapped_column(String(60))
    # For live streams: which order page and which payment page it concerns.
    order_id: Mapped[str | None] = mapped_column(String(40))
    payment_id: Mapped[str | None] = mapped_column(String(40))
    # Only this endpoint gets it (a "send test event"); null: every subscribed endpoint.
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    # The payload's `data`: ids and statuses only (thin events).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by the relay, in commit order: the live streams' event id (Last-Event-ID).
    seq: Mapped[int | None] = mapped_column(unique=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Model):
    """A URL of the merchant's that receives signed events (Standard Webhooks)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: public_id("we"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(200), default="")
    # Event types it wants; an empty list means every type.
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # Signing secrets ("whsec_" + base64), encrypted at rest (app/crypto.py). Read and
    # written only through app/payments/outgoing/secrets.py, the one accessor.
    secret: Mapped[str] = mapped_column(EncryptedString())
    previous_secret: Mapped[str | None] = mapped_column(EncryptedString())
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when every attempt has failed (null after a success): five days disables it.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(Model):
    """One event to one endpoint, retried on a schedule until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),  # one delivery per event and endpoint
        CheckConstraint(f"status IN ({values(DeliveryStatus)})", name="status_valid"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(40), unique=True, default=lambda: public_id("dlv")
    )
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    # Automatic attempts made so far (the retry schedule's position).
    attempts: Mapped[int] = mapped_column(default=0)
    # "replay" or "recover" while the merchant's one extra attempt is due (no retries
    # follow it); null on the automatic schedule.
    manual_trigger: Mapped[str | None] = mapped_column(String(20))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    endpoint: Mapped[WebhookEndpoint] = relationship()
    event: Mapped[OutboxEvent] = relationship()
    attempt_log: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery", order_by="WebhookAttempt.id", cascade="all, delete-orphan"
    )


class WebhookAttempt(Model):
    """One HTTP request of a delivery, as sent and as answered (the delivery log)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # "schedule" (automatic), "replay", "recover", "test"
    trigger: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)
    # The request as sent, signature included (it is no secret); the body exactly.
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON)
    request_body: Mapped[str] = mapped_column(Text)
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)  # first 2 KB
    duration_ms: Mapped[int]
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_log")
