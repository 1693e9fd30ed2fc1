"""The Standard Webhooks signer and the retry schedule (no database)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.payments.outgoing import schedule, signing


def test_signatures_verify_with_the_reference_library_and_fail_when_tampered() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    body = b'{"type":"order.paid","data":{"id":"ord_1"}}'
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([secret], "evt_1", now, body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["type"] == "order.paid"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    # Two secrets (a rotation): a receiver knowing either one verifies.
    old, new = secret, signing.new_secret()
    both = signing.headers([new, old], "evt_1", now, body)
    assert len(both["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, both) and Webhook(new).verify(body, both)


def test_the_specification_example() -> None:
    """The Standard Webhooks specification's own example signature."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_secrets_must_be_whsec_base64() -> None:
    with pytest.raises(ValueError):
        signing.key_bytes("not-a-secret")


def _wait(made: int, now: datetime, retry_after: timedelta | None, rng: random.Random) -> timedelta:
    at = schedule.next_attempt(made, now, retry_after, rng=rng)
    assert at is not None
    return at - now


def test_schedule_with_jitter_and_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    for made, delay in enumerate(schedule.DELAYS[1:], start=1):
        at = schedule.next_attempt(made, now, rng=rng)
        assert at is not None and delay * 0.9 <= at - now <= delay * 1.1
    assert schedule.next_attempt(8, now) is None
    # Retry-After longer than the schedule wins (capped), shorter never shortens it.
    assert _wait(1, now, timedelta(minutes=1), rng) == timedelta(minutes=1)
    assert _wait(3, now, timedelta(seconds=1), rng) >= timedelta(minutes=27)
    assert _wait(1, now, timedelta(days=3), rng) == schedule.MAX_RETRY_AFTER
    assert schedule.parse_retry_after("120", now) == timedelta(seconds=120)
    assert schedule.parse_retry_after("Thu, 01 Jan 2026 00:10:00 GMT", now) == timedelta(minutes=10)
    assert schedule.parse_retry_after("soon", now) is None
