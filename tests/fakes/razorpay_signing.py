"""Razorpay's signatures, computed independently of the adapter (for fakes and tests).

Payment signature (checkout callback): hex HMAC-SHA256(key_secret, "order_id|payment_id").
Webhook signature: hex HMAC-SHA256(webhook_secret, raw body), in X-Razorpay-Signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def payment_signature(key_secret: str, order_id: str, payment_id: str) -> str:
    return hmac_hex(key_secret, f"{order_id}|{payment_id}".encode())


def webhook_signature(webhook_secret: str, body: bytes) -> str:
    return hmac_hex(webhook_secret, body)


def signed_webhook(
    webhook_secret: str, payload: dict[str, Any] | bytes, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body bytes and the headers Razorpay sends with them."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Razorpay-Signature": webhook_signature(webhook_secret, body),
        "X-Razorpay-Event-Id": event_id or ("evt_" + secrets.token_hex(8)),
    }
    return body, headers
