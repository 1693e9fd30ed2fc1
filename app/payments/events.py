"""The webhook inbox: verify, record (stop if seen), enqueue, answer; then process.

Receiving never parses before verifying and never applies anything itself: the
event is committed to the inbox first and processed by a job, so a slow database
update or a crash can never lose an event or make the gateway wait.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from app import jobs
from app.extensions import db
from app.gateways import registry
from app.gateways.base import Gateway, Subscriptions, Update, VerifiedEvent
from app.models import WebhookEvent, WebhookStatus
from app.models.base import utcnow
from app.observability import observe_webhook_processed
from app.payments import audit, faults, subscriptions
from app.payments.audit import Actor, gateway_actor
from app.payments.errors import NotFound
from app.payments.inbox_writer import inbox_writer
from app.payments.store import insert_or_ignore
from app.payments.uow import lock, lock_all, release_connection, unit_of_work
from app.payments.updates import apply_update_to, payments_locked

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def receive(gateway_name: str, body: bytes, headers: Mapping[str, str]) -> tuple[bool, str]:
    """Verify and store one delivery. Returns (stored_now, event_id).

    The row is committed (grouped with other deliveries arriving at the same moment, see
    app/payments/inbox_writer.py) before this returns; processing is enqueued after that
    commit.
    Raises SignatureError (answer 400) or GatewayNotAvailable (answer 404).
    """
    gateway = registry.get_gateway(gateway_name)
    event = gateway.verify_webhook(body, headers)
    # The writer enqueues the processing of the rows it wrote, after their commit: one
    # webhooks.process_batch job for every group of deliveries committed together.
    row_id = inbox_writer().insert(_row(gateway_name, gateway, event))
    if row_id is None:
        log.info("webhook duplicate", extra={"gateway": gateway_name, "event_id": event.event_id})
    return row_id is not None, event.event_id


def _row(gateway_name: str, gateway: Gateway, event: VerifiedEvent) -> dict[str, Any]:
    """The inbox row's values for a verified event (payload redacted)."""
    payload = json.dumps(gateway.redact(event.payload), separators=(",", ":"), sort_keys=True)
    return {
        "gateway": gateway_name,
        "event_id": event.event_id[:255],
        "event_type": event.event_type[:100],
        "payload": payload,
        "status": WebhookStatus.RECEIVED.value,
        "attempts": 0,
        "received_at": utcnow(),
    }


def store(gateway_name: str, event: VerifiedEvent) -> int | None:
    """Insert a verified event into the inbox unless it is there already, and enqueue its
    processing after the commit. Returns the new row id, or None for a duplicate.

    Used by reconciliation (events listed from the gateway); webhook intake uses the same
    insert-or-ignore through the inbox writer, so an event is applied once whichever way
    it arrived. Inside a caller's unit of work the insert joins its transaction.
    """
    values = _row(gateway_name, registry.get_gateway(gateway_name), event)
    with unit_of_work():
        inserted = insert_or_ignore(WebhookEvent, values, conflict=("gateway", "event_id"))
        row_id = None if inserted is None else int(inserted.id)
        if row_id is not None:
            jobs.enqueue("webhooks.process", row_id)
    return row_id


@jobs.task("webhooks.process", background=True)
def process(event_row_id: int, *, force: bool = False) -> str | None:
    """Apply one stored event exactly once: the inbox row is locked and marked in the
    same transaction as the changes it causes."""
    try:
        fetched = _fetch_subscriptions([event_row_id], force).get(event_row_id, [])
        with unit_of_work():
            row = lock(WebhookEvent, id=event_row_id)
            if row is None:
                return None
            return _apply(row, fetched, force)
    except Exception as exc:
        _record_failure(event_row_id, exc)
        raise


# Events applied in one transaction by webhooks.process_batch (larger groups are split).
BATCH = 100


@jobs.task("webhooks.process_batch", background=True, merge=True)
def process_batch(event_row_ids: Sequence[int]) -> int:
    """Apply stored events exactly once, many in one transaction: their inbox rows are
    locked with one statement and marked in the transaction of the changes they cause,
    whose outbox rows then take one relay run. If any event of the batch fails, nothing of
    the batch is kept and each event runs again on its own (webhooks.process), so one bad
    event fails alone and records its failure. Returns how many events were applied."""
    ids = sorted(set(event_row_ids))
    done = 0
    for start in range(0, len(ids), BATCH):
        done += _process_chunk(ids[start : start + BATCH])
    return done


def _process_chunk(ids: list[int]) -> int:
    if len(ids) > 1:
        try:
            fetched = _fetch_subscriptions(ids, False)
            with unit_of_work():
                rows = lock_all(WebhookEvent, ids)
                interpreted: dict[int, list[Update]] = {}
                wanted: dict[str, set[str]] = {}
                for row in rows:
                    if row.status in (WebhookStatus.PROCESSED, WebhookStatus.DEAD):
                        continue
                    updates = registry.get_gateway(row.gateway).interpret(
                        VerifiedEvent(row.event_id, row.event_type, json.loads(row.payload))
                    )
                    interpreted[row.id] = updates
                    for update in updates:
                        if update.ref.payment_id:
                            wanted.setdefault(row.gateway, set()).add(update.ref.payment_id)
                with payments_locked(wanted):
                    for row in rows:
                        _apply(row, fetched.get(row.id, []), False, interpreted.get(row.id))
            return len(ids)
        except Exception:  # noqa: BLE001 - rolled back; each event alone says which failed
            log.info("webhook batch of %d rolled back; processing one by one", len(ids))
    for row_id in ids:
        try:
            process(row_id)
        except Exception:  # recorded on its row (attempts, last_error); retried by the sweep
            log.exception("webhook event %s failed", row_id)
    return len(ids)


def _apply(
    row: WebhookEvent,
    fetched: list[subscriptions.Fetched],
    force: bool,
    updates: list[Update] | None = None,
) -> str | None:
    """Apply one locked inbox row in the caller's transaction and mark it processed
    (`updates`: what its gateway makes of it, when the caller asked already)."""
    if row.status == WebhookStatus.PROCESSED or (row.status == WebhookStatus.DEAD and not force):
        return row.outcome
    if updates is None:
        event = VerifiedEvent(row.event_id, row.event_type, json.loads(row.payload))
        updates = registry.get_gateway(row.gateway).interpret(event)
    actor = gateway_actor(row.gateway, row.event_id)
    outcomes = []
    for update in updates:
        payment, outcome = apply_update_to(row.gateway, update, actor, source=row.event_type)
        outcomes.append(outcome.value if outcome else "no matching payment")
        # No outcome: no payment matched (looking again would find none either).
        if row.payment_id is None and outcome is not None and payment is not None:
            row.payment_id = payment.id
    for item in fetched:
        result = subscriptions.apply_fetched(item, actor)
        outcomes.append(f"subscription {result.value}")
    faults.hit("webhook_process")
    row.attempts += 1
    row.status = WebhookStatus.PROCESSED
    row.processed_at = utcnow()
    row.last_error = None
    row.next_attempt_at = None
    row.outcome = (", ".join(outcomes) if outcomes else "stored only")[:200]
    observe_webhook_processed(row.gateway, row.received_at, row.processed_at)
    return row.outcome


def _fetch_subscriptions(
    event_row_ids: list[int], force: bool
) -> dict[int, list[subscriptions.Fetched]]:
    """The subscriptions the events are about, each re-fetched from its gateway before the
    events' transaction starts (no row lock is held while a gateway answers)."""
    rows = db.session.execute(
        select(
            WebhookEvent.id,
            WebhookEvent.gateway,
            WebhookEvent.event_id,
            WebhookEvent.event_type,
            WebhookEvent.payload,
            WebhookEvent.status,
        ).where(WebhookEvent.id.in_(event_row_ids))
    ).all()
    release_connection()
    fetched: dict[int, list[subscriptions.Fetched]] = {}
    for row in rows:
        if row.status == WebhookStatus.PROCESSED or (
            row.status == WebhookStatus.DEAD and not force
        ):
            continue
        gateway = registry.get_gateway(row.gateway)
        # The resilience layer forwards subscription calls to the adapter (its __getattr__).
        adapter = getattr(gateway, "inner", gateway)
        if not isinstance(adapter, Subscriptions):
            continue
        event = VerifiedEvent(row.event_id, row.event_type, json.loads(row.payload))
        for named in adapter.subscription_events(event):
            item = subscriptions.fetch_for_event(row.gateway, named)
            if item is not None:
                fetched.setdefault(row.id, []).append(item)
    return fetched


def _record_failure(event_row_id: int, exc: Exception) -> None:
    with unit_of_work():
        row = lock(WebhookEvent, id=event_row_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        max_attempts = int(current_app.config.get("WEBHOOK_MAX_ATTEMPTS", MAX_ATTEMPTS))
        if row.attempts >= max_attempts:
            # Dead-lettered: shown in the merchant's inbox, reprocessable by hand.
            row.status = WebhookStatus.DEAD
            row.next_attempt_at = None
            log.error(
                "webhook event dead after %s attempts",
                row.attempts,
                extra={"gateway": row.gateway, "event_id": row.event_id},
            )
        else:
            row.status = WebhookStatus.FAILED
            row.next_attempt_at = utcnow() + retry_delay(row.attempts)


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: base, 2×base, 4×base... capped at an hour."""
    base = float(current_app.config.get("WEBHOOK_RETRY_BASE_SECONDS", 10))
    step = min(3600.0, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=random.uniform(step * 0.75, step))


def due_for_retry(limit: int = 1000) -> list[int]:
    """Failed events whose backoff has passed, and received ones left unprocessed."""
    now = utcnow()
    stale = now - timedelta(minutes=2)
    stmt = (
        select(WebhookEvent.id)
        .where(
            ((WebhookEvent.status == WebhookStatus.FAILED) & (WebhookEvent.next_attempt_at <= now))
            | (
                (WebhookEvent.status == WebhookStatus.RECEIVED)
                & (WebhookEvent.received_at <= stale)
            )
        )
        .order_by(WebhookEvent.id)
        .limit(limit)
    )
    return list(db.session.execute(stmt).scalars())


@jobs.task("webhooks.retry_due")
def retry_due() -> int:
    """Periodic: re-run events whose backoff has passed (and received ones whose job was
    lost). Each runs as its own job, so one poison event cannot block the rest. A batch is
    large enough that a worker stopped with a backlog (see app/jobs Drainer) is caught up
    within a sweep or two, not a hundred."""
    ids = due_for_retry(int(current_app.config.get("WEBHOOK_RETRY_BATCH", 1000)))
    db.session.rollback()  # end the read transaction before the jobs take locks
    for row_id in ids:
        jobs.enqueue("webhooks.process", row_id)
    return len(ids)


def reprocess(event_row_id: int, actor: Actor | None = None) -> str | None:
    """Run a failed or dead event again now (merchant's button, CLI); audited when a
    person asked. Raises what processing raised (the row records it too)."""
    if actor is not None:
        with unit_of_work():
            row = lock(WebhookEvent, id=event_row_id)
            if row is None:
                raise NotFound("No such webhook event.")
            audit.record(
                actor,
                "webhook.reprocess_requested",
                row,
                from_state=row.status,
                details={"event_id": row.event_id, "attempts": row.attempts},
            )
    outcome: str | None = process(event_row_id, force=True)
    return outcome


def inbox(status: str | None = None, limit: int = 50) -> list[WebhookEvent]:
    """The merchant's view of the inbox, newest first; `status="dead"` for the dead letters."""
    stmt = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookEvent.status == status)
    return list(db.session.execute(stmt).scalars())


def counts_by_status() -> dict[str, int]:
    """How many inbox events are in each status (dashboard badge: dead > 0 needs a look)."""
    rows = db.session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    ).all()
    return {str(status): int(n) for status, n in rows}
