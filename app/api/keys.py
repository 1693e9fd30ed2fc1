"""Merchant API keys: shown once, stored as a lookup prefix and a SHA-256 hash.

Minimal stand-in written by the dashboard work so its API keys page runs before the API
branch lands. It mirrors that branch's interface (create_api_key, revoke_api_key by
prefix, list_api_keys, hash_key; keys look like `kassa_<12 hex>_<43 characters>`):
at merge, take the API branch's app/api/keys.py over this file.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey, ApiKeyScope
from app.models.base import utcnow
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import NotFound
from app.payments.uow import unit_of_work


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_key(name: str, scope: str = ApiKeyScope.WRITE, actor: Actor = audit.SYSTEM,
                   created_by_id: int | None = None) -> tuple[ApiKey, str]:
    """Make a key; returns (row, the full key). The full key is never stored or shown again."""
    scope = ApiKeyScope(scope)
    name = name.strip()[:100]
    if not name:
        raise ValueError("an API key needs a name")
    prefix = "kassa_" + secrets.token_hex(6)
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    with unit_of_work():
        key = ApiKey(name=name, prefix=prefix, key_hash=hash_key(token), scope=scope,
                     created_by_id=created_by_id)
        db.session.add(key)
        db.session.flush()
        audit.record(actor, "api_key.created", key, details={"name": name, "scope": scope,
                                                             "prefix": prefix})
    return key, token


def revoke_api_key(prefix: str, actor: Actor = audit.SYSTEM) -> ApiKey:
    """Revoke by prefix (what lists show); revoking twice changes nothing."""
    with unit_of_work():
        key = db.session.execute(
            select(ApiKey).where(ApiKey.prefix == prefix).with_for_update()
        ).scalar_one_or_none()
        if key is None:
            raise NotFound("No such API key.")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            audit.record(actor, "api_key.revoked", key, details={"prefix": prefix})
    return key


def list_api_keys() -> list[ApiKey]:
    return list(db.session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())
