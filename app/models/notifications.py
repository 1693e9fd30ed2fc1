from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import Model
from app.models.base import UTCDateTime, utcnow


class MerchantNotification(Model):
    """One email to the shop's staff about something that needs them (a dispute opened,
    a refund that failed, a webhook event given up on). Unique per kind and subject: the
    exactly-once guard, as receipts have."""

    __tablename__ = "merchant_notifications"
    __table_args__ = (UniqueConstraint("kind", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))  # dispute_opened, refund_failed, webhook_dead
    subject_id: Mapped[str] = mapped_column(String(80))
    recipients: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, sent, failed
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
