"""Merchant API keys: shown once, stored as a lookup prefix and a SHA-256 hash.

A key looks like `kassa_<12 hex>_<43 random characters>`. The prefix finds the row;
the hash of the whole key is compared in constant time. The secret part carries 256
bits of randomness, so a fast hash is enough (nothing to brute-force) and keys survive
a SECRET_KEY rotation. Read keys may only GET; write keys may do everything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request
from sqlalchemy import or_, select, update

from app.api.errors import ApiError
from app.extensions import db
from app.models import ApiKey, ApiKeyScope
from app.models.base import utcnow
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import NotFound
from app.payments.uow import unit_of_work

TOKEN_RE = re.compile(r"^(kassa_[0-9a-f]{12})_([A-Za-z0-9_-]{40,64})$")
# Do not write last_used_at on every request: once a minute is enough to spot unused keys.
TOUCH_EVERY = timedelta(minutes=1)
_DUMMY_HASH = hashlib.sha256(b"kassa-no-such-key").hexdigest()

P = ParamSpec("P")
R = TypeVar("R")


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_key(
    name: str,
    scope: str = ApiKeyScope.WRITE,
    actor: Actor = audit.SYSTEM,
    created_by_id: int | None = None,
) -> tuple[ApiKey, str]:
    """Make a key; returns (row, the full key). The full key is never stored or shown again."""
    scope = ApiKeyScope(scope)
    name = name.strip()[:100]
    if not name:
        raise ValueError("an API key needs a name")
    prefix = "kassa_" + secrets.token_hex(6)
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    with unit_of_work():
        key = ApiKey(
            name=name,
            prefix=prefix,
            key_hash=hash_key(token),
            scope=scope,
            created_by_id=created_by_id,
        )
        db.session.add(key)
        db.session.flush()
        audit.record(
            actor, "api_key.created", key, details={"name": name, "scope": scope, "prefix": prefix}
        )
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


def find_key(token: str) -> ApiKey | None:
    """The active key for this token, or None. Constant-time on the secret part."""
    match = TOKEN_RE.match(token)
    key = None
    if match:
        key = db.session.execute(
            select(ApiKey).where(ApiKey.prefix == match.group(1))
        ).scalar_one_or_none()
    # Compare even when nothing was found, so timing says nothing about which prefixes exist.
    good = hmac.compare_digest(key.key_hash if key else _DUMMY_HASH, hash_key(token))
    if key is None or not good or key.revoked_at is not None:
        return None
    return key


def _touch(key: ApiKey) -> None:
    now = utcnow()
    if key.last_used_at is not None and now - key.last_used_at < TOUCH_EVERY:
        return
    # A conditional update: concurrent requests do not queue on the key's row.
    with unit_of_work():
        db.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - TOUCH_EVERY),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "invalid_api_key",
            "Send the key as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    return token.strip()


def current_key() -> ApiKey | None:
    """The request's API key (checked once per request), None when none was sent.

    Raises ApiError 401 for a malformed, unknown or revoked key.
    """
    if "api_key" in g:
        checked: ApiKey | None = g.api_key  # set below, once per request
        return checked
    token = _bearer()
    key = None
    if token is not None:
        key = find_key(token)
        if key is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "This API key is not valid (unknown or revoked).",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        _touch(key)
    g.api_key = key
    return key


def actor() -> Actor:
    key = g.get("api_key")
    return Actor("api_key", key.prefix) if key is not None else Actor("customer", "api")


def required(scope: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The view needs a key; `write` views refuse read-only keys (403)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = current_key()
            if key is None:
                raise ApiError(
                    401,
                    "authentication_required",
                    "This endpoint needs an API key: `Authorization: Bearer <key>`.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if scope == ApiKeyScope.WRITE and key.scope != ApiKeyScope.WRITE:
                raise ApiError(
                    403,
                    "insufficient_scope",
                    "This API key is read-only; this endpoint needs a write key.",
                    headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
                )
            return view(*args, **kwargs)

        return wrapper

    return decorate


def optional(view: Callable[P, R]) -> Callable[P, R]:
    """The view works without a key, but a key that is sent must be valid."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        current_key()
        return view(*args, **kwargs)

    return wrapper


def has_valid_key() -> bool:
    """For rate-limit exemptions: never raises."""
    try:
        return current_key() is not None
    except ApiError:
        return False
