"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

`webhook-signature` is a space-separated list of `v1,<base64 HMAC-SHA256>` over
`{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's base64-decoded bytes
(secrets are `whsec_` + base64). During a rotation both secrets sign, so a receiver that
knows either verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 24 random bytes (192 bits)."""
    return PREFIX + base64.b64encode(random.token_bytes(24)).decode()


def key_bytes(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a signing secret starts with whsec_")
    return base64.b64decode(secret[len(PREFIX) :], validate=True)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature of this message with this secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; every secret given signs (rotation)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }
