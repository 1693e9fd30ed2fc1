"""The one accessor of the endpoints' signing secrets.

Secrets must be readable to sign, so they cannot be hashed: they are encrypted at rest
instead. The columns are EncryptedString (app/crypto.py, keys from ENCRYPTION_KEYS), so
the values here are plaintext in Python and Fernet tokens in the database; a key that
does not open them raises DecryptionError rather than signing with garbage. Nothing else
reads or writes the columns.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.models import WebhookEndpoint
from app.payments.outgoing import signing

# The old secret keeps signing alongside the new one this long after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)


def current(endpoint: WebhookEndpoint) -> str:
    return endpoint.secret


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a request sent now: the current one, and the previous one
    for ROTATION_OVERLAP after a rotation."""
    found = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(endpoint.previous_secret)
    return found


def set_new(endpoint: WebhookEndpoint, secret: str | None = None) -> str:
    """Give a new endpoint its first secret (or the one the merchant supplied)."""
    secret = secret or signing.new_secret()
    signing.key_bytes(secret)  # refuses anything that is not whsec_ + base64
    endpoint.secret = secret
    return secret


def rotate(endpoint: WebhookEndpoint, now: datetime) -> str:
    """A new current secret; the old one signs too until now + ROTATION_OVERLAP."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    secret = signing.new_secret()
    endpoint.secret = secret
    return secret
