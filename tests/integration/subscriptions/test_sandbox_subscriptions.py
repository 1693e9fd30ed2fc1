"""Sandbox subscriptions end to end through the webhook inbox: start, renew twice, a
failed renewal and its recovery (dunning mail, past-due with the retry time), cancel at
period end, resume, cancel now, a portal cancellation, refunds of a paid period, and
every ordering of one period's events (each delivered twice) converging."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, OutboxEvent, Payment, Subscription, WebhookEvent
from app.models.base import utcnow
from app.payments import refunds, subscriptions
from app.payments.audit import CUSTOMER, SYSTEM, Actor
from app.payments.entitlement import entitlement

PERIOD = 60  # seconds: SANDBOX_PERIOD_SECONDS
MERCHANT = Actor("user", "1")


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_app(SANDBOX_PERIOD_SECONDS=PERIOD, SANDBOX_RENEWAL_CLOCK=False)
    with app.app_context():  # the sandbox's own server reaches the database through it
        subscriptions.create_plan(
            sku="pro-monthly",
            name="Pro",
            amount=1500,
            currency="EUR",
            interval="month",
            actor=SYSTEM,
        )
        yield app


def processor(app: Flask) -> Any:
    return app.extensions["kassa_gateways"]["sandbox"].processor


def take_events(app: Flask) -> list[tuple[bytes, dict[str, str]]]:
    events = list(processor(app).undelivered)
    processor(app).undelivered.clear()
    return events


def deliver(app: Flask, events: list[tuple[bytes, dict[str, str]]], times: int = 2) -> None:
    client = app.test_client()
    for body, headers in events:
        for _ in range(times):
            answer = client.post("/webhooks/sandbox", data=body, headers=headers)
            assert answer.status_code == 200, answer.data


def start(app: Flask, scenario: str = "succeed") -> str:
    with app.test_request_context():
        plan = subscriptions.plans()[0]
        sub = subscriptions.start(
            plan.public_id,
            email="sam@example.com",
            name="Sam",
            gateway_name="sandbox",
            actor=CUSTOMER,
        )
        assert sub.status == "incomplete" and sub.checkout_url
        assert sub.checkout_url.endswith(f"/sandbox/subscribe/{sub.gateway_subscription_id}")
        processor(app).subscribe(sub.gateway_subscription_id, scenario)
        public_id = sub.public_id
    deliver(app, take_events(app))
    return public_id


def mirror(app: Flask, public_id: str) -> Subscription:
    with app.app_context():
        sub = db.session.execute(
            select(Subscription).where(Subscription.public_id == public_id)
        ).scalar_one()
        db.session.expunge(sub)
        return sub


def gateway_row(app: Flask, public_id: str) -> Any:
    return processor(app).get_subscription(mirror(app, public_id).gateway_subscription_id)


def period_payments(app: Flask, public_id: str) -> list[tuple[str, int, str]]:
    with app.app_context():
        sub_id = mirror(app, public_id).id
        rows = db.session.execute(
            select(Payment).where(Payment.subscription_id == sub_id).order_by(Payment.id)
        ).scalars()
        return [(p.status, p.amount, p.order.status) for p in rows]


def advance(app: Flask, public_id: str, seconds: float) -> None:
    """Let the gateway's clock run to `seconds` past the current period's end."""
    row = gateway_row(app, public_id)
    moment = (row.next_payment_attempt or row.current_period_end) + timedelta(seconds=seconds)
    assert processor(app).advance(moment) == 1
    deliver(app, take_events(app))


def test_start_renew_twice_fail_recover_cancel_resume_cancel_now(app: Flask) -> None:
    public_id = start(app)
    sub = mirror(app, public_id)
    assert sub.status == "active" and sub.current_period_end is not None
    assert entitlement(sub, utcnow()).entitled
    assert period_payments(app, public_id) == [("succeeded", 1500, "paid")]

    first_end = sub.current_period_end
    advance(app, public_id, 1)
    advance(app, public_id, 1)
    sub = mirror(app, public_id)
    assert sub.status == "active"
    assert sub.current_period_start == first_end + timedelta(seconds=PERIOD)
    assert [p[0] for p in period_payments(app, public_id)] == ["succeeded"] * 3

    # A renewal fails: past due, with the gateway's next retry, and the customer is mailed.
    processor(app).fail_next_renewals(sub.gateway_subscription_id, 1)
    advance(app, public_id, 1)
    sub = mirror(app, public_id)
    assert sub.status == "past_due" and sub.latest_invoice_status == "open"
    assert sub.next_payment_attempt == gateway_row(app, public_id).next_payment_attempt
    assert not entitlement(sub, utcnow()).entitled
    assert len(period_payments(app, public_id)) == 3
    outbox = Path(app.instance_path) / "outbox"
    mails = [p.read_text() for p in outbox.glob("dunning-*")]
    assert len(mails) == 1 and "/sandbox/billing/" in mails[0] and "sam@example.com" in mails[0]
    # The retry succeeds: active again, the open invoice is paid and becomes the 4th payment.
    advance(app, public_id, 0)
    sub = mirror(app, public_id)
    assert sub.status == "active" and sub.next_payment_attempt is None
    assert len(period_payments(app, public_id)) == 4
    assert len(list(outbox.glob("dunning-*"))) == 1

    with app.test_request_context():
        ending = subscriptions.cancel(public_id, MERCHANT, at_period_end=True)
        assert ending.cancel_at_period_end and ending.status == "active"
        assert entitlement(ending, utcnow()).renews is False
        resumed = subscriptions.resume(public_id, MERCHANT)
        assert not resumed.cancel_at_period_end and resumed.canceled_at is None
        ended = subscriptions.cancel(public_id, MERCHANT, at_period_end=False)
        assert ended.status == "canceled" and ended.ended_at is not None
        assert not entitlement(ended, utcnow()).entitled
    deliver(app, take_events(app))  # the gateway's own news of it changes nothing more
    assert mirror(app, public_id).status == "canceled"
    with app.app_context():
        told = db.session.execute(
            select(OutboxEvent.type).where(OutboxEvent.subject_id == public_id)
        ).scalars()
        assert {"subscription.past_due", "subscription.canceled"} <= set(told)


def test_a_portal_cancellation_is_seen_and_ends_at_period_end(app: Flask) -> None:
    public_id = start(app)
    gateway_id = mirror(app, public_id).gateway_subscription_id
    client = app.test_client()
    page = client.post(f"/sandbox/billing/{gateway_id}", data={"action": "cancel"})
    assert page.status_code == 303
    deliver(app, take_events(app))
    sub = mirror(app, public_id)
    assert sub.cancel_at_period_end and sub.status == "active"
    assert entitlement(sub, utcnow()).reason == "canceling"
    advance(app, public_id, 1)
    sub = mirror(app, public_id)
    assert sub.status == "canceled" and sub.ended_at == sub.current_period_end
    assert len(period_payments(app, public_id)) == 1  # no renewal was charged


def test_a_paid_period_is_refundable_like_any_payment(app: Flask) -> None:
    public_id = start(app)
    with app.test_request_context():
        payment = db.session.execute(select(Payment)).scalar_one()
        refund = refunds.create_refund(payment.public_id, 500, "goodwill", MERCHANT)
        refund_id = refund.public_id
    deliver(app, take_events(app))
    assert period_payments(app, public_id) == [("partially_refunded", 1500, "partially_refunded")]
    with app.app_context():
        assert (
            db.session.execute(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.object_id == refund_id)
            ).scalar_one()
            >= 2
        )


def test_a_declined_first_payment_leaves_it_incomplete_and_unentitled(app: Flask) -> None:
    public_id = start(app, "decline")
    sub = mirror(app, public_id)
    assert sub.status == "incomplete" and not entitlement(sub, utcnow()).entitled
    assert period_payments(app, public_id) == []


def test_every_ordering_of_a_periods_events_twice_ends_in_one_state(app: Flask) -> None:
    """The events of one failing-then-recovered period, in all 24 orders, each twice."""
    finals = set()
    for order in itertools.permutations(range(4)):
        public_id = start(app)
        gateway_id = mirror(app, public_id).gateway_subscription_id
        processor(app).fail_next_renewals(gateway_id, 1)
        row = gateway_row(app, public_id)
        processor(app).advance(row.current_period_end + timedelta(seconds=1))
        row = gateway_row(app, public_id)
        processor(app).advance(row.next_payment_attempt)
        events = take_events(app)
        assert len(events) == 4  # payment_failed, updated; paid, updated
        client = app.test_client()
        for index in order:
            for _ in range(2):
                body, headers = events[index]
                assert (
                    client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
                )
        sub = mirror(app, public_id)
        finals.add(
            (
                sub.status,
                sub.latest_invoice_status,
                sub.current_period_end - sub.current_period_start,
                tuple(p[0] for p in period_payments(app, public_id)),
            )
        )
    assert finals == {("active", "paid", timedelta(seconds=PERIOD), ("succeeded", "succeeded"))}
    with app.app_context():
        stored = db.session.execute(select(WebhookEvent.status)).scalars().all()
        assert set(stored) == {"processed"}


def test_the_customer_page_needs_its_signature_and_cancels_at_period_end(app: Flask) -> None:
    public_id = start(app)
    client = app.test_client()
    assert client.get(f"/subscriptions/{public_id}?t=wrong").status_code == 404
    with app.test_request_context():
        token = subscriptions.customer_token(public_id)
    page = client.get(f"/subscriptions/{public_id}?t={token}")
    assert page.status_code == 200 and b"renews automatically" in page.data
    answer = client.post(f"/subscriptions/{public_id}/cancel", data={"t": token})
    assert answer.status_code == 303
    assert mirror(app, public_id).cancel_at_period_end
    assert b"then ends" in client.get(f"/subscriptions/{public_id}?t={token}").data
    assert client.post(f"/subscriptions/{public_id}/resume", data={"t": "bad"}).status_code == 404


def test_plan_page_subscribe_redirects_to_the_gateway(app: Flask) -> None:
    client = app.test_client()
    with app.app_context():
        plan_id = subscriptions.plans()[0].public_id
    page = client.get(f"/plans/{plan_id}")
    assert page.status_code == 200 and b"Subscribe" in page.data
    bad = client.post(
        f"/plans/{plan_id}", data={"email": "nope", "name": "S", "gateway": "sandbox"}
    )
    assert bad.status_code == 422
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Subscription)).scalar_one() == 0
    ok = client.post(
        f"/plans/{plan_id}", data={"email": "s@example.com", "name": "S", "gateway": "sandbox"}
    )
    assert ok.status_code == 303 and "/sandbox/subscribe/sbx_sub_" in ok.headers["Location"]


def test_plan_validation_refuses_bad_input_and_writes_nothing(app: Flask) -> None:
    from app.payments.errors import ValidationFailed

    with app.app_context():
        for bad in (
            {"amount": 0},
            {"currency": "XXQ"},
            {"interval": "fortnight"},
            {"interval_count": 0},
            {"trial_days": -1},
            {"sku": "pro-monthly"},
        ):
            args: dict[str, Any] = {
                "sku": "other",
                "name": "Other",
                "amount": 100,
                "currency": "USD",
                "interval": "week",
                **bad,
            }
            with pytest.raises(ValidationFailed):
                subscriptions.create_plan(**args, actor=SYSTEM)
        assert len(subscriptions.plans()) == 1


def _now() -> datetime:
    return datetime.now(UTC)


def test_reconcile_mirrors_what_no_event_told(app: Flask) -> None:
    """A renewal and a portal cancellation whose events were lost: reconciliation
    re-fetches open subscriptions and catches up (the paid period included)."""
    from app.payments.reconcile import reconcile

    public_id = start(app)
    row = gateway_row(app, public_id)
    processor(app).advance(row.current_period_end + timedelta(seconds=1))
    processor(app).cancel_subscription(row.id, at_period_end=True)
    take_events(app)  # lost
    with app.test_request_context():
        report = reconcile()
    assert report.checked_subscriptions == 1
    assert any(public_id in change for change in report.changes), report.lines()
    sub = mirror(app, public_id)
    assert sub.cancel_at_period_end and sub.current_period_start == row.current_period_end
    assert len(period_payments(app, public_id)) == 2


def test_a_failed_renewal_is_told_to_the_merchant_once(app: Flask) -> None:
    from app import notifications
    from app.models import Role, User

    with app.app_context():
        db.session.add(User(email="owner@shop.test", password_hash="x", role=Role.OWNER.value))
        db.session.commit()
    public_id = start(app)
    processor(app).fail_next_renewals(mirror(app, public_id).gateway_subscription_id, 1)
    advance(app, public_id, 1)
    with app.test_request_context():
        notices = [n for n in notifications.pending_notices() if n.kind == "subscription_past_due"]
        assert len(notices) == 1 and "sam@example.com" in notices[0].subject
        assert notices[0].link.endswith(f"/dashboard/subscriptions/{public_id}")
        assert notifications.sweep() >= 1
        assert not [n for n in notifications.pending_notices() if n.kind == "subscription_past_due"]
