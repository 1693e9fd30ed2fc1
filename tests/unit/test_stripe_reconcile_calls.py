"""The Stripe adapter's optional reconciliation calls, `list_events` and `retrieve_refund`,
with the real SDK talking HTTP to the fake Stripe API (no app, no database)."""

# Fixtures imported from tests/fakes shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.gateways.base import (
    GatewayError,
    ListsEvents,
    PaymentRef,
    RefundRequest,
    RetrievesRefunds,
    VerifiedEvent,
)
from app.gateways.resilience import Policy, ResilientGateway
from app.gateways.stripe import HANDLED_EVENTS, LISTED_EVENTS, StripeGateway, redact
from app.models.enums import PaymentStatus, RefundStatus
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import (
    FAKE_SECRET_KEY,
    FAKE_WEBHOOK_SECRET,
    checkout_request,
    fake_stripe,  # noqa: F401  (fixture)
)
from tests.fakes.stripe_signing import signed_event


def _gateway(fake: FakeStripe, **kw: object) -> StripeGateway:
    return StripeGateway(
        FAKE_SECRET_KEY,
        FAKE_WEBHOOK_SECRET,
        api_base=fake.base_url,
        max_network_retries=0,
        timeout=5,
        **kw,
    )  # type: ignore[arg-type]


@pytest.fixture
def gateway(fake_stripe: FakeStripe) -> Iterator[StripeGateway]:
    gw = _gateway(fake_stripe)
    yield gw
    gw.close()


def _paid(gateway: StripeGateway, fake: FakeStripe, payment_id: str = "pay_abc") -> tuple[str, str]:
    session = gateway.create_checkout(
        checkout_request(payment_id=payment_id, idempotency_key=f"checkout-{payment_id}")
    )
    fake.complete_session(session.reference)
    return session.reference, fake.sessions[session.reference]["payment_intent"]


def _refund(gateway: StripeGateway, pi: str, refund_id: str = "rfd_1", amount: int = 1200) -> str:
    result = gateway.refund(
        RefundRequest(
            refund_id=refund_id,
            payment_id="pay_abc",
            reference=None,
            gateway_payment_id=pi,
            amount=amount,
            currency="USD",
            reason=None,
            idempotency_key=f"refund-{refund_id}",
        )
    )
    return result.gateway_refund_id


def _public(event: dict) -> dict:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


# ----------------------------------------------------------------------------- list_events
def test_the_adapter_offers_both_optional_calls(gateway) -> None:
    assert isinstance(gateway, ListsEvents)
    assert isinstance(gateway, RetrievesRefunds)
    wrapped = ResilientGateway(gateway, Policy())
    assert wrapped.can_list_events and wrapped.can_retrieve_refunds


def test_list_events_asks_for_the_handled_types_since_a_time(gateway, fake_stripe) -> None:
    since = datetime(2026, 11, 23, 12, 0, 30, 900000, tzinfo=UTC)
    gateway.list_events(since)
    calls = fake_stripe.calls("GET", "/v1/events")
    # Stripe takes at most 20 types in one list: the handled types, in groups of 20.
    assert len(calls) == -(-len(LISTED_EVENTS) // 20) > 1
    for n, call in enumerate(calls):
        assert call.query == {
            "created": {"gte": str(int(since.timestamp()))},
            "types": list(LISTED_EVENTS[20 * n : 20 * (n + 1)]),
            "limit": "100",
        }


def test_listed_events_are_the_webhook_payloads_oldest_first(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    _refund(gateway, pi)
    fake_stripe.create_dispute(pi)

    listed = gateway.list_events(_since())

    handled = [_public(e) for e in fake_stripe.events if e["type"] in HANDLED_EVENTS]
    assert [e.event_id for e in listed] == [e["id"] for e in handled]
    assert [e.event_type for e in listed] == [
        "payment_intent.succeeded",  # handled for off-session charges (ignored here)
        "checkout.session.completed",
        "refund.created",
        "charge.refunded",
        "charge.dispute.created",
    ]
    # Exactly what a webhook delivers, redacted as the inbox stores it, so interpret()
    # sees the same thing whichever way an event arrived.
    assert [e.payload for e in listed] == [redact(e) for e in handled]
    for event, public in zip(listed, handled, strict=True):
        body, headers = signed_event(public, FAKE_WEBHOOK_SECRET)
        delivered = gateway.verify_webhook(body, headers)
        assert gateway.interpret(event) == gateway.interpret(delivered)
    assert gateway.interpret(listed[0]) == []  # a checkout's intent: the session settles it
    assert gateway.interpret(listed[1])[0].status == PaymentStatus.SUCCEEDED


def test_listed_events_are_redacted(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, "failed")  # payment_intent.payment_failed
    [event] = gateway.list_events(_since())
    assert event.event_type == "payment_intent.payment_failed"
    assert fake_stripe.events_of("payment_intent.payment_failed")[0]["data"]["object"][
        "client_secret"
    ]
    assert "client_secret" not in json.dumps(event.payload)
    assert event.payload["data"]["object"]["last_payment_error"]["code"] == "card_declined"


def test_events_before_since_are_not_listed(gateway, fake_stripe) -> None:
    _paid(gateway, fake_stripe, "pay_old")
    _paid(gateway, fake_stripe, "pay_new")
    old = next(e for e in fake_stripe.events if e["type"] == "checkout.session.completed")
    old["created"] = int(time.time()) - 5 * 3600
    listed = gateway.list_events(datetime.now(UTC) - timedelta(hours=2))
    sessions = [e for e in listed if e.event_type == "checkout.session.completed"]
    assert [e.payload["data"]["object"]["client_reference_id"] for e in sessions] == ["pay_new"]


def _emit_refund_updates(fake: FakeStripe, n: int) -> list[str]:
    return [
        fake.emit(
            "refund.updated",
            {
                "id": f"re_{i}",
                "object": "refund",
                "amount": 1,
                "currency": "usd",
                "status": "succeeded",
            },
        )["id"]
        for i in range(n)
    ]


def test_list_events_pages_through_everything(gateway, fake_stripe) -> None:
    ids = _emit_refund_updates(fake_stripe, 230)
    fake_stripe.emit("charge.succeeded", {"id": "ch_x", "object": "charge"})  # not handled
    listed = gateway.list_events(_since())
    assert [e.event_id for e in listed] == ids
    calls = fake_stripe.calls("GET", "/v1/events")
    # The first group of types over three pages, then the second group's one page.
    assert [c.query.get("starting_after") for c in calls] == [None, ids[-100], ids[-200], None]


def test_list_events_is_bounded(fake_stripe, caplog) -> None:
    ids = _emit_refund_updates(fake_stripe, 250)
    gw = _gateway(fake_stripe, events_max=120)
    try:
        with caplog.at_level(logging.WARNING, logger="app.gateways.stripe"):
            listed = gw.list_events(_since())
    finally:
        gw.close()
    assert [e.event_id for e in listed] == ids[-120:]  # the newest, oldest first
    assert len(fake_stripe.calls("GET", "/v1/events")) == 3  # 2 pages, then the 2nd group
    assert "stopped after 200" in caplog.text


@pytest.mark.parametrize(
    "status,type_,code,retryable",
    [
        (500, "api_error", "gateway_unavailable", True),
        (429, "rate_limit_error", "rate_limited", True),
        (401, "invalid_request_error", "authentication_failed", False),
    ],
)
def test_list_events_errors_are_gateway_errors(
    gateway, fake_stripe, status, type_, code, retryable
) -> None:
    fake_stripe.queue_error(status, type_, path="/v1/events")
    with pytest.raises(GatewayError) as err:
        gateway.list_events(_since())
    assert (err.value.code, err.value.retryable) == (code, retryable)


def test_a_failing_page_is_retried_by_the_resilient_wrapper(gateway, fake_stripe) -> None:
    ids = _emit_refund_updates(fake_stripe, 150)
    wrapped = ResilientGateway(gateway, Policy(backoff=0.01, backoff_max=0.01))
    fake_stripe.queue_error(503, "api_error", should_retry=True, path="/v1/events")
    assert [e.event_id for e in wrapped.list_events(_since())] == ids


# ----------------------------------------------------------------------------- retrieve_refund
def test_retrieve_refund_follows_a_pending_refund(gateway, fake_stripe) -> None:
    ref_id, pi = _paid(gateway, fake_stripe)
    fake_stripe.refund_status = "pending"
    re_id = _refund(gateway, pi)
    ref = PaymentRef("pay_abc", ref_id, pi)

    update = gateway.retrieve_refund(ref, re_id)
    assert (
        update.gateway_refund_id,
        update.refund_id,
        update.status,
        update.amount,
        update.currency,
    ) == (re_id, "rfd_1", RefundStatus.PENDING, 1200, "USD")
    assert update.ref == PaymentRef("pay_abc", ref_id, pi)
    assert fake_stripe.calls("GET", f"/v1/refunds/{re_id}")

    fake_stripe.set_refund_status(re_id, "succeeded")
    assert gateway.retrieve_refund(ref, re_id).status == RefundStatus.SUCCEEDED
    fake_stripe.set_refund_status(re_id, "failed", "expired_or_canceled_card")
    failed = gateway.retrieve_refund(ref, re_id)
    assert (failed.status, failed.failure_reason) == (
        RefundStatus.FAILED,
        "expired_or_canceled_card",
    )


def test_retrieve_dashboard_refund_names_the_callers_payment(gateway, fake_stripe) -> None:
    ref_id, pi = _paid(gateway, fake_stripe)
    refund = fake_stripe.dashboard_refund(pi, 700)
    update = gateway.retrieve_refund(PaymentRef("pay_abc", ref_id, pi), refund["id"])
    assert (update.refund_id, update.amount, update.ref.payment_id) == (None, 700, "pay_abc")


def test_retrieve_refund_of_another_payment_is_refused(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    re_id = _refund(gateway, pi)
    with pytest.raises(GatewayError) as err:
        gateway.retrieve_refund(PaymentRef("pay_other", None, "pi_other"), re_id)
    assert err.value.code == "invalid_request"


def test_retrieve_unknown_refund_is_not_found(gateway) -> None:
    with pytest.raises(GatewayError) as err:
        gateway.retrieve_refund(PaymentRef("pay_abc"), "re_missing")
    assert err.value.code == "not_found"


def test_handled_events_are_exactly_the_ones_interpret_uses(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    fake_stripe.refund_status = "pending"
    re_id = _refund(gateway, pi)
    fake_stripe.set_refund_status(re_id, "failed")
    fake_stripe.update_dispute(fake_stripe.create_dispute(pi)["id"], "won")
    late = gateway.create_checkout(checkout_request(payment_id="pay_x", idempotency_key="x"))
    fake_stripe.expire_session(late.reference)
    held = gateway.create_checkout(
        checkout_request(payment_id="pay_held", idempotency_key="held", capture_method="manual")
    )
    fake_stripe.complete_session(held.reference)
    fake_stripe.lapse_authorization(fake_stripe.sessions[held.reference]["payment_intent"])
    seen = {e["type"] for e in fake_stripe.events}
    assert seen >= set(HANDLED_EVENTS) - {
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "payment_intent.payment_failed",
        "charge.dispute.updated",
    }
    for event in fake_stripe.events:
        updates = gateway.interpret(VerifiedEvent(event["id"], event["type"], _public(event)))
        if event["type"] == "payment_intent.succeeded":
            # Handled for off-session charges; a checkout's intent is settled by its session.
            assert updates == []
            continue
        assert bool(updates) == (event["type"] in HANDLED_EVENTS), event["type"]
