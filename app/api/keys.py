"""Merchant API keys: only a lookup prefix and a SHA-256 hash are stored; the full
key is shown once, when it is created.

Minimal version written by the dashboard work (create, list, revoke); the API work
owns this module and may extend it (authentication, last_used_at) at merge.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, ApiKeyScope
from app.models.base import utcnow
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import NotFound, ValidationFailed
from app.payments.uow import lock, unit_of_work

KEY_PREFIX = "kassa_sk_"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_api_key(name: str, scope: str, actor: Actor,
                   created_by_id: int | None = None) -> tuple[ApiKey, str]:
    """Make a key. Returns the row and the full secret (never stored, shown once)."""
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("Give the key a name.", details=[{"field": "name"}])
    if scope not in {s.value for s in ApiKeyScope}:
        raise ValidationFailed("Unknown scope.", details=[{"field": "scope"}])
    prefix = KEY_PREFIX + secrets.token_hex(6)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    with unit_of_work():
        key = ApiKey(name=name[:100], prefix=prefix, key_hash=hash_key(raw), scope=scope,
                     created_by_id=created_by_id)
        db.session.add(key)
        db.session.flush()
        audit.record(actor, "api_key.created", key, details={"prefix": prefix, "scope": scope})
    return key, raw


def revoke_api_key(key_id: int, actor: Actor) -> ApiKey:
    """Revoke a key (idempotent: revoking twice keeps the first time)."""
    with unit_of_work():
        key = lock(ApiKey, id=key_id)
        if key is None:
            raise NotFound("No such API key.")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            audit.record(actor, "api_key.revoked", key, details={"prefix": key.prefix})
    return key


def list_api_keys() -> Sequence[ApiKey]:
    """All keys, newest first (revoked ones included, marked)."""
    return db.session.execute(select(ApiKey).order_by(ApiKey.id.desc())).scalars().all()
