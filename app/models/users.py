from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedString
from app.extensions import Model
from app.models.base import UTCDateTime, utcnow
from app.models.enums import ApiKeyScope, Role, values


class User(UserMixin, Model):
    """A merchant staff member."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN ({values(Role)})", name="role_valid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10), default=Role.VIEWER)
    active: Mapped[bool] = mapped_column(default=True)
    # Rotated at login, logout and privilege change: sessions carry it, so old ones die.
    session_token: Mapped[str | None] = mapped_column(String(64))
    totp_secret: Mapped[str | None] = mapped_column(EncryptedString())  # app/crypto.py
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_counter: Mapped[int | None]
    recovery_codes: Mapped[list[str] | None] = mapped_column(JSON)  # hashes, used ones removed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def get_id(self) -> str:
        # Flask-Login stores this in the session; including the token ends old sessions.
        return f"{self.id}:{self.session_token or ''}"

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def can_manage_money(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class ApiKey(Model):
    """A merchant API key: only a prefix (to find it) and a hash (to check it) are kept."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(f"scope IN ({values(ApiKeyScope)})", name="scope_valid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(24), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(10), default=ApiKeyScope.WRITE)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyKey(Model):
    """A stored API response, replayed for a repeated POST with the same key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(80))  # "api_key:7" or "client:<ip hash>"
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path, body
    # in_progress until the first request finishes; then the response is kept.
    state: Mapped[str] = mapped_column(String(12), default="in_progress")
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SandboxSession(Model):
    """The sandbox gateway's own record of a hosted checkout (its 'server side')."""

    __tablename__ = "sandbox_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(Text, default="")
    customer_email: Mapped[str] = mapped_column(EncryptedString())  # app/crypto.py
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSON)
    success_url: Mapped[str] = mapped_column(Text)
    cancel_url: Mapped[str] = mapped_column(Text)
    capture_method: Mapped[str] = mapped_column(String(10), default="automatic")
    # open, processing, authorized, succeeded, failed, expired, canceled
    status: Mapped[str] = mapped_column(String(20), default="open")
    payment_id: Mapped[str | None] = mapped_column(String(40))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(Text)
    card_last4: Mapped[str | None] = mapped_column(String(4))
    amount_refunded: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxRefund(Model):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sandbox_sessions.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
