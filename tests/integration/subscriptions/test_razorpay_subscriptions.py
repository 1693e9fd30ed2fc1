"""Razorpay Subscriptions through the SDK over real HTTP against the fake: a Plan made on
demand, the subscription created and authorised on our Checkout page (its signature
verified server-side), renewals (`subscription.charged`), a failed renewal and its
recovery (pending -> active), cancel at the cycle's end, what Razorpay allows instead of
undoing it (resuming a pause), cancel now, a cancellation made in Razorpay's dashboard,
refunds of a period, plan change, reconciliation, and every ordering of one cycle's events
(each delivered twice) converging."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Payment, Plan, Subscription
from app.models.base import utcnow
from app.payments import reconcile, refunds, subscriptions
from app.payments.audit import CUSTOMER, SYSTEM, Actor
from app.payments.entitlement import entitlement
from app.payments.errors import InvalidState
from tests.fakes.razorpay_api import FakeRazorpay
from tests.fakes.razorpay_signing import signed_webhook
from tests.integration.razorpay_app import razorpay_config

MERCHANT = Actor("user", "1")


@dataclass
class Store:
    app: Flask
    client: FlaskClient
    fake: FakeRazorpay
    plan_id: str

    def deliver_twice(self, since: int) -> None:
        for event_id, body in self.fake.sub_events[since:]:
            self.deliver(event_id, body, times=2)

    def deliver(self, event_id: str, body: dict[str, Any], *, times: int = 1) -> None:
        raw, headers = signed_webhook(self.fake.webhook_secret, body, event_id)
        for _ in range(times):
            answer = self.client.post("/webhooks/razorpay", data=raw, headers=headers)
            assert answer.status_code == 200, answer.get_data(as_text=True)

    def act(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` (a fake's clock step or a core change), then deliver what it caused."""
        since = len(self.fake.sub_events)
        with self.app.test_request_context():
            result = fn(*args, **kwargs)
        self.deliver_twice(since)
        return result


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def store(make_app: Callable[..., Flask], fake: FakeRazorpay) -> Iterator[Store]:
    app = make_app(**razorpay_config(fake, WTF_CSRF_ENABLED=False))
    with app.app_context():
        plan = subscriptions.create_plan(
            sku="tea-monthly",
            name="Tea club",
            amount=49900,
            currency="INR",
            interval="month",
            actor=SYSTEM,
        )
        plan_id = plan.public_id
    with app.test_client() as client:
        yield Store(app, client, fake, plan_id)


def start(store: Store, plan_id: str | None = None) -> tuple[str, str]:
    """Start through the plan page; returns (our id, Razorpay's subscription id)."""
    answer = store.client.post(
        f"/plans/{plan_id or store.plan_id}",
        data={"email": "asha@example.com", "name": "Asha", "gateway": "razorpay"},
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    public_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert answer.headers["Location"].endswith(f"/checkout/razorpay/subscriptions/{public_id}")
    row = mirror(store, public_id)
    assert row.gateway_subscription_id in store.fake.subscriptions
    return public_id, str(row.gateway_subscription_id)


def subscribe(store: Store, plan_id: str | None = None) -> tuple[str, str]:
    """Start, authorise in Razorpay Checkout, post its callback, deliver the events."""
    public_id, sub_id = start(store, plan_id)
    since = len(store.fake.sub_events)
    payment = store.fake.authenticate(sub_id)
    fields = store.fake.subscription_callback_fields(sub_id, payment["id"])
    answer = store.client.post(
        f"/checkout/razorpay/subscriptions/{public_id}/callback", data=fields
    )
    assert answer.status_code == 303
    assert f"/subscriptions/{public_id}?t=" in answer.headers["Location"]
    store.deliver_twice(since)
    return public_id, sub_id


def mirror(store: Store, public_id: str) -> Subscription:
    with store.app.app_context():
        sub = db.session.execute(
            select(Subscription).where(Subscription.public_id == public_id)
        ).scalar_one()
        db.session.expunge(sub)
        return sub


def periods(store: Store, public_id: str) -> list[tuple[str, int, str | None, str | None]]:
    with store.app.app_context():
        sub_id = mirror(store, public_id).id
        rows = db.session.execute(
            select(Payment).where(Payment.subscription_id == sub_id).order_by(Payment.id)
        ).scalars()
        return [(p.status, p.amount, p.gateway_payment_id, p.gateway_invoice_id) for p in rows]


def test_plan_made_once_subscription_created_and_checkout_page(store: Store) -> None:
    fake = store.fake
    public_id, sub_id = start(store)
    start(store)
    plans = fake.calls("POST", "/v1/plans")
    assert len(plans) == 1
    assert plans[0].json == {
        "period": "monthly",
        "interval": 1,
        "item": {"name": "Tea club", "amount": 49900, "currency": "INR"},
        "notes": {"plan_id": store.plan_id},
    }
    created = fake.calls("POST", "/v1/subscriptions")[0].json
    assert created["plan_id"] in fake.plans and created["total_count"] == 120
    assert created["customer_notify"] == 1 and "start_at" not in created
    assert created["notes"] == {"subscription_id": public_id, "plan_id": store.plan_id}
    with store.app.app_context():
        plan = db.session.execute(select(Plan)).scalar_one()
        assert plan.razorpay_plan_id == created["plan_id"]
    assert mirror(store, public_id).status == "incomplete"

    page = store.client.get(f"/checkout/razorpay/subscriptions/{public_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    match = re.search(r'data-options="([^"]+)"', html)
    assert match is not None
    options = json.loads(match.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    base = store.app.config["PUBLIC_BASE_URL"]
    assert options == {
        "key": fake.key_id,
        "subscription_id": sub_id,
        "name": store.app.config["STORE_NAME"],
        "description": "Tea club",
        "prefill": {"name": "Asha", "email": "asha@example.com"},
        "notes": {"subscription_id": public_id},
        "callback_url": f"{base}/checkout/razorpay/subscriptions/{public_id}/callback",
        "redirect": True,
    }
    assert fake.key_secret not in html and fake.webhook_secret not in html


def test_a_trial_starts_later_and_is_trialing_until_start_at(
    store: Store, make_app: Callable[..., Flask]
) -> None:
    with store.app.app_context():
        trial = subscriptions.create_plan(
            sku="tea-trial",
            name="Tea trial",
            amount=29900,
            currency="INR",
            interval="week",
            interval_count=2,
            trial_days=14,
            actor=SYSTEM,
        ).public_id
    public_id, sub_id = subscribe(store, trial)
    created = store.fake.calls("POST", "/v1/subscriptions")[0].json
    assert created["start_at"] == store.fake.subscriptions[sub_id]["start_at"]
    assert created["total_count"] == 260
    sub = mirror(store, public_id)
    assert sub.status == "trialing" and sub.trial_end is not None
    assert entitlement(sub, utcnow()).reason == "trialing"
    assert periods(store, public_id) == []  # the mandate's token charge is no period
    store.act(store.fake.renew, sub_id)  # start_at reached: the first charge
    sub = mirror(store, public_id)
    assert sub.status == "active" and [p[1] for p in periods(store, public_id)] == [29900]


def test_start_renew_twice_fail_recover_cancel_at_cycle_end_cancel_now(store: Store) -> None:
    fake = store.fake
    public_id, sub_id = subscribe(store)
    sub = mirror(store, public_id)
    assert sub.status == "active" and sub.gateway_customer_id
    assert entitlement(sub, utcnow()).entitled
    assert [p[:2] for p in periods(store, public_id)] == [("succeeded", 49900)]

    store.act(fake.renew, sub_id)
    store.act(fake.renew, sub_id)
    sub = mirror(store, public_id)
    assert sub.current_period_start is not None and sub.current_period_end is not None
    assert (sub.current_period_end - sub.current_period_start).days == 30
    paid = periods(store, public_id)
    assert [p[0] for p in paid] == ["succeeded"] * 3
    # Each paid period is its own payment: Razorpay's payment and invoice ids.
    assert [p[2] for p in paid] == [
        i["payment_id"] for i in sorted(fake.invoices.values(), key=lambda i: i["billing_start"])
    ]
    assert len({p[3] for p in paid}) == 3

    store.act(fake.renew, sub_id, fail=True)
    sub = mirror(store, public_id)
    assert sub.status == "past_due" and sub.gateway_status == "pending"
    assert sub.latest_invoice_status == "issued"
    assert sub.next_payment_attempt is not None
    assert int(sub.next_payment_attempt.timestamp()) == fake.subscriptions[sub_id]["charge_at"]
    assert not entitlement(sub, utcnow()).entitled
    mails = [p.read_text() for p in (Path(store.app.instance_path) / "outbox").glob("dunning-*")]
    assert len(mails) == 1 and fake.subscriptions[sub_id]["short_url"] in mails[0]
    store.act(fake.retry, sub_id)
    sub = mirror(store, public_id)
    assert sub.status == "active" and sub.latest_invoice_status == "paid"
    assert len(periods(store, public_id)) == 4

    store.act(subscriptions.cancel, public_id, MERCHANT, at_period_end=True)
    assert fake.calls("POST", f"/v1/subscriptions/{sub_id}/cancel")[-1].json == {
        "cancel_at_cycle_end": 1
    }
    sub = mirror(store, public_id)
    assert sub.status == "active" and sub.cancel_at_period_end
    assert sub.cancel_at == sub.current_period_end
    assert entitlement(sub, utcnow()).reason == "canceling"

    store.act(subscriptions.cancel, public_id, MERCHANT, at_period_end=False)
    assert fake.calls("POST", f"/v1/subscriptions/{sub_id}/cancel")[-1].json == {
        "cancel_at_cycle_end": 0
    }
    sub = mirror(store, public_id)
    assert sub.status == "canceled" and sub.ended_at is not None
    assert not entitlement(sub, utcnow()).entitled


def test_resume_razorpay_cannot_undo_a_cancellation_but_resumes_a_pause(store: Store) -> None:
    fake = store.fake
    public_id, sub_id = subscribe(store)
    store.act(fake.dashboard_pause, sub_id)  # paused in Razorpay's dashboard
    sub = mirror(store, public_id)
    assert sub.status == "paused" and not entitlement(sub, utcnow()).entitled
    store.act(subscriptions.resume, public_id, MERCHANT)
    assert fake.calls("POST", f"/v1/subscriptions/{sub_id}/resume")[-1].json == {"resume_at": "now"}
    assert mirror(store, public_id).status == "active"

    store.act(subscriptions.cancel, public_id, MERCHANT, at_period_end=True)
    asked = len(fake.requests)
    with store.app.test_request_context(), pytest.raises(InvalidState) as refused:
        subscriptions.resume(public_id, MERCHANT)
    assert "Razorpay cannot undo a cancellation" in refused.value.message
    assert len(fake.requests) == asked  # nothing was sent
    sub = mirror(store, public_id)
    assert sub.cancel_at_period_end and sub.status == "active"
    # The customer's own page says so too, and changes nothing.
    with store.app.test_request_context():
        link = subscriptions.customer_url(public_id)
    token = link.split("t=", 1)[1]
    page = store.client.get(f"/subscriptions/{public_id}?t={token}").get_data(as_text=True)
    assert "Keep my subscription" not in page  # the reason is shown instead of a button
    assert 'id="resume-refused"' in page and "Razorpay cannot undo a cancellation" in page
    answer = store.client.post(f"/subscriptions/{public_id}/resume", data={"t": token})
    assert answer.status_code == 303
    page = store.client.get(answer.headers["Location"]).get_data(as_text=True)
    assert 'role="alert">Razorpay cannot undo a cancellation' in page
    assert len(fake.requests) == asked
    # At the cycle's end Razorpay cancels it (no charge) and Kassa follows.
    store.act(fake.renew, sub_id)
    sub = mirror(store, public_id)
    assert sub.status == "canceled" and len(periods(store, public_id)) == 1


def test_a_cancellation_in_razorpays_dashboard_is_seen(store: Store) -> None:
    public_id, sub_id = subscribe(store)
    store.act(store.fake.dashboard_cancel, sub_id)
    sub = mirror(store, public_id)
    assert sub.status == "canceled" and sub.gateway_status == "cancelled"
    assert sub.ended_at is not None and not entitlement(sub, utcnow()).entitled


def test_halted_is_unpaid_and_reconcile_refetches_open_subscriptions(store: Store) -> None:
    public_id, sub_id = subscribe(store)
    store.act(store.fake.renew, sub_id, fail=True)
    store.fake.halt(sub_id)  # its webhook is lost
    store.fake.retry(sub_id)  # so is this one: the customer paid after all
    assert mirror(store, public_id).status == "past_due"
    with store.app.test_request_context():
        report = reconcile.reconcile()
    sub = mirror(store, public_id)
    assert sub.status == "active" and len(periods(store, public_id)) == 2
    assert report.checked_subscriptions == 1
    store.fake.renew(sub_id, fail=True)
    store.fake.halt(sub_id)
    with store.app.test_request_context():
        subscriptions.sync(public_id, SYSTEM)
    sub = mirror(store, public_id)
    assert sub.status == "unpaid" and sub.gateway_status == "halted"
    assert entitlement(sub, utcnow()).reason == "unpaid"


def test_a_paid_period_refunds_through_its_razorpay_payment(store: Store) -> None:
    public_id, _ = subscribe(store)
    with store.app.app_context():
        payment_id = db.session.execute(select(Payment.public_id)).scalar_one()
    store.act(refunds.create_refund, payment_id, None, "requested_by_customer", MERCHANT)
    rzp_payment = periods(store, public_id)[0][2]
    assert store.fake.calls("POST", f"/v1/payments/{rzp_payment}/refund")
    assert store.fake.payments[str(rzp_payment)]["status"] == "refunded"


def test_forged_or_foreign_callbacks_are_refused_and_change_nothing(store: Store) -> None:
    fake = store.fake
    public_id, sub_id = start(store)
    other_public, other_sub = start(store)
    payment = fake.authenticate(sub_id)
    url = f"/checkout/razorpay/subscriptions/{public_id}/callback"
    forged = [
        fake.subscription_callback_fields(sub_id, payment["id"], secret="not-our-secret"),
        # Signed for another subscription: our stored id is what is checked.
        fake.subscription_callback_fields(other_sub, payment["id"]),
        {**fake.subscription_callback_fields(sub_id, payment["id"]), "razorpay_signature": "é"},
        {"razorpay_payment_id": payment["id"], "razorpay_subscription_id": sub_id},
    ]
    for fields in forged:
        answer = store.client.post(url, data=fields)
        assert answer.status_code == 400
        assert "could not verify" in answer.get_data(as_text=True)
    assert mirror(store, public_id).status == "incomplete"
    assert mirror(store, other_public).status == "incomplete"
    with store.app.app_context():
        rejected = db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "subscription.return_rejected")
        ).scalars()
        assert len(list(rejected)) == len(forged)
    # A forged webhook is refused before anything is read.
    since = len(fake.sub_events)
    fake.dashboard_cancel(sub_id)
    event_id, body = fake.sub_events[since]
    raw, headers = signed_webhook("whsec_forged", body, event_id)
    assert store.client.post("/webhooks/razorpay", data=raw, headers=headers).status_code == 400
    assert mirror(store, public_id).status == "incomplete"
    # The genuine callback is accepted.
    good = store.client.post(url, data=fake.subscription_callback_fields(sub_id, payment["id"]))
    assert good.status_code == 303


def test_a_callback_alone_activates_and_the_page_then_redirects(store: Store) -> None:
    public_id, sub_id = start(store)
    payment = store.fake.authenticate(sub_id)  # no webhook delivered
    store.client.post(
        f"/checkout/razorpay/subscriptions/{public_id}/callback",
        data=store.fake.subscription_callback_fields(sub_id, payment["id"]),
    )
    assert mirror(store, public_id).status == "active"
    assert len(periods(store, public_id)) == 1
    again = store.client.get(f"/checkout/razorpay/subscriptions/{public_id}")
    assert (
        again.status_code == 303 and f"/subscriptions/{public_id}?t=" in again.headers["Location"]
    )


def test_every_ordering_of_a_cycles_events_twice_ends_in_one_state(store: Store) -> None:
    fake, finals = store.fake, set()
    public_id, sub_id = subscribe(store)
    since = len(fake.sub_events)
    fake.renew(sub_id, fail=True)
    fake.retry(sub_id)
    fake.dashboard_cancel(sub_id, at_cycle_end=True)
    fake.renew(sub_id)  # the cycle ends: cancelled
    events = fake.sub_events[since:]
    assert [body["event"] for _, body in events] == [
        "subscription.pending",
        "subscription.charged",
        "subscription.cancelled",
    ]
    for order in itertools.permutations(range(len(events))):
        for index in order:
            event_id, body = events[index]
            # Fresh ids per run: the inbox sees new deliveries (each twice).
            store.deliver(f"{event_id}_{''.join(map(str, order))}", body, times=2)
        sub = mirror(store, public_id)
        finals.add(
            (
                sub.status,
                sub.gateway_status,
                sub.latest_invoice_status,
                tuple(p[0] for p in periods(store, public_id)),
            )
        )
    assert finals == {("canceled", "cancelled", "paid", ("succeeded", "succeeded"))}


def test_a_plan_change_edits_the_subscription(store: Store) -> None:
    fake = store.fake
    public_id, sub_id = subscribe(store)
    with store.app.app_context():
        bigger = subscriptions.create_plan(
            sku="tea-max",
            name="Tea club max",
            amount=99900,
            currency="INR",
            interval="month",
            actor=SYSTEM,
        ).public_id
    store.act(subscriptions.change_plan, public_id, bigger, MERCHANT)
    edit = fake.calls("PATCH", f"/v1/subscriptions/{sub_id}")[-1].json
    assert edit["schedule_change_at"] == "now"
    assert fake.plans[edit["plan_id"]]["item"]["amount"] == 99900
    assert fake.subscriptions[sub_id]["plan_id"] == edit["plan_id"]
    with store.app.app_context():
        sub = db.session.execute(
            select(Subscription).where(Subscription.public_id == public_id)
        ).scalar_one()
        assert sub.plan.public_id == bigger
    store.act(fake.renew, sub_id)
    assert [p[1] for p in periods(store, public_id)] == [49900, 99900]
    # A scheduled cancellation: Razorpay changes active subscriptions only; said first.
    store.act(subscriptions.cancel, public_id, MERCHANT, at_period_end=True)
    with store.app.test_request_context(), pytest.raises(InvalidState):
        subscriptions.change_plan(public_id, store.plan_id, MERCHANT)


def test_daily_plans_under_seven_days_are_refused_with_a_clear_error(store: Store) -> None:
    with store.app.app_context():
        daily = subscriptions.create_plan(
            sku="tea-daily",
            name="Daily tea",
            amount=1000,
            currency="INR",
            interval="day",
            actor=SYSTEM,
        ).public_id
    with store.app.test_request_context():
        from app.payments.errors import PaymentGatewayFailed

        with pytest.raises(PaymentGatewayFailed) as failed:
            subscriptions.start(
                daily, email="a@example.com", name="A", gateway_name="razorpay", actor=CUSTOMER
            )
    assert "7 days or more" in failed.value.message
    assert not store.fake.calls("POST", "/v1/plans")


def test_the_api_cancels_and_says_why_razorpay_cannot_resume(store: Store) -> None:
    from tests.integration.api.conftest import new_key

    public_id, sub_id = subscribe(store)
    key = new_key(store.app)
    headers = {"Authorization": f"Bearer {key}"}

    def post(path: str, body: dict[str, Any], idem: str) -> Any:
        return store.client.post(
            f"/api/v1/subscriptions/{public_id}/{path}",
            json=body,
            headers={**headers, "Idempotency-Key": idem},
        )

    since = len(store.fake.sub_events)
    answer = post("cancel", {"at_period_end": True}, "k-cancel-1")
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()["data"]
    assert data["status"] == "active" and data["cancel_at_period_end"] is True
    assert data["entitlement"]["entitled"] is True
    store.deliver_twice(since)
    refused = post("resume", {}, "k-resume-1")
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "invalid_state" and "Razorpay cannot undo" in error["message"]
    assert not store.fake.calls("POST", f"/v1/subscriptions/{sub_id}/resume")
    now = post("cancel", {"at_period_end": False}, "k-cancel-2")
    assert now.get_json()["data"]["status"] == "canceled"


def test_a_failed_authorisation_goes_back_to_the_page_without_opening_it(store: Store) -> None:
    public_id, sub_id = start(store)
    failed = store.fake.authenticate(sub_id, decline=True)
    answer = store.client.post(
        f"/checkout/razorpay/subscriptions/{public_id}/callback",
        data=store.fake.failure_fields(failed["id"]),
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/checkout/razorpay/subscriptions/{public_id}")
    page = store.client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "did not go through" in page and 'data-auto-open="false"' in page
    assert "declined" not in page  # the unsigned fields' words are not shown
    assert mirror(store, public_id).status == "incomplete"
