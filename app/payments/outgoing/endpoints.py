"""What the dashboard and the API do to webhook endpoints and their deliveries.

Each change runs in one unit of work with its audit entry. URLs are checked against the
SSRF policy when saved (and again on every request, since names can change address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update

from app import jobs
from app.extensions import db
from app.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
from app.models.base import public_id, utcnow
from app.payments import audit, outbox
from app.payments.audit import Actor
from app.payments.errors import InvalidState, NotFound, ValidationFailed
from app.payments.outgoing import delivery, secrets
from app.payments.outgoing.http import TargetPolicy, TargetRefused, Unresolvable
from app.payments.uow import lock, unit_of_work

URL_MAX = 2000
DESCRIPTION_MAX = 200


def _check_url(url: str) -> str:
    url = (url or "").strip()
    if not url or len(url) > URL_MAX:
        raise ValidationFailed(
            "Give the endpoint's URL.",
            details=[{"field": "url", "message": f"required, at most {URL_MAX} characters"}],
        )
    try:
        TargetPolicy.from_config(current_app.config).check_url(url)
    except Unresolvable:
        pass  # its DNS may not be set up yet; every request checks again
    except TargetRefused as exc:
        raise ValidationFailed(
            f"This URL can't receive webhooks: {exc}.",
            details=[{"field": "url", "message": str(exc)}],
        ) from exc
    return url


def _check_types(event_types: Sequence[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(event_types or []))
    unknown = [t for t in chosen if t not in outbox.SUBSCRIBABLE]
    if unknown:
        raise ValidationFailed(
            f"Unknown event types: {', '.join(unknown)}.",
            details=[
                {
                    "field": "event_types",
                    "message": f"each one of: {', '.join(outbox.SUBSCRIBABLE)}",
                }
            ],
        )
    return chosen


def _check_description(description: str | None) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX:
        raise ValidationFailed(
            f"The description is longer than {DESCRIPTION_MAX} characters.",
            details=[{"field": "description", "message": f"at most {DESCRIPTION_MAX}"}],
        )
    return description


def _locked(endpoint_public_id: str) -> WebhookEndpoint:
    endpoint = lock(WebhookEndpoint, public_id=endpoint_public_id)
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def get_endpoint(endpoint_public_id: str) -> WebhookEndpoint:
    endpoint = db.session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.public_id == endpoint_public_id)
    ).scalar_one_or_none()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def current_secret(endpoint: WebhookEndpoint) -> str:
    return secrets.current(endpoint)


def list_endpoints() -> list[WebhookEndpoint]:
    return list(
        db.session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).scalars().all()
    )


def create_endpoint(
    url: str,
    event_types: Sequence[str] | None,
    description: str | None,
    actor: Actor,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (also readable later by managers)."""
    url = _check_url(url)
    types = _check_types(event_types)
    description = _check_description(description)
    with unit_of_work():
        endpoint = WebhookEndpoint(
            public_id=public_id("we"),
            url=url,
            event_types=types,
            description=description,
            enabled=True,
        )
        secret = secrets.set_new(endpoint)
        db.session.add(endpoint)
        audit.record(
            actor,
            "webhook_endpoint.created",
            endpoint,
            to_state="enabled",
            details={"url": url, "event_types": types},
        )
    return endpoint, secret


def update_endpoint(
    endpoint_public_id: str,
    actor: Actor,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given; enabling again forgets the failures that disabled it."""
    checked_url = _check_url(url) if url is not None else None
    types = _check_types(event_types) if event_types is not None else None
    checked_description = _check_description(description) if description is not None else None
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        before = "enabled" if endpoint.enabled else "disabled"
        changes: dict[str, object] = {}
        if checked_url is not None and checked_url != endpoint.url:
            changes["url"] = {"from": endpoint.url, "to": checked_url}
            endpoint.url = checked_url
        if types is not None and types != list(endpoint.event_types):
            changes["event_types"] = {"from": list(endpoint.event_types), "to": types}
            endpoint.event_types = types
        if checked_description is not None and checked_description != endpoint.description:
            changes["description"] = checked_description
            endpoint.description = checked_description
        if enabled is not None and enabled != endpoint.enabled:
            endpoint.enabled = enabled
            if enabled:
                endpoint.disabled_reason = None
                endpoint.failing_since = None
            else:
                endpoint.disabled_reason = "disabled by the merchant"
                delivery.fail_pending(endpoint)
        after = "enabled" if endpoint.enabled else "disabled"
        if changes or before != after:
            audit.record(
                actor,
                "webhook_endpoint.updated",
                endpoint,
                from_state=before,
                to_state=after,
                details=changes or None,
            )
    return endpoint


def delete_endpoint(endpoint_public_id: str, actor: Actor) -> None:
    """Remove an endpoint with its deliveries and their log."""
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        audit.record(
            actor,
            "webhook_endpoint.deleted",
            endpoint,
            from_state="enabled" if endpoint.enabled else "disabled",
            details={"url": endpoint.url},
        )
        db.session.delete(endpoint)


def rotate_secret(endpoint_public_id: str, actor: Actor) -> tuple[WebhookEndpoint, str]:
    """A new signing secret; the old one goes on signing (beside it) for 24 hours."""
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        now = utcnow()
        secret = secrets.rotate(endpoint, now)
        audit.record(
            actor,
            "webhook_endpoint.secret_rotated",
            endpoint,
            details={"previous_valid_until": endpoint.previous_secret_expires_at.isoformat()}
            if endpoint.previous_secret_expires_at
            else None,
        )
    return endpoint, secret


def send_test(endpoint_public_id: str, actor: Actor) -> OutboxEvent:
    """A webhook_endpoint.test event, to this endpoint only, delivered like any other."""
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        if not endpoint.enabled:
            raise InvalidState("Enable the endpoint before sending it a test event.")
        event = OutboxEvent(
            public_id=public_id("evt"),
            type=outbox.EventType.ENDPOINT_TEST.value,
            subject_type="webhook_endpoint",
            subject_id=endpoint.public_id,
            endpoint_id=endpoint.id,
            data={
                "id": endpoint.public_id,
                "object": "webhook_endpoint",
                "message": "A test event from Kassa: your endpoint receives and verifies.",
            },
            created_at=utcnow(),
        )
        db.session.add(event)
        audit.record(
            actor, "webhook_endpoint.test_sent", endpoint, details={"event": event.public_id}
        )
        jobs.enqueue_once("outbox.relay")
    return event


@dataclass(frozen=True)
class DeliveryPage:
    items: list[WebhookDelivery]
    next_cursor: str | None


def list_deliveries(
    endpoint: WebhookEndpoint,
    *,
    status: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first (with their events)."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    if before:
        stmt = stmt.where(WebhookDelivery.id < before)
    rows = list(db.session.execute(stmt).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(rows, str(rows[-1].id) if more and rows else None)


def get_delivery(endpoint: WebhookEndpoint, delivery_public_id: str) -> WebhookDelivery:
    delivery = db.session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.public_id == delivery_public_id,
            WebhookDelivery.endpoint_id == endpoint.id,
        )
    ).scalar_one_or_none()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def replay(endpoint_public_id: str, delivery_public_id: str, actor: Actor) -> WebhookDelivery:
    """Send one delivered or failed delivery again now, re-signed with the current
    secret and the same webhook-id. One attempt: no retries follow it."""
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        if not endpoint.enabled:
            raise InvalidState("Enable the endpoint before replaying its deliveries.")
        delivery = lock(WebhookDelivery, public_id=delivery_public_id, endpoint_id=endpoint.id)
        if delivery is None:
            raise NotFound("No such delivery.")
        if delivery.status == DeliveryStatus.PENDING:
            raise InvalidState("This delivery is still being sent on its retry schedule.")
        before = delivery.status
        delivery.status = DeliveryStatus.PENDING
        delivery.manual_trigger = "replay"
        delivery.next_attempt_at = utcnow()
        audit.record(
            actor,
            "webhook_delivery.replayed",
            delivery,
            from_state=before,
            to_state=DeliveryStatus.PENDING,
            details={"endpoint": endpoint.public_id},
        )
        jobs.enqueue("outgoing.deliver_deliveries", [delivery.id])
    return delivery


def recover(endpoint_public_id: str, since: datetime, actor: Actor) -> int:
    """Send again every delivery of this endpoint that failed, created since `since`
    (each once, re-signed); returns how many."""
    if since.tzinfo is None:
        raise ValidationFailed(
            "Give the time with its timezone.", details=[{"field": "since", "message": "naive"}]
        )
    with unit_of_work():
        endpoint = _locked(endpoint_public_id)
        if not endpoint.enabled:
            raise InvalidState("Enable the endpoint before recovering its deliveries.")
        ids = list(
            db.session.execute(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.endpoint_id == endpoint.id,
                    WebhookDelivery.status == DeliveryStatus.FAILED,
                    WebhookDelivery.created_at >= since,
                )
            )
            .scalars()
            .all()
        )
        if ids:
            db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids))
                .values(
                    status=DeliveryStatus.PENDING,
                    manual_trigger="recover",
                    next_attempt_at=utcnow(),
                )
            )
        audit.record(
            actor,
            "webhook_endpoint.recovered",
            endpoint,
            details={"since": since.isoformat(), "deliveries": len(ids)},
        )
        for start in range(0, len(ids), 100):
            jobs.enqueue("outgoing.deliver_deliveries", ids[start : start + 100])
    return len(ids)
