"""Gateways that can list their events (Stripe's optional `list_events`): reconcile stores
the ones never delivered through the inbox's insert-or-ignore path and applies them once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.gateways.base import ListsEvents, VerifiedEvent
from app.gateways.resilience import Policy, ResilientGateway
from app.gateways.sandbox import SandboxGateway
from app.models import Payment, WebhookEvent
from app.payments.reconcile import reconcile
from tests.integration.reliability.conftest import count, post_events
from tests.integration.test_webhooks import start_purchase


class ListingSandbox(SandboxGateway):
    """The sandbox plus an event list, like Stripe's GET /v1/events."""

    listed: list[VerifiedEvent]

    def list_events(self, since: datetime) -> list[VerifiedEvent]:
        return list(self.listed)


def test_reconcile_applies_listed_events_that_were_never_delivered(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RECONCILE_GRACE_SECONDS=3600)  # so only the event list can fix it
    sandbox = app.extensions["kassa_gateways"]["sandbox"]
    listing = ListingSandbox(sandbox.inner.processor)
    app.extensions["kassa_gateways"]["sandbox"] = ResilientGateway(listing, Policy())
    assert isinstance(listing, ListsEvents)

    payment, sent = start_purchase(app)
    listing.listed = [
        VerifiedEvent(e["id"], e["type"], e) for e in (json.loads(body) for body, _ in sent)
    ]
    post_events(app, sent[:1])  # the second event is lost
    assert count(app, WebhookEvent) == 1

    with app.test_request_context():
        report = reconcile()
    assert (report.events_listed, report.events_new) == (2, 1)
    assert count(app, WebhookEvent) == 2
    with app.app_context():
        assert db.session.get(Payment, payment.id).status == "succeeded"  # type: ignore[union-attr]
        assert {e.status for e in db.session.execute(select(WebhookEvent)).scalars()} == {
            "processed"
        }

    with app.test_request_context():
        again = reconcile()
    assert (again.events_listed, again.events_new, again.changes) == (2, 0, [])
