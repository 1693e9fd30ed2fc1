"""Stripe Billing through the SDK over real HTTP against the fake: Product + Price on
demand, Checkout mode=subscription, renewals, a failed renewal and its recovery, cancel at
period end, resume, cancel now, a portal cancellation, refunds of a period, and every
ordering of one period's events (each delivered twice) converging."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Payment, Plan, Subscription
from app.models.base import utcnow
from app.payments import refunds, subscriptions
from app.payments.audit import SYSTEM, Actor
from app.payments.entitlement import entitlement
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.stripe_support import (  # noqa: F401  (fixtures)
    Shop,
    make_stripe_app,
    shop,
)

MERCHANT = Actor("user", "1")


@pytest.fixture
def billing(shop: Shop) -> Iterator[Shop]:  # noqa: F811  (the fixture)
    with shop.app.app_context():
        subscriptions.create_plan(
            sku="pro-yen",
            name="Pro",
            amount=1200,
            currency="JPY",
            interval="month",
            actor=SYSTEM,
        )
    yield shop


def subscribe(store: Shop, *, decline: bool = False) -> tuple[str, str]:
    """Subscribe through the plan page; returns (our id, Stripe's subscription id)."""
    with store.app.app_context():
        plan_id = db.session.execute(select(Plan.public_id)).scalar_one()
    answer = store.client.post(
        f"/plans/{plan_id}", data={"email": "kim@example.com", "name": "Kim", "gateway": "stripe"}
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    session_id = answer.headers["Location"].rsplit("/", 1)[1]
    public_id = store.fake.sessions[session_id]["client_reference_id"]
    since = len(store.fake.events)
    sub = store.fake.complete_subscription_session(session_id, decline=decline)
    deliver_twice(store, since)
    return public_id, sub["id"]


def deliver_twice(store: Shop, since: int) -> None:
    for event in store.events_for("", since):
        for _ in range(2):
            assert store.deliver(event).status_code == 200


def mirror(store: Shop, public_id: str) -> Subscription:
    with store.app.app_context():
        sub = db.session.execute(
            select(Subscription).where(Subscription.public_id == public_id)
        ).scalar_one()
        db.session.expunge(sub)
        return sub


def periods(store: Shop, public_id: str) -> list[tuple[str, int, str | None]]:
    with store.app.app_context():
        sub_id = mirror(store, public_id).id
        rows = db.session.execute(
            select(Payment).where(Payment.subscription_id == sub_id).order_by(Payment.id)
        ).scalars()
        return [(p.status, p.amount, p.gateway_payment_id) for p in rows]


def act(store: Shop, fn: Any, *args: Any, in_request: bool = False, **kwargs: Any) -> Any:
    since = len(store.fake.events)
    if in_request:
        with store.app.test_request_context():
            result = fn(*args, **kwargs)
    else:
        result = fn(*args, **kwargs)
    deliver_twice(store, since)
    return result


def test_plan_objects_are_made_once_and_checkout_is_mode_subscription(billing: Shop) -> None:
    subscribe(billing)
    subscribe(billing)
    creates = [r for r in billing.fake.requests if r.method == "POST"]
    assert [r.path for r in creates].count("/v1/products") == 1
    assert [r.path for r in creates].count("/v1/prices") == 1
    price = next(r for r in creates if r.path == "/v1/prices").params
    assert price["unit_amount"] == "1200" and price["currency"] == "jpy"  # zero-decimal
    assert price["recurring"] == {"interval": "month", "interval_count": "1"}
    session = next(r for r in creates if r.path == "/v1/checkout/sessions").params
    assert session["mode"] == "subscription"
    assert session["line_items"][0]["price"].startswith("price_")
    assert session["subscription_data"]["metadata"]["subscription_id"].startswith("sub_")
    with billing.app.app_context():
        plan = db.session.execute(select(Plan)).scalar_one()
        assert plan.stripe_price_id and plan.stripe_product_id


def test_start_renew_twice_fail_recover_cancel_resume_cancel_now(billing: Shop) -> None:
    fake = billing.fake
    public_id, sub_id = subscribe(billing)
    sub = mirror(billing, public_id)
    assert sub.status == "active" and sub.gateway_customer_id
    assert entitlement(sub, utcnow()).entitled
    assert [p[:2] for p in periods(billing, public_id)] == [("succeeded", 1200)]

    act(billing, fake.renew, sub_id)
    act(billing, fake.renew, sub_id)
    sub = mirror(billing, public_id)
    assert sub.current_period_end - sub.current_period_start == timedelta(days=30)
    assert [p[0] for p in periods(billing, public_id)] == ["succeeded"] * 3

    act(billing, fake.renew, sub_id, fail=True)
    sub = mirror(billing, public_id)
    assert sub.status == "past_due" and sub.latest_invoice_status == "open"
    invoice = fake.invoices[fake.subscriptions[sub_id]["latest_invoice"]]
    assert sub.next_payment_attempt is not None
    assert int(sub.next_payment_attempt.timestamp()) == invoice["next_payment_attempt"]
    assert not entitlement(sub, utcnow()).entitled
    mails = [p.read_text() for p in (Path(billing.app.instance_path) / "outbox").glob("dunning-*")]
    assert len(mails) == 1 and f"{fake.base_url}/p/session/bps_" in mails[0]
    act(billing, fake.retry, sub_id)
    assert mirror(billing, public_id).status == "active"
    assert len(periods(billing, public_id)) == 4

    act(billing, subscriptions.cancel, public_id, MERCHANT, at_period_end=True, in_request=True)
    sub = mirror(billing, public_id)
    assert sub.cancel_at_period_end and sub.cancel_at == sub.current_period_end
    act(billing, subscriptions.resume, public_id, MERCHANT, in_request=True)
    sub = mirror(billing, public_id)
    assert not sub.cancel_at_period_end and sub.cancel_at is None
    assert fake.subscriptions[sub_id]["cancel_at_period_end"] is False
    act(billing, subscriptions.cancel, public_id, MERCHANT, at_period_end=False, in_request=True)
    sub = mirror(billing, public_id)
    assert sub.status == "canceled" and sub.ended_at is not None
    assert not entitlement(sub, utcnow()).entitled


def test_a_portal_cancellation_is_seen(billing: Shop) -> None:
    public_id, sub_id = subscribe(billing)
    act(billing, billing.fake.portal_cancel, sub_id)
    sub = mirror(billing, public_id)
    assert sub.cancel_at_period_end and sub.canceled_at is not None
    assert entitlement(sub, utcnow()).reason == "canceling"
    act(billing, billing.fake.renew, sub_id)
    sub = mirror(billing, public_id)
    assert sub.status == "canceled" and len(periods(billing, public_id)) == 1


def test_a_paid_period_refunds_through_its_payment_intent(billing: Shop) -> None:
    public_id, _ = subscribe(billing)
    with billing.app.app_context():
        payment_id = db.session.execute(select(Payment.public_id)).scalar_one()
    act(
        billing,
        refunds.create_refund,
        payment_id,
        None,
        "requested_by_customer",
        MERCHANT,
        in_request=True,
    )
    refund_call = next(r for r in billing.fake.requests if r.path == "/v1/refunds")
    assert refund_call.params["payment_intent"] == periods(billing, public_id)[0][2]


def test_a_declined_first_invoice_stays_incomplete(billing: Shop) -> None:
    public_id, _ = subscribe(billing, decline=True)
    sub = mirror(billing, public_id)
    assert sub.status == "incomplete" and not entitlement(sub, utcnow())
    assert periods(billing, public_id) == []


def test_every_ordering_of_a_periods_events_twice_ends_in_one_state(billing: Shop) -> None:
    fake, finals = billing.fake, set()
    public_id, sub_id = subscribe(billing)
    since = len(fake.events)
    fake.renew(sub_id, fail=True)
    fake.retry(sub_id)
    events = billing.events_for("", since)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "invoice.payment_failed",
        "customer.subscription.updated",
        "invoice.paid",
        "customer.subscription.updated",
    ]
    for order in itertools.permutations(range(len(events))):
        # Each ordering replays the same period's events under fresh ids, so the inbox
        # treats every run as new deliveries (two of each).
        for index in order:
            event = dict(events[index], id=f"{events[index]['id']}_{''.join(map(str, order))}")
            for _ in range(2):
                assert billing.deliver(event).status_code == 200
        sub = mirror(billing, public_id)
        finals.add(
            (
                sub.status,
                sub.latest_invoice_status,
                tuple(p[0] for p in periods(billing, public_id)),
            )
        )
    assert finals == {("active", "paid", ("succeeded", "succeeded"))}


def test_a_plan_change_moves_the_item_with_proration(billing: Shop) -> None:
    public_id, sub_id = subscribe(billing)
    with billing.app.app_context():
        bigger = subscriptions.create_plan(
            sku="max-yen",
            name="Max",
            amount=3000,
            currency="JPY",
            interval="month",
            actor=SYSTEM,
        ).public_id
        euro = subscriptions.create_plan(
            sku="max-eur",
            name="Max EUR",
            amount=3000,
            currency="EUR",
            interval="month",
            actor=SYSTEM,
        ).public_id
    act(billing, subscriptions.change_plan, public_id, bigger, MERCHANT, in_request=True)
    item = billing.fake.subscriptions[sub_id]["items"]["data"][0]
    assert item["price"]["unit_amount"] == 3000
    assert billing.fake.prorations == [{"subscription": sub_id, "behavior": "create_prorations"}]
    with billing.app.app_context():
        sub = db.session.execute(
            select(Subscription).where(Subscription.public_id == public_id)
        ).scalar_one()
        assert sub.plan.public_id == bigger
    with billing.app.test_request_context():
        from app.payments.errors import InvalidState

        with pytest.raises(InvalidState):
            subscriptions.change_plan(public_id, euro, MERCHANT)
    act(billing, billing.fake.renew, sub_id)
    assert [p[1] for p in periods(billing, public_id)] == [1200, 3000]
