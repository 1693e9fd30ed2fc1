"""The webhook inbox: verify, record (stop if seen), enqueue, answer; then process.

Receiving never parses before verifying and never applies anything itself: the
event is committed to the inbox first and processed by a job, so a slow database
update or a crash can never lose an event or make the gateway wait.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app import jobs
from app.extensions import db
from app.gateways import registry
from app.gateways.base import VerifiedEvent
from app.models import WebhookEvent, WebhookStatus
from app.models.base import utcnow
from app.observability import observe_webhook_processed
from app.payments.audit import gateway_actor
from app.payments.uow import lock, unit_of_work
from app.payments.updates import apply_update

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def receive(gateway_name: str, body: bytes, headers: Mapping[str, str]) -> tuple[bool, str]:
    """Verify and store one delivery. Returns (stored_now, event_id).

    Raises SignatureError (answer 400) or GatewayNotAvailable (answer 404).
    """
    gateway = registry.get_gateway(gateway_name)
    event = gateway.verify_webhook(body, headers)
    payload = json.dumps(gateway.redact(event.payload), separators=(",", ":"), sort_keys=True)
    values = {"gateway": gateway_name, "event_id": event.event_id[:255],
              "event_type": event.event_type[:100], "payload": payload,
              "status": WebhookStatus.RECEIVED, "attempts": 0, "received_at": utcnow()}
    with unit_of_work():
        insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        result = db.session.execute(
            insert(WebhookEvent).values(**values)
            .on_conflict_do_nothing(index_elements=["gateway", "event_id"])
            .returning(WebhookEvent.id)
        )
        row_id = result.scalar_one_or_none()
        if row_id is not None:
            jobs.enqueue("webhooks.process", row_id)
    if row_id is None:
        log.info("webhook duplicate", extra={"gateway": gateway_name, "event_id": event.event_id})
    return row_id is not None, event.event_id


@jobs.task("webhooks.process")
def process(event_row_id: int, *, force: bool = False) -> str | None:
    """Apply one stored event exactly once: the inbox row is locked and marked in the
    same transaction as the changes it causes."""
    try:
        with unit_of_work():
            row = lock(WebhookEvent, id=event_row_id)
            if row is None:
                return None
            if row.status == WebhookStatus.PROCESSED or (
                    row.status == WebhookStatus.DEAD and not force):
                return row.outcome
            gateway = registry.get_gateway(row.gateway)
            event = VerifiedEvent(row.event_id, row.event_type, json.loads(row.payload))
            updates = gateway.interpret(event)
            actor = gateway_actor(row.gateway, row.event_id)
            outcomes = []
            for update in updates:
                outcome = apply_update(row.gateway, update, actor, source=row.event_type)
                outcomes.append(outcome.value if outcome else "no matching payment")
                if row.payment_id is None:
                    from app.payments.updates import find_payment

                    payment = find_payment(row.gateway, update.ref)
                    row.payment_id = payment.id if payment else None
            row.attempts += 1
            row.status = WebhookStatus.PROCESSED
            row.processed_at = utcnow()
            row.last_error = None
            row.next_attempt_at = None
            row.outcome = (", ".join(outcomes) if outcomes else "stored only")[:200]
            observe_webhook_processed(row.gateway, row.received_at, row.processed_at)
            return row.outcome
    except Exception as exc:
        _record_failure(event_row_id, exc)
        raise


def _record_failure(event_row_id: int, exc: Exception) -> None:
    with unit_of_work():
        row = lock(WebhookEvent, id=event_row_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if row.attempts >= MAX_ATTEMPTS:
            row.status = WebhookStatus.DEAD
            row.next_attempt_at = None
        else:
            row.status = WebhookStatus.FAILED
            row.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 2 ** row.attempts * 5))


def due_for_retry(limit: int = 100) -> list[int]:
    """Failed events whose backoff has passed, and received ones left unprocessed."""
    now = utcnow()
    stale = now - timedelta(minutes=2)
    stmt = select(WebhookEvent.id).where(
        ((WebhookEvent.status == WebhookStatus.FAILED) & (WebhookEvent.next_attempt_at <= now))
        | ((WebhookEvent.status == WebhookStatus.RECEIVED) & (WebhookEvent.received_at <= stale))
    ).order_by(WebhookEvent.id).limit(limit)
    return list(db.session.execute(stmt).scalars())
