"""Outgoing webhooks end to end: a paid order reaches the merchant's receiver, signed as
Standard Webhooks says (checked by the `standardwebhooks` package), retried on schedule,
disabled on 410 or after days of failing, replayed and recovered on request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import OutboxEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.base import utcnow
from app.payments.audit import Actor
from app.payments.outgoing import delivery, endpoints, schedule, secrets
from tests.integration.outgoing.receiver import Answer, Receiver
from tests.integration.test_core import paid_payment

MERCHANT = Actor("user", "1")


def add_endpoint(app: Flask, receiver: Receiver, types: list[str] | None = None) -> str:
    with app.test_request_context():
        endpoint, secret = endpoints.create_endpoint(receiver.url, types, "test", MERCHANT)
        receiver.secrets = [secret]
        return endpoint.public_id


def the_delivery(app: Flask) -> WebhookDelivery:
    with app.app_context():
        found = db.session.execute(select(WebhookDelivery)).scalars().all()
        assert len(found) == 1
        db.session.expunge_all()
        return found[0]


def test_a_paid_order_is_delivered_once_signed_and_logged(
    hook_app: Callable[..., Flask], receiver: Receiver
) -> None:
    app = hook_app()
    add_endpoint(app, receiver, ["order.paid"])
    payment_id = paid_payment(app)
    [got] = receiver.wait_for(1)
    assert got.verified_with == [0]  # the reference library accepts our signature
    assert got.payload["type"] == "order.paid"
    data = got.payload["data"]
    assert data["status"] == "paid" and data["object"] == "order"
    assert data["fulfillment_status"] == "unfulfilled"
    with app.app_context():
        event = db.session.execute(
            select(OutboxEvent).where(OutboxEvent.type == "order.paid")
        ).scalar_one()
        assert got.webhook_id == event.public_id and event.seq == 1
        row = db.session.execute(select(WebhookDelivery)).scalar_one()
        assert row.status == "delivered" and row.attempts == 1
        [attempt] = db.session.execute(select(WebhookAttempt)).scalars().all()
        assert attempt.response_status == 204 and attempt.error is None
        assert attempt.request_headers["webhook-id"] == event.public_id
        assert attempt.request_body == got.body.decode()
        # Only the subscribed type was sent (payment events of this purchase were not).
        assert db.session.execute(select(func.count(WebhookDelivery.id))).scalar_one() == 1
    assert payment_id


def test_failures_follow_the_schedule_with_one_webhook_id_until_given_up(
    hook_app: Callable[..., Flask], receiver: Receiver, tmp_path: Path
) -> None:
    app = hook_app()
    add_endpoint(app, receiver, ["order.paid"])
    receiver.answer(
        Answer(500),
        Answer(stall=1.5),  # longer than the 1 s timeout
        Answer(429, {"Retry-After": "7200"}),  # more than the 30 min the schedule says
        *[Answer(500)] * 5,
    )
    paid_payment(app)
    receiver.wait_for(1)
    made = 1
    while True:
        row = the_delivery(app)
        assert row.attempts == made
        if row.next_attempt_at is None:
            break
        wait = row.next_attempt_at - row.last_attempt_at
        expected = schedule.DELAYS[made]
        if made == 3:  # after the 429
            assert wait == timedelta(hours=2)
        else:
            assert expected * 0.9 <= wait <= expected * 1.1, (made, wait)
        with app.app_context():
            # Nothing is due a moment early.
            assert delivery.deliver_due(row.next_attempt_at - timedelta(seconds=1)) == 0
            assert delivery.deliver_due(row.next_attempt_at) == 1
        made += 1
    assert made == schedule.MAX_ATTEMPTS == 8
    assert row.status == "failed" and row.last_status_code == 500
    got = receiver.wait_for(8)
    assert len({r.webhook_id for r in got}) == 1  # the same webhook-id on every retry
    assert all(r.verified_with == [0] for r in got)
    with app.app_context():
        errors = [
            a.error
            for a in db.session.execute(
                select(WebhookAttempt).order_by(WebhookAttempt.id)
            ).scalars()
        ]
        assert errors[0] == "answered 500" and errors[1] == "timed out after 1 s"
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        # About 27 hours of failing is not yet the five days that disable an endpoint.
        assert endpoint.enabled and endpoint.failing_since is not None
        first_failure = endpoint.failing_since
    # Five days after the first failure, the next failing attempt disables it.
    receiver.answer(Answer(503))
    with app.test_request_context():
        endpoints.send_test(
            db.session.execute(select(WebhookEndpoint.public_id)).scalar_one(), MERCHANT
        )
    receiver.wait_for(9)
    with app.app_context():
        test = db.session.execute(
            select(WebhookDelivery)
            .join(OutboxEvent)
            .where(OutboxEvent.type == "webhook_endpoint.test")
        ).scalar_one()
        assert test.status == "pending" and test.attempts == 1
        receiver.answer(Answer(503), Answer(503))
        # Four days in, still failing, still enabled; at five days it is disabled.
        assert delivery.deliver_due(first_failure + timedelta(days=4)) == 1
        assert db.session.execute(select(WebhookEndpoint.enabled)).scalar_one()
        db.session.rollback()
        assert delivery.deliver_due(first_failure + timedelta(days=5)) == 1
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        assert not endpoint.enabled
        assert "every delivery failed for 5 days" in (endpoint.disabled_reason or "")
    mails = list((tmp_path / "instance" / "outbox").glob("endpoint-disabled-*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text()
    assert receiver.url in text and "Recover failed deliveries since" in text


def test_410_disables_and_recover_sends_what_was_missed_with_the_same_ids(
    hook_app: Callable[..., Flask], receiver: Receiver
) -> None:
    app = hook_app()
    endpoint_id = add_endpoint(app, receiver)
    receiver.answer(Answer(410))
    first = paid_payment(app)
    receiver.wait_for(1)  # the first event (payment's order.paid) met the 410
    with app.app_context():
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        assert not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
    second = paid_payment(app)  # while disabled: kept as failed, nothing sent
    assert len(receiver.received) == 1
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery)).scalars().all()
        assert rows and all(r.status == "failed" for r in rows)
        missed = {r.event.public_id for r in rows}
    with app.test_request_context():
        endpoints.update_endpoint(endpoint_id, MERCHANT, enabled=True)
        recovered = endpoints.recover(endpoint_id, utcnow() - timedelta(hours=1), MERCHANT)
    assert recovered == len(missed)
    got = receiver.wait_for(1 + len(missed))[1:]
    assert {r.webhook_id for r in got} == missed
    assert {r.payload["type"] for r in got} >= {"order.paid"}
    with app.app_context():
        assert all(
            r.status == "delivered" for r in db.session.execute(select(WebhookDelivery)).scalars()
        )
    assert first != second


def test_rotation_signs_with_both_secrets_and_replay_resigns(
    hook_app: Callable[..., Flask], receiver: Receiver
) -> None:
    app = hook_app()
    endpoint_id = add_endpoint(app, receiver, ["order.paid"])
    old = receiver.secrets[0]
    paid_payment(app)
    [first] = receiver.wait_for(1)
    with app.test_request_context():
        _, new = endpoints.rotate_secret(endpoint_id, MERCHANT)
    assert new != old and new.startswith("whsec_")
    receiver.secrets = [old, new]
    dlv = the_delivery(app)
    with app.test_request_context():
        endpoints.replay(endpoint_id, dlv.public_id, MERCHANT)
    [_, again] = receiver.wait_for(2)
    assert again.webhook_id == first.webhook_id  # a replay keeps the id
    assert again.headers["webhook-timestamp"] >= first.headers["webhook-timestamp"]
    assert again.verified_with == [0, 1]  # receivers on either secret accept it
    assert len(again.headers["webhook-signature"].split(" ")) == 2
    with app.app_context():
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        now = utcnow()
        assert secrets.signing_secrets(endpoint, now) == [new, old]
        # After the 24-hour overlap only the new secret signs.
        assert secrets.signing_secrets(endpoint, now + timedelta(hours=24, seconds=1)) == [new]
        trail = [
            a.trigger
            for a in db.session.execute(
                select(WebhookAttempt).order_by(WebhookAttempt.id)
            ).scalars()
        ]
        assert trail == ["schedule", "replay"]


def test_a_pending_delivery_cannot_be_replayed(
    hook_app: Callable[..., Flask], receiver: Receiver
) -> None:
    from app.payments.errors import InvalidState

    app = hook_app()
    endpoint_id = add_endpoint(app, receiver, ["order.paid"])
    receiver.answer(Answer(500))
    paid_payment(app)
    dlv = the_delivery(app)
    assert dlv.status == "pending"
    with app.test_request_context(), pytest.raises(InvalidState):
        endpoints.replay(endpoint_id, dlv.public_id, MERCHANT)


def test_one_batch_records_each_delivery_by_its_own_outcome(
    hook_app: Callable[..., Flask], receiver: Receiver
) -> None:
    """Two endpoints, one event, sent in one batch: the one answered 204 is delivered, the
    one answered 500 waits for its next attempt (the batch's shared UPDATEs keep them apart)."""
    app = hook_app()
    with app.test_request_context():
        first, secret = endpoints.create_endpoint(receiver.url, ["order.paid"], "a", MERCHANT)
        second, _ = endpoints.create_endpoint(
            receiver.url + "?second", ["order.paid"], "b", MERCHANT
        )
        receiver.secrets = [secret]
        ids = {first.id, second.id}
    receiver.script.append(Answer(500))
    before = utcnow()
    paid_payment(app)
    receiver.wait_for(2)
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery)).scalars().all()
        assert len(rows) == 2
        delivered = [r for r in rows if r.status == "delivered"]
        waiting = [r for r in rows if r.status == "pending"]
        assert len(delivered) == 1 and len(waiting) == 1
        assert delivered[0].last_status_code == 204 and delivered[0].next_attempt_at is None
        assert delivered[0].delivered_at is not None
        late = waiting[0]
        assert late.last_status_code == 500 and late.attempts == 1
        assert late.last_error == "answered 500" and late.delivered_at is None
        assert late.next_attempt_at is not None
        assert late.next_attempt_at.replace(tzinfo=None) >= before.replace(tzinfo=None) + timedelta(
            seconds=3
        )
        assert {r.endpoint_id for r in rows} == ids
        assert db.session.execute(select(func.count(WebhookAttempt.id))).scalar_one() == 2
