"""Delivering outbox events to the merchant's endpoints: claim, send, record.

A delivery is claimed in one transaction (its next attempt pushed out by a lease, so no
other worker takes it meanwhile), sent outside any transaction, and its result recorded
in another. At least once: a process that dies after sending and before recording leaves
the claim to expire, and the delivery goes out again with the same `webhook-id`, which is
how receivers tell a repeat (the Standard Webhooks advice: deduplicate on webhook-id).

Times come from the caller (`now`), so a test walks the retry schedule without waiting;
the signature's `webhook-timestamp` is always the wall clock (receivers check it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import insert, select, update

from app import jobs
from app.extensions import db
from app.models import (
    DeliveryStatus,
    OutboxEvent,
    Role,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.models.base import utcnow
from app.payments import audit, faults, outbox
from app.payments.audit import SYSTEM
from app.payments.outgoing import schedule, secrets, signing
from app.payments.outgoing.http import Result, Sender, TargetPolicy
from app.payments.uow import lock, unit_of_work
from app.proxies import real_app

log = logging.getLogger(__name__)

# A claimed delivery is not taken again before this (longer than any request can last).
LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    endpoint_id: int
    url: str
    secrets: list[str]
    msg_id: str
    body: bytes
    trigger: str  # schedule, replay, recover, test
    attempts: int  # automatic attempts, this one included
    manual: bool


def body_of(event: OutboxEvent) -> bytes:
    """The thin payload: type, when it happened, and the ids and statuses."""
    return json.dumps(
        {
            "type": event.type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": event.data,
        },
        separators=(",", ":"),
    ).encode()


def claim(
    now: datetime,
    *,
    event_ids: Iterable[int] | None = None,
    delivery_ids: Iterable[int] | None = None,
    limit: int = 200,
) -> list[Claim]:
    """Take up to `limit` due deliveries for sending (a lease, not a lock held)."""
    with unit_of_work():
        stmt = (
            select(WebhookDelivery, WebhookEndpoint, OutboxEvent)
            .join(WebhookEndpoint, WebhookDelivery.endpoint_id == WebhookEndpoint.id)
            .join(OutboxEvent, WebhookDelivery.event_id == OutboxEvent.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if event_ids is not None:
            stmt = stmt.where(WebhookDelivery.event_id.in_(list(event_ids)))
        if delivery_ids is not None:
            stmt = stmt.where(WebhookDelivery.id.in_(list(delivery_ids)))
        if db.session.connection().dialect.name == "postgresql":
            # Two sweepers at once each take different rows.
            stmt = stmt.with_for_update(of=WebhookDelivery, skip_locked=True)
        claims = []
        for delivery, endpoint, event in db.session.execute(stmt).all():
            if not endpoint.enabled:
                delivery.status = DeliveryStatus.FAILED
                delivery.last_error = "endpoint disabled"
                delivery.next_attempt_at = None
                continue
            manual = delivery.manual_trigger is not None
            if not manual:
                delivery.attempts += 1
            delivery.next_attempt_at = now + LEASE
            claims.append(
                Claim(
                    delivery_id=delivery.id,
                    endpoint_id=endpoint.id,
                    url=endpoint.url,
                    secrets=secrets.signing_secrets(endpoint, now),
                    msg_id=event.public_id,
                    body=body_of(event),
                    trigger=delivery.manual_trigger
                    or ("test" if event.endpoint_id else "schedule"),
                    attempts=delivery.attempts,
                    manual=manual,
                )
            )
    return claims


def _sender(app: Flask) -> tuple[Sender, ThreadPoolExecutor]:
    found = app.extensions.get("kassa_outgoing")
    if found is None:
        concurrency = int(app.config.get("OUTGOING_WEBHOOK_CONCURRENCY", 16))
        sender = Sender(
            TargetPolicy.from_config(app.config),
            float(app.config.get("OUTGOING_WEBHOOK_TIMEOUT_SECONDS", 15)),
            pool_maxsize=concurrency,
        )
        pool = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix="kassa-webhook-out",
        )
        found = app.extensions["kassa_outgoing"] = (sender, pool)
    return found


def send(claims: list[Claim]) -> list[tuple[Claim, dict[str, str], Result]]:
    """POST every claim (concurrently), signed now with the endpoint's secrets."""
    sender, pool = _sender(real_app())

    def one(c: Claim) -> tuple[Claim, dict[str, str], Result]:
        headers = signing.headers(c.secrets, c.msg_id, int(time.time()), c.body)
        return c, headers, sender.post(c.url, headers, c.body)

    if len(claims) == 1:
        return [one(claims[0])]
    return list(pool.map(one, claims))


def record(results: list[tuple[Claim, dict[str, str], Result]], now: datetime) -> None:
    """Write each attempt to the log and move each delivery on (delivered, retry later,
    failed), and the endpoints with them (failing since, disabled)."""
    if not results:
        return
    disable_after = timedelta(days=int(current_app.config.get("OUTGOING_WEBHOOK_DISABLE_DAYS", 5)))
    with unit_of_work():
        attempts: list[dict[str, Any]] = []
        succeeded: set[int] = set()
        failed: dict[int, str] = {}
        gone: set[int] = set()
        same: dict[tuple[tuple[str, Any], ...], list[int]] = {}
        for c, headers, result in results:
            attempts.append(
                {
                    "delivery_id": c.delivery_id,
                    "attempted_at": now,
                    "trigger": c.trigger,
                    "url": c.url,
                    "request_headers": {
                        "content-type": "application/json",
                        "user-agent": "Kassa-Webhooks/1.0",
                    }
                    | headers,
                    "request_body": c.body.decode(),
                    "response_status": result.status,
                    "response_body": result.body,
                    "duration_ms": result.duration_ms,
                    "error": _describe(result),
                }
            )
            values: dict[str, Any] = {
                "last_attempt_at": now,
                "last_status_code": result.status,
                "last_error": _describe(result),
                "manual_trigger": None,
            }
            if result.delivered:
                values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now}
                values["next_attempt_at"] = None
                succeeded.add(c.endpoint_id)
            else:
                failed[c.endpoint_id] = _describe(result) or "failed"
                if result.status == 410:
                    gone.add(c.endpoint_id)
                retry_after = schedule.parse_retry_after(result.retry_after, now)
                later = (
                    None
                    if c.manual or result.status == 410
                    else schedule.next_attempt(c.attempts, now, retry_after)
                )
                if later is None:
                    values |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
                else:
                    values["next_attempt_at"] = later
            # Deliveries moving on alike (every one delivered in this batch, say) share
            # one UPDATE: a batch of 200 is a statement or two, not 200.
            same.setdefault(tuple(sorted(values.items())), []).append(c.delivery_id)
        for key, ids in same.items():
            db.session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(**dict(key))
            )
        db.session.execute(insert(WebhookAttempt.__table__), attempts)
        if succeeded:
            db.session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id.in_(succeeded - set(failed)),
                    WebhookEndpoint.failing_since.is_not(None),
                )
                .values(failing_since=None)
            )
        for endpoint_id, error in failed.items():
            if endpoint_id in succeeded:
                continue  # some got through: it is not down
            db.session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
                .values(failing_since=now)
            )
            endpoint = lock(WebhookEndpoint, id=endpoint_id)
            if endpoint is None or not endpoint.enabled:
                continue
            if endpoint_id in gone:
                disable(endpoint, "the endpoint answered 410 Gone")
            elif endpoint.failing_since and endpoint.failing_since <= now - disable_after:
                days = disable_after.days
                disable(endpoint, f"every delivery failed for {days} days (last: {error})"[:200])


def _describe(result: Result) -> str | None:
    if result.error:
        return result.error
    if result.delivered:
        return None
    return f"answered {result.status}"


def fail_pending(endpoint: WebhookEndpoint) -> None:
    """A disabled endpoint's waiting deliveries fail now (recoverable once enabled)."""
    db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.FAILED, last_error="endpoint disabled", next_attempt_at=None)
    )


def disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop sending to an endpoint (in the caller's unit of work), tell the merchant."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    fail_pending(endpoint)
    audit.record(
        SYSTEM,
        "webhook_endpoint.disabled",
        endpoint,
        from_state="enabled",
        to_state="disabled",
        details={"reason": reason, "url": endpoint.url},
    )
    outbox.emit(outbox.EventType.ENDPOINT_DISABLED, endpoint)
    jobs.enqueue("outgoing.endpoint_disabled_email", endpoint.id)


def deliver_due(
    now: datetime | None = None,
    *,
    event_ids: Iterable[int] | None = None,
    delivery_ids: Iterable[int] | None = None,
    limit: int | None = None,
) -> int:
    """Claim, send and record one batch of due deliveries; returns how many were sent."""
    now = now or utcnow()
    batch = limit or int(current_app.config.get("OUTGOING_WEBHOOK_BATCH", 200))
    claims = claim(now, event_ids=event_ids, delivery_ids=delivery_ids, limit=batch)
    if not claims:
        return 0
    results = send(claims)
    faults.hit("after_webhook_delivery")
    record(results, now)
    return len(claims)


@jobs.task("outgoing.deliver_events")
def deliver_events(event_ids: list[int]) -> int:
    """Right after the relay: the first attempt of these events' deliveries."""
    total = 0
    while True:
        sent = deliver_due(event_ids=event_ids)
        total += sent
        if not sent:
            return total


@jobs.task("outgoing.deliver_deliveries")
def deliver_deliveries(delivery_ids: list[int]) -> int:
    """A replay or a recovery the merchant asked for, sent now."""
    return deliver_due(delivery_ids=delivery_ids)


@jobs.task("outgoing.sweep")
def sweep(now: datetime | None = None) -> int:
    """Periodic: relay what the relay job missed, then send every delivery now due
    (retries, and claims whose sender died)."""
    outbox.relay()
    total = 0
    batch = int(current_app.config.get("OUTGOING_WEBHOOK_BATCH", 200))
    while True:
        sent = deliver_due(now)
        total += sent
        if sent < batch:
            return total


@jobs.task("outgoing.endpoint_disabled_email")
def endpoint_disabled_email(endpoint_id: int) -> None:
    """Tell the merchant's owners and admins that an endpoint was disabled."""
    from email.message import EmailMessage

    from app import mail

    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.enabled:
        return
    recipients = (
        db.session.execute(
            select(User.email).where(
                User.active.is_(True), User.role.in_((Role.OWNER.value, Role.ADMIN.value))
            )
        )
        .scalars()
        .all()
    )
    db.session.rollback()
    if not recipients:
        return
    from flask import render_template

    message = EmailMessage()
    message["From"] = current_app.config.get("MAIL_DEFAULT_SENDER") or "receipts@kassa.localhost"
    message["To"] = ", ".join(recipients)
    message["Subject"] = f"Webhook endpoint disabled: {endpoint.url}"
    message["Message-ID"] = f"<endpoint_disabled.{endpoint.public_id}.{int(time.time())}@kassa>"
    message.set_content(
        render_template(
            "emails/endpoint_disabled.txt",
            endpoint=endpoint,
            store=current_app.config["STORE_NAME"],
            base_url=current_app.config["PUBLIC_BASE_URL"],
        )
    )
    mail.deliver(message, f"endpoint-disabled-{endpoint.public_id}")
