"""Crash safety of the outbox: a process killed between the state change and the delivery
loses nothing; one killed after sending and before recording sends again with the same
`webhook-id` (at least once, as documented in app/payments/outgoing/delivery.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Order, OutboxEvent, WebhookAttempt, WebhookDelivery
from app.models.base import utcnow
from app.payments.audit import Actor
from app.payments.outgoing import delivery, endpoints
from tests.integration.outgoing.receiver import Receiver
from tests.integration.test_webhooks import start_purchase

ROOT = Path(__file__).resolve().parents[3]
MERCHANT = Actor("user", "1")

CHILD = """
import base64, json, sys
from app import create_app
settings = json.loads(sys.argv[1])
app = create_app(settings)
if sys.argv[2] == "post":
    client = app.test_client()
    for body, headers in json.loads(open(sys.argv[3]).read()):
        client.post("/webhooks/sandbox", data=base64.b64decode(body), headers=headers)
else:
    from app.payments.outgoing import delivery
    with app.app_context():
        delivery.sweep()
print("survived")
"""


def run_child(app: Flask, action: str, arg: str, fault: str) -> subprocess.CompletedProcess[str]:
    keys = (
        "TESTING",
        "SECRET_KEY",
        "SQLALCHEMY_DATABASE_URI",
        "JOBS_EAGER",
        "SANDBOX_DELIVER_WEBHOOKS",
        "SANDBOX_WEBHOOK_SECRET",
        "RATELIMIT_ENABLED",
        "PUBLIC_BASE_URL",
        "WTF_CSRF_ENABLED",
        "OUTGOING_WEBHOOK_ALLOWED_NETWORKS",
        "OUTGOING_WEBHOOK_TIMEOUT_SECONDS",
    )
    settings: dict[str, Any] = {k: app.config[k] for k in keys}
    settings["INSTANCE_PATH"] = app.instance_path
    settings["FAULT_POINT"] = fault
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings), action, arg],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_crashes_lose_nothing_and_repeat_with_the_same_webhook_id(
    hook_app: Callable[..., Flask], receiver: Receiver, tmp_path: Path
) -> None:
    app = hook_app()
    with app.test_request_context():
        _, secret = endpoints.create_endpoint(receiver.url, ["order.paid"], "", MERCHANT)
    receiver.secrets = [secret]
    payment, events = start_purchase(app)
    saved = tmp_path / "events.json"
    saved.write_text(json.dumps([[base64.b64encode(b).decode(), h] for b, h in events]))

    # 1. Killed right after the payment's transaction committed, before the relay ran.
    result = run_child(app, "post", str(saved), "outbox_relay")
    assert result.returncode == 1 and "survived" not in result.stdout, result.stderr
    with app.app_context():
        order = db.session.execute(select(Order)).scalar_one()
        assert order.status == "paid"  # the change is committed ...
        event = db.session.execute(
            select(OutboxEvent).where(OutboxEvent.type == "order.paid")
        ).scalar_one()
        assert event.dispatched_at is None  # ... and so is its outbox row, undispatched
        assert db.session.execute(select(WebhookDelivery)).first() is None
    assert receiver.received == []

    # 2. The sweep relays and sends it, and is killed before recording the answer.
    result = run_child(app, "sweep", "-", "after_webhook_delivery")
    assert result.returncode == 1 and "survived" not in result.stdout, result.stderr
    [first] = receiver.wait_for(1)
    assert first.webhook_id == event.public_id and first.verified_with == [0]
    with app.app_context():
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert row.status == "pending" and row.last_attempt_at is None  # never recorded
        lease_end = row.next_attempt_at
        assert db.session.execute(select(WebhookAttempt)).first() is None
        # 3. Once the claim's lease is over, it goes out again: same id, and recorded.
        assert delivery.deliver_due(lease_end - timedelta(seconds=1)) == 0
        assert delivery.deliver_due(lease_end) == 1
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert row.status == "delivered"
    [_, second] = receiver.wait_for(2)
    assert second.webhook_id == first.webhook_id and second.body == first.body
    assert lease_end <= utcnow() + delivery.LEASE
    assert payment.public_id
