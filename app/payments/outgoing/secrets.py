"""The one accessor of the endpoints' signing secrets.

Secrets must be readable to sign, so they cannot be hashed. They are stored as given:
main has no encryption helper yet (ENCRYPTION_KEYS / MultiFernet is coming with the
customer-data work). When it lands, only seal() and unseal() change (plus a migration that
seals the stored values); nothing else reads or writes the columns.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from app.models import WebhookEndpoint
from app.payments.outgoing import signing

# The old secret keeps signing alongside the new one this long after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)


def seal(secret: str) -> str:
    return secret


def unseal(stored: str) -> str:
    return stored


def current(endpoint: WebhookEndpoint) -> str:
    return unseal(endpoint.secret)


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a request sent now: the current one, and the previous one
    for ROTATION_OVERLAP after a rotation."""
    found = [unseal(endpoint.secret)]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        found.append(unseal(endpoint.previous_secret))
    return found


def set_new(endpoint: WebhookEndpoint, secret: str | None = None) -> str:
    """Give a new endpoint its first secret (or the one the merchant supplied)."""
    secret = secret or signing.new_secret()
    signing.key_bytes(secret)  # refuses anything that is not whsec_ + base64
    endpoint.secret = seal(secret)
    return secret


def rotate(endpoint: WebhookEndpoint, now: datetime) -> str:
    """A new current secret; the old one signs too until now + ROTATION_OVERLAP."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    secret = signing.new_secret()
    endpoint.secret = seal(secret)
    return secret
