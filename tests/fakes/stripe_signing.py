"""Sign webhook payloads exactly as Stripe does.

Header: `t=<unix ts>,v1=<hex HMAC-SHA256(secret, f"{t}.{payload}")>`. Written from
Stripe's documented scheme rather than with the SDK, so the adapter's use of the
SDK's verifier is checked against an independent implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def signature_header(
    payload: str | bytes, secret: str, timestamp: int | None = None, *, extra_v0: bool = False
) -> str:
    """The Stripe-Signature header value for `payload` signed with `secret`."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{ts}.{payload}".encode(), hashlib.sha256)
    header = f"t={ts},v1={mac.hexdigest()}"
    if extra_v0:  # Stripe also sends a v0 scheme signature in test mode
        header += ",v0=" + "0" * 64
    return header


def signed_event(
    event: dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) for posting `event` as Stripe would."""
    body = json.dumps(event, indent=2).encode()  # Stripe's bodies are pretty-printed
    return body, {
        "Stripe-Signature": signature_header(body, secret, timestamp),
        "Content-Type": "application/json; charset=utf-8",
    }


def make_event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe v1 event envelope around `obj`."""
    import secrets

    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
