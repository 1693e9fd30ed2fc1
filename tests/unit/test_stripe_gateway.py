"""The Stripe adapter, with the real SDK talking HTTP to the fake Stripe API.

No Flask app and no database: these tests pin what we send to Stripe (exact
form-encoded parameters, idempotency keys, headers), how Stripe's answers and
errors map to Kassa's types, and how webhooks are verified and interpreted.
"""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from app.gateways.base import (
    CaptureRequest,
    DisputeUpdate,
    Gateway,
    GatewayError,
    LineItem,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundUpdate,
    ReturnParams,
    SignatureError,
    VerifiedEvent,
)
from app.gateways.stripe import (
    StripeGateway,
    check_key_safety,
    from_stripe_amount,
    key_mode,
    to_stripe_amount,
)
from app.methods import describe
from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus
from tests.fakes.stripe_api import FakeStripe, decode_form
from tests.fakes.stripe_fixtures import (
    FAKE_SECRET_KEY,
    FAKE_WEBHOOK_SECRET,
    checkout_request,
    fake_stripe,  # noqa: F401  (fixture)
)
from tests.fakes.stripe_signing import make_event, signature_header, signed_event


@pytest.fixture
def gateway(fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeGateway]:
    # The SDK's real backoff is ≥0.5 s per retry; the retry logic itself is untouched.
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.01)
    gw = StripeGateway(
        FAKE_SECRET_KEY,
        FAKE_WEBHOOK_SECRET,
        api_base=fake_stripe.base_url,
        max_network_retries=2,
        timeout=5,
    )
    yield gw
    gw.close()


def test_implements_the_gateway_protocol(gateway: StripeGateway) -> None:
    assert isinstance(gateway, Gateway)
    assert gateway.name == "stripe"


# ----------------------------------------------------------------------------- create
def test_create_checkout_sends_exact_parameters(gateway, fake_stripe) -> None:
    request = checkout_request()
    session = gateway.create_checkout(request)

    [call] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    form = call.form
    expires_at = int(form.pop("expires_at"))
    assert form == {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": "1250",
                    "product_data": {"name": "Blue mug"},
                },
                "quantity": "2",
            },
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": "1200",
                    "product_data": {"name": "Tea towel"},
                },
                "quantity": "1",
            },
        ],
        "client_reference_id": "pay_abc",
        "customer_email": "ada@example.com",
        "metadata": {"order_id": "ord_xyz", "payment_id": "pay_abc"},
        "payment_intent_data": {"metadata": {"order_id": "ord_xyz", "payment_id": "pay_abc"}},
        "success_url": "https://shop.example/checkout/return/pay_abc"
        "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/checkout/cancel/pay_abc",
    }
    assert 120 <= expires_at - request.expires_at.timestamp() <= 180
    assert call.headers["Idempotency-Key"] == "checkout-pay_abc-1"
    assert call.headers["Authorization"] == f"Bearer {FAKE_SECRET_KEY}"
    assert call.headers["Stripe-Version"] == stripe.api_version
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"

    assert session.reference.startswith("cs_test_")
    assert session.redirect_url == f"{fake_stripe.base_url}/pay/{session.reference}"
    assert session.expires_at is not None and int(session.expires_at.timestamp()) == expires_at


def test_success_url_gets_the_session_placeholder_when_missing(gateway, fake_stripe) -> None:
    gateway.create_checkout(checkout_request(success_url="https://shop.example/r/pay_abc"))
    gateway.create_checkout(
        checkout_request(success_url="https://shop.example/r?p=pay_abc", idempotency_key="k2")
    )
    urls = [c.form["success_url"] for c in fake_stripe.calls("POST", "/v1/checkout/sessions")]
    assert urls == [
        "https://shop.example/r/pay_abc?session_id={CHECKOUT_SESSION_ID}",
        "https://shop.example/r?p=pay_abc&session_id={CHECKOUT_SESSION_ID}",
    ]


def test_manual_capture_is_asked_for(gateway, fake_stripe) -> None:
    gateway.create_checkout(checkout_request(capture_method="manual"))
    [call] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert call.form["payment_intent_data"]["capture_method"] == "manual"


def test_expiry_is_the_requested_one_plus_a_transit_margin(gateway, fake_stripe) -> None:
    request = checkout_request(expires_at=datetime.now(UTC) + timedelta(minutes=30))
    gateway.create_checkout(request)
    [call] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    sent = int(call.form["expires_at"])
    assert request.expires_at.timestamp() + 120 <= sent <= request.expires_at.timestamp() + 180
    assert sent % 60 == 0


@pytest.mark.parametrize("minutes", [5, 60 * 48])
def test_expiry_is_clamped_to_stripes_window(gateway, fake_stripe, minutes) -> None:
    now = time.time()
    session = gateway.create_checkout(
        checkout_request(expires_at=datetime.now(UTC) + timedelta(minutes=minutes))
    )
    [call] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    sent = int(call.form["expires_at"])
    assert now + 30 * 60 <= sent <= now + 24 * 3600  # accepted by (fake) Stripe
    assert sent % 300 == 0
    assert session.reference in fake_stripe.sessions


def test_line_items_must_add_up(gateway, fake_stripe) -> None:
    with pytest.raises(GatewayError) as err:
        gateway.create_checkout(checkout_request(amount=9999))
    assert err.value.code == "invalid_request"
    assert fake_stripe.calls() == []


def test_a_repeated_create_replays_the_same_session(gateway, fake_stripe) -> None:
    request = checkout_request()
    first = gateway.create_checkout(request)
    time.sleep(1.1)  # parameters must not depend on the clock
    second = gateway.create_checkout(request)
    assert first == second
    assert len(fake_stripe.sessions) == 1
    a, b = fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert a.body == b.body and a.idempotency_key == b.idempotency_key


def test_same_key_with_other_parameters_is_an_idempotency_conflict(gateway) -> None:
    gateway.create_checkout(checkout_request(idempotency_key="reused"))
    with pytest.raises(GatewayError) as err:
        gateway.create_checkout(
            checkout_request(idempotency_key="reused", customer_email="eve@example.com")
        )
    assert err.value.code == "idempotency_conflict"
    assert not err.value.retryable


# ----------------------------------------------------------------------------- retries
def test_retry_after_500_with_should_retry_uses_the_same_key(gateway, fake_stripe) -> None:
    fake_stripe.queue_error(500, "api_error", should_retry=True, path="/v1/checkout/sessions")
    session = gateway.create_checkout(checkout_request())
    calls = fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert [c.status for c in calls] == [500, 200]
    assert {c.idempotency_key for c in calls} == {"checkout-pay_abc-1"}
    assert calls[0].body == calls[1].body
    assert len(fake_stripe.sessions) == 1 and session.reference in fake_stripe.sessions


def test_no_retry_when_stripe_says_not_to(gateway, fake_stripe) -> None:
    fake_stripe.queue_error(500, "api_error", should_retry=False)
    with pytest.raises(GatewayError) as err:
        gateway.create_checkout(checkout_request())
    assert len(fake_stripe.calls()) == 1
    assert err.value.code == "gateway_unavailable"
    assert err.value.retryable is False


@pytest.mark.parametrize(
    "status,type_,code",
    [
        (400, "invalid_request_error", "parameter_invalid_integer"),
        (402, "card_error", "card_declined"),
    ],
)
def test_no_retry_on_client_errors(gateway, fake_stripe, status, type_, code) -> None:
    fake_stripe.queue_error(status, type_, code=code, times=3)
    with pytest.raises(GatewayError):
        gateway.create_checkout(checkout_request())
    assert len(fake_stripe.calls()) == 1


def test_retries_give_up_after_max_network_retries(gateway, fake_stripe) -> None:
    fake_stripe.queue_error(503, "api_error", should_retry=True, times=5)
    with pytest.raises(GatewayError) as err:
        gateway.create_checkout(checkout_request())
    assert len(fake_stripe.calls()) == 3  # one try + max_network_retries=2
    assert err.value.code == "gateway_unavailable" and err.value.retryable


@pytest.mark.parametrize(
    "status,type_,extra,code,retryable",
    [
        (
            402,
            "card_error",
            {
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
            },
            "card_declined",
            False,
        ),
        (400, "invalid_request_error", {"code": "parameter_missing"}, "invalid_request", False),
        (404, "invalid_request_error", {"code": "resource_missing"}, "not_found", False),
        (401, "invalid_request_error", {}, "authentication_failed", False),
        (403, "invalid_request_error", {}, "authentication_failed", False),
        (429, "invalid_request_error", {"code": "rate_limit"}, "rate_limited", True),
        (400, "idempotency_error", {}, "idempotency_conflict", False),
        (500, "api_error", {"should_retry": False}, "gateway_unavailable", False),
    ],
)
def test_errors_map_to_kassa_codes(
    gateway, fake_stripe, status, type_, extra, code, retryable
) -> None:
    # times=3 so the SDK's own retries (of 429) see the same answer
    fake_stripe.queue_error(status, type_, times=3, **extra)
    with pytest.raises(GatewayError) as err:
        gateway.create_checkout(checkout_request())
    assert err.value.code == code
    assert err.value.retryable is retryable
    assert err.value.http_status == status
    if code == "card_declined":
        assert err.value.decline_code == "insufficient_funds"
        assert err.value.message == "Your card has insufficient funds."
    else:
        assert "Injected" not in err.value.message  # never Stripe's internals


def test_unreachable_stripe_is_gateway_unavailable() -> None:
    gw = StripeGateway(
        FAKE_SECRET_KEY,
        FAKE_WEBHOOK_SECRET,
        api_base="http://127.0.0.1:9",
        max_network_retries=0,
        timeout=2,
    )
    try:
        with pytest.raises(GatewayError) as err:
            gw.create_checkout(checkout_request())
        assert err.value.code == "gateway_unavailable" and err.value.retryable
    finally:
        gw.close()


def test_slow_stripe_times_out(fake_stripe) -> None:
    fake_stripe.latency_ms = 1500
    gw = StripeGateway(
        FAKE_SECRET_KEY,
        FAKE_WEBHOOK_SECRET,
        api_base=fake_stripe.base_url,
        max_network_retries=0,
        timeout=0.3,
    )
    try:
        started = time.monotonic()
        with pytest.raises(GatewayError) as err:
            gw.create_checkout(checkout_request())
        assert time.monotonic() - started < 1.4
        assert err.value.code == "gateway_unavailable"
    finally:
        gw.close()


def test_all_sdk_bases_point_at_the_configured_api_base(fake_stripe) -> None:
    gw = StripeGateway(FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET, api_base=fake_stripe.base_url + "/")
    try:
        bases = gw._client._requestor._options.base_addresses
        assert set(bases.values()) == {fake_stripe.base_url}
        assert set(bases) >= {"api", "connect", "files", "meter_events"}
    finally:
        gw.close()


# ----------------------------------------------------------------------------- retrieve
def test_retrieve_open_session_is_processing_with_expand(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    call = fake_stripe.calls("GET")[-1]
    assert call.path == f"/v1/checkout/sessions/{session.reference}"
    assert call.query == {"expand": ["payment_intent", "payment_intent.latest_charge"]}
    assert update.status == PaymentStatus.PROCESSING
    assert update.ref.payment_id == "pay_abc"
    assert (update.amount, update.currency) == (3700, "USD")


@pytest.mark.parametrize(
    ("wallet", "label"),
    [
        ("apple_pay", "Apple Pay (Visa •••• 4242)"),
        ("google_pay", "Google Pay (Visa •••• 4242)"),
        ("link", "Link (Visa •••• 4242)"),
    ],
)
def test_a_card_paid_through_a_wallet_records_the_wallet(
    gateway, fake_stripe, wallet: str, label: str
) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, "paid", wallet=wallet)
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    assert update.payment_method == {
        "brand": "visa",
        "last4": "4242",
        "method": "card",
        "wallet": wallet,
    }
    assert describe(update.payment_method) == label


def test_retrieve_paid_session(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, "paid", brand="mastercard", last4="4444")
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    pi = fake_stripe.sessions[session.reference]["payment_intent"]
    assert update.status == PaymentStatus.SUCCEEDED
    assert update.gateway_payment_id == pi and update.ref.gateway_payment_id == pi
    assert update.payment_method == {"brand": "mastercard", "last4": "4444"}
    assert (update.amount, update.currency) == (3700, "USD")
    assert update.failure_code is None


def test_retrieve_unpaid_complete_session_is_processing(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, "unpaid")
    assert (
        gateway.retrieve(PaymentRef(reference=session.reference)).status == PaymentStatus.PROCESSING
    )
    fake_stripe.async_result(session.reference, succeeded=False)
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    assert update.status == PaymentStatus.FAILED
    assert update.failure_code == "payment_method_provider_decline"


def test_retrieve_expired_session(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.expire_session(session.reference)
    assert gateway.retrieve(PaymentRef(reference=session.reference)).status == PaymentStatus.EXPIRED


def test_retrieve_declined_attempt_stays_processing_with_reason(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, "failed")
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    assert update.status == PaymentStatus.PROCESSING
    assert update.failure_code == "generic_decline"
    assert update.failure_message == "Your card was declined."


def test_manual_capture_authorizes_then_captures(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request(capture_method="manual"))
    fake_stripe.complete_session(session.reference, "paid")
    update = gateway.retrieve(PaymentRef(reference=session.reference))
    assert update.status == PaymentStatus.AUTHORIZED
    assert update.capture_deadline is not None
    assert update.capture_deadline > datetime.now(UTC) + timedelta(days=6)

    captured = gateway.capture(
        CaptureRequest(
            payment_id="pay_abc",
            reference=session.reference,
            gateway_payment_id=update.gateway_payment_id,
            amount=3700,
            currency="USD",
            idempotency_key="capture-pay_abc",
        )
    )
    call = fake_stripe.calls("POST")[-1]
    assert call.path == f"/v1/payment_intents/{update.gateway_payment_id}/capture"
    assert call.form["amount_to_capture"] == "3700"
    assert call.idempotency_key == "capture-pay_abc"
    assert captured.status == PaymentStatus.SUCCEEDED
    assert captured.payment_method == {"brand": "visa", "last4": "4242"}


def test_retrieve_by_payment_intent_only(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference)
    pi = fake_stripe.sessions[session.reference]["payment_intent"]
    update = gateway.retrieve(PaymentRef(gateway_payment_id=pi))
    assert update.status == PaymentStatus.SUCCEEDED and update.ref.payment_id == "pay_abc"


# ----------------------------------------------------------------------------- return
def test_confirm_return_uses_our_session_not_the_urls(gateway, fake_stripe) -> None:
    ours = gateway.create_checkout(checkout_request())
    other = gateway.create_checkout(
        checkout_request(payment_id="pay_other", idempotency_key="other")
    )
    fake_stripe.complete_session(other.reference)  # someone else's paid session
    update = gateway.confirm_return(
        PaymentRef(payment_id="pay_abc", reference=ours.reference),
        ReturnParams({"session_id": other.reference}),
    )
    assert update is not None
    assert update.ref.reference == ours.reference
    assert update.status == PaymentStatus.PROCESSING
    assert [c.path for c in fake_stripe.calls("GET")] == [f"/v1/checkout/sessions/{ours.reference}"]


def test_confirm_return_without_reference_waits(gateway) -> None:
    assert (
        gateway.confirm_return(
            PaymentRef(payment_id="pay_abc"), ReturnParams({"session_id": "cs_test_x"})
        )
        is None
    )


# ----------------------------------------------------------------------------- cancel
def test_cancel_expires_an_open_session(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    gateway.cancel_checkout(PaymentRef(reference=session.reference))
    assert fake_stripe.sessions[session.reference]["status"] == "expired"
    [expire] = fake_stripe.calls("POST", "/v1/checkout/sessions/*")
    assert expire.path == f"/v1/checkout/sessions/{session.reference}/expire"
    gateway.cancel_checkout(PaymentRef(reference=session.reference))  # again: nothing to do
    assert len(fake_stripe.calls("POST", "/v1/checkout/sessions/*")) == 1


def test_cancel_of_a_completed_session_says_so(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference)
    with pytest.raises(GatewayError) as err:
        gateway.cancel_checkout(PaymentRef(reference=session.reference))
    assert err.value.code == "invalid_request" and not err.value.retryable
    assert fake_stripe.calls("POST", "/v1/checkout/sessions/*") == []  # no expire tried
    assert fake_stripe.sessions[session.reference]["status"] == "complete"


def test_cancel_racing_a_payment_reports_the_completion(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())

    def customer_pays_first(record) -> None:
        if record.path.endswith("/expire"):
            fake_stripe.complete_session(session.reference)

    fake_stripe.before_request = customer_pays_first
    with pytest.raises(GatewayError):
        gateway.cancel_checkout(PaymentRef(reference=session.reference))
    [expire] = fake_stripe.calls("POST", "/v1/checkout/sessions/*")
    assert expire.status == 400
    assert fake_stripe.sessions[session.reference]["status"] == "complete"


def test_cancel_racing_an_expiry_is_fine(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())

    def stripe_expires_first(record) -> None:
        if record.path.endswith("/expire"):
            fake_stripe.expire_session(session.reference)

    fake_stripe.before_request = stripe_expires_first
    gateway.cancel_checkout(PaymentRef(reference=session.reference))
    assert fake_stripe.sessions[session.reference]["status"] == "expired"


# ----------------------------------------------------------------------------- refunds
def _paid(gateway: StripeGateway, fake: FakeStripe, **kw) -> tuple[str, str]:
    session = gateway.create_checkout(checkout_request(**kw))
    fake.complete_session(session.reference)
    return session.reference, fake.sessions[session.reference]["payment_intent"]


def refund_request(pi: str | None, reference: str | None = None, **kw) -> RefundRequest:
    values = {
        "refund_id": "rfd_1",
        "payment_id": "pay_abc",
        "reference": reference,
        "gateway_payment_id": pi,
        "amount": 1200,
        "currency": "USD",
        "reason": "requested_by_customer",
        "idempotency_key": "refund-rfd_1",
    }
    values.update(kw)
    return RefundRequest(**values)  # type: ignore[arg-type]


def test_refund_params_and_idempotency(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    result = gateway.refund(refund_request(pi))
    again = gateway.refund(refund_request(pi))  # a retried job: same key
    [call, call2] = fake_stripe.calls("POST", "/v1/refunds")
    assert call.form == {
        "payment_intent": pi,
        "amount": "1200",
        "reason": "requested_by_customer",
        "metadata": {"refund_id": "rfd_1", "payment_id": "pay_abc"},
    }
    assert call.idempotency_key == call2.idempotency_key == "refund-rfd_1"
    assert result == again
    assert result.status == RefundStatus.SUCCEEDED
    assert len(fake_stripe.refunds) == 1


def test_several_partial_refunds_then_too_much(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    gateway.refund(refund_request(pi, amount=1000, refund_id="rfd_1", idempotency_key="a"))
    gateway.refund(refund_request(pi, amount=2000, refund_id="rfd_2", idempotency_key="b"))
    with pytest.raises(GatewayError) as err:
        gateway.refund(refund_request(pi, amount=800, refund_id="rfd_3", idempotency_key="c"))
    assert err.value.code == "invalid_request"
    assert sum(r["amount"] for r in fake_stripe.refunds.values()) == 3000


def test_refund_reason_is_mapped_or_omitted(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    gateway.refund(refund_request(pi, reason="fraud", amount=100, idempotency_key="a"))
    gateway.refund(refund_request(pi, reason="changed their mind", amount=100, idempotency_key="b"))
    gateway.refund(refund_request(pi, reason=None, amount=100, idempotency_key="c"))
    reasons = [c.form.get("reason") for c in fake_stripe.calls("POST", "/v1/refunds")]
    assert reasons == ["fraudulent", None, None]


def test_refund_finds_the_payment_intent_from_the_session(gateway, fake_stripe) -> None:
    ref, pi = _paid(gateway, fake_stripe)
    gateway.refund(refund_request(None, reference=ref))
    assert fake_stripe.calls("POST", "/v1/refunds")[0].form["payment_intent"] == pi


def test_pending_refund_result(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    fake_stripe.refund_status = "pending"
    assert gateway.refund(refund_request(pi)).status == RefundStatus.PENDING


# ----------------------------------------------------------------------------- amounts
@pytest.mark.parametrize(
    "currency,ours,theirs",
    [
        ("USD", 1250, 1250),  # 2 decimals
        ("JPY", 1000, 1000),  # 0 decimals
        ("BHD", 1250, 1250),  # 3 decimals, last digit 0
        ("ISK", 5, 500),  # ISO zero-decimal, Stripe two-decimal
        ("MGA", 50000, 500),  # ISO two-decimal, Stripe zero-decimal
    ],
)
def test_amount_conversion(currency, ours, theirs) -> None:
    assert to_stripe_amount(ours, currency) == theirs
    assert from_stripe_amount(theirs, currency) == ours


@pytest.mark.parametrize(
    "currency,amount", [("BHD", 1255), ("KWD", 1), ("JOD", 999), ("MGA", 50050)]
)
def test_three_decimal_amounts_must_end_in_zero(currency, amount) -> None:
    with pytest.raises(GatewayError) as err:
        to_stripe_amount(amount, currency)
    assert err.value.code == "invalid_request"
    assert currency in err.value.message


@pytest.mark.parametrize(
    "currency,unit,expected",
    [("JPY", 1500, "1500"), ("USD", 1999, "1999"), ("BHD", 12340, "12340")],
)
def test_checkout_amounts_in_0_2_3_decimal_currencies(
    gateway, fake_stripe, currency, unit, expected
) -> None:
    gateway.create_checkout(
        checkout_request(
            currency=currency, amount=unit * 2, line_items=(LineItem("Thing", unit, 2),)
        )
    )
    [call] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    price = call.form["line_items"][0]["price_data"]
    assert price["currency"] == currency.lower() and price["unit_amount"] == expected
    session = next(iter(fake_stripe.sessions.values()))
    fake_stripe.complete_session(session["id"])
    update = gateway.retrieve(PaymentRef(reference=session["id"]))
    assert (update.amount, update.currency) == (unit * 2, currency)


def test_bad_three_decimal_checkout_never_reaches_stripe(gateway, fake_stripe) -> None:
    with pytest.raises(GatewayError):
        gateway.create_checkout(
            checkout_request(currency="KWD", amount=1255, line_items=(LineItem("X", 1255, 1),))
        )
    assert fake_stripe.calls() == []


# ----------------------------------------------------------------------------- keys
def test_key_mode_and_safety() -> None:
    assert key_mode("sk_test_abc") == "test" and key_mode("rk_test_abc") == "test"
    assert key_mode("sk_live_abc") == "live" and key_mode("rk_live_abc") == "live"
    check_key_safety("sk_test_abc", debug=True)
    check_key_safety("sk_live_abc", debug=False)
    with pytest.raises(RuntimeError, match="live"):
        check_key_safety("sk_live_abc", debug=True)
    with pytest.raises(RuntimeError):
        check_key_safety("pk_test_abc", debug=False)  # a publishable key by mistake


# ----------------------------------------------------------------------------- webhooks
def _event_body(event_type: str = "checkout.session.completed") -> dict:
    return make_event(
        event_type,
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "status": "complete",
            "payment_status": "paid",
            "amount_total": 3700,
            "currency": "usd",
            "client_reference_id": "pay_abc",
            "payment_intent": "pi_1",
            "metadata": {"order_id": "ord_xyz", "payment_id": "pay_abc"},
        },
        event_id="evt_1",
    )


def test_valid_signature_verifies(gateway) -> None:
    body, headers = signed_event(_event_body(), FAKE_WEBHOOK_SECRET)
    event = gateway.verify_webhook(body, headers)
    assert (event.event_id, event.event_type) == ("evt_1", "checkout.session.completed")
    assert event.payload["data"]["object"]["id"] == "cs_test_1"


def test_header_name_is_case_insensitive(gateway) -> None:
    body, headers = signed_event(_event_body(), FAKE_WEBHOOK_SECRET)
    event = gateway.verify_webhook(body, {"stripe-signature": headers["Stripe-Signature"]})
    assert event.event_id == "evt_1"


def _bad_cases() -> dict[str, tuple[bytes, dict[str, str]]]:
    event = _event_body()
    body, headers = signed_event(event, FAKE_WEBHOOK_SECRET)
    now = int(time.time())
    return {
        "tampered": (body.replace(b"3700", b"1"), headers),
        "reserialised": (json.dumps(json.loads(body), separators=(",", ":")).encode(), headers),
        "expired": (
            body,
            {"Stripe-Signature": signature_header(body, FAKE_WEBHOOK_SECRET, now - 301)},
        ),
        "future": (
            body,
            {"Stripe-Signature": signature_header(body, FAKE_WEBHOOK_SECRET, now + 301)},
        ),
        "missing": (body, {}),
        "empty": (body, {"Stripe-Signature": ""}),
        "garbage header": (body, {"Stripe-Signature": "nonsense"}),
        "other secret": (body, {"Stripe-Signature": signature_header(body, "whsec_other")}),
        "signed non-JSON": (
            b"not json",
            {"Stripe-Signature": signature_header(b"not json", FAKE_WEBHOOK_SECRET)},
        ),
        "not utf-8": (
            b"\xff\xfe",
            {"Stripe-Signature": signature_header("x", FAKE_WEBHOOK_SECRET)},
        ),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_signatures_are_rejected(gateway, case) -> None:
    body, headers = _bad_cases()[case]
    with pytest.raises(SignatureError):
        gateway.verify_webhook(body, headers)


def test_timestamps_just_inside_tolerance_pass(gateway) -> None:
    body = json.dumps(_event_body()).encode()
    now = int(time.time())
    for ts in (now - 290, now + 290):
        gateway.verify_webhook(
            body, {"Stripe-Signature": signature_header(body, FAKE_WEBHOOK_SECRET, ts)}
        )


def _verified(event_type: str, obj: dict) -> VerifiedEvent:
    return VerifiedEvent("evt_x", event_type, make_event(event_type, obj, event_id="evt_x"))


SESSION = {
    "id": "cs_1",
    "object": "checkout.session",
    "amount_total": 3700,
    "currency": "usd",
    "client_reference_id": "pay_abc",
    "payment_intent": "pi_1",
    "metadata": {"order_id": "ord_xyz", "payment_id": "pay_abc"},
}


@pytest.mark.parametrize(
    "event_type,status,payment_status,metadata,expected",
    [
        ("checkout.session.completed", "complete", "paid", {}, PaymentStatus.SUCCEEDED),
        (
            "checkout.session.completed",
            "complete",
            "paid",
            {"capture_method": "manual"},
            PaymentStatus.AUTHORIZED,
        ),
        ("checkout.session.completed", "complete", "unpaid", {}, PaymentStatus.PROCESSING),
        (
            "checkout.session.async_payment_succeeded",
            "complete",
            "paid",
            {},
            PaymentStatus.SUCCEEDED,
        ),
        ("checkout.session.async_payment_failed", "complete", "unpaid", {}, PaymentStatus.FAILED),
        ("checkout.session.expired", "expired", "unpaid", {}, PaymentStatus.EXPIRED),
    ],
)
def test_interpret_session_events(
    gateway, event_type, status, payment_status, metadata, expected
) -> None:
    obj = dict(
        SESSION,
        status=status,
        payment_status=payment_status,
        metadata=dict(SESSION["metadata"], **metadata),
    )
    [update] = gateway.interpret(_verified(event_type, obj))
    assert isinstance(update, PaymentUpdate)
    assert update.status == expected
    assert update.ref == PaymentRef(
        payment_id="pay_abc", reference="cs_1", gateway_payment_id="pi_1"
    )
    assert (update.amount, update.currency) == (3700, "USD")


def test_interpret_payment_failed_is_not_terminal(gateway) -> None:
    pi = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 3700,
        "currency": "usd",
        "status": "requires_payment_method",
        "client_secret": "pi_1_secret_x",
        "metadata": {"order_id": "ord_xyz", "payment_id": "pay_abc"},
        "last_payment_error": {
            "code": "card_declined",
            "decline_code": "stolen_card",
            "message": "Your card was declined.",
        },
    }
    [update] = gateway.interpret(_verified("payment_intent.payment_failed", pi))
    assert update.status == PaymentStatus.PROCESSING
    assert update.failure_code == "stolen_card"
    assert update.failure_message == "Your card was declined."
    assert update.ref.payment_id == "pay_abc" and update.gateway_payment_id == "pi_1"


REFUND = {
    "id": "re_1",
    "object": "refund",
    "amount": 1200,
    "currency": "usd",
    "charge": "ch_1",
    "payment_intent": "pi_1",
    "status": "succeeded",
    "reason": "requested_by_customer",
    "metadata": {"refund_id": "rfd_1", "payment_id": "pay_abc"},
}


@pytest.mark.parametrize(
    "event_type,status,expected",
    [
        ("refund.created", "pending", RefundStatus.PENDING),
        ("refund.created", "succeeded", RefundStatus.SUCCEEDED),
        ("refund.updated", "succeeded", RefundStatus.SUCCEEDED),
        ("refund.updated", "canceled", RefundStatus.CANCELED),
        ("refund.failed", "failed", RefundStatus.FAILED),
    ],
)
def test_interpret_refund_events(gateway, event_type, status, expected) -> None:
    [update] = gateway.interpret(_verified(event_type, dict(REFUND, status=status)))
    assert isinstance(update, RefundUpdate)
    assert update == RefundUpdate(
        ref=PaymentRef(payment_id="pay_abc", gateway_payment_id="pi_1"),
        gateway_refund_id="re_1",
        amount=1200,
        currency="USD",
        status=expected,
        refund_id="rfd_1",
        reason="requested_by_customer",
        failure_reason=None,
    )


def test_dashboard_refund_has_no_refund_id(gateway) -> None:
    [update] = gateway.interpret(_verified("refund.created", dict(REFUND, metadata={})))
    assert update.refund_id is None and update.ref.gateway_payment_id == "pi_1"


def test_charge_refunded_gives_one_update_per_refund(gateway) -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 3700,
        "currency": "usd",
        "payment_intent": "pi_1",
        "metadata": {"payment_id": "pay_abc"},
        "refunds": {
            "object": "list",
            "data": [dict(REFUND, id="re_2", amount=500, metadata={}), REFUND],
        },
    }
    updates = gateway.interpret(_verified("charge.refunded", charge))
    assert [(u.gateway_refund_id, u.amount, u.refund_id) for u in updates] == [
        ("re_2", 500, None),
        ("re_1", 1200, "rfd_1"),
    ]
    assert all(u.ref.payment_id == "pay_abc" for u in updates)
    charge.pop("refunds")
    assert gateway.interpret(_verified("charge.refunded", charge)) == []


@pytest.mark.parametrize(
    "event_type,status,expected",
    [
        ("charge.dispute.created", "needs_response", DisputeStatus.OPEN),
        ("charge.dispute.created", "warning_needs_response", DisputeStatus.OPEN),
        ("charge.dispute.updated", "under_review", DisputeStatus.OPEN),
        ("charge.dispute.updated", "warning_under_review", DisputeStatus.OPEN),
        ("charge.dispute.closed", "won", DisputeStatus.WON),
        ("charge.dispute.closed", "lost", DisputeStatus.LOST),
        ("charge.dispute.closed", "warning_closed", DisputeStatus.CLOSED),
    ],
)
def test_interpret_dispute_events(gateway, event_type, status, expected) -> None:
    due = int(time.time()) + 86400
    dispute = {
        "id": "du_1",
        "object": "dispute",
        "amount": 3700,
        "currency": "usd",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": due},
    }
    [update] = gateway.interpret(_verified(event_type, dispute))
    assert isinstance(update, DisputeUpdate)
    assert update.status == expected and update.gateway_status == status
    assert update.gateway_dispute_id == "du_1" and update.ref.gateway_payment_id == "pi_1"
    assert (update.amount, update.currency, update.reason) == (3700, "USD", "fraudulent")
    assert update.evidence_due_by == datetime.fromtimestamp(due, UTC)


@pytest.mark.parametrize(
    "event_type",
    [
        "customer.created",
        "payment_intent.succeeded",
        "charge.succeeded",
        "checkout.session.unknown",
    ],
)
def test_other_events_give_nothing(gateway, event_type) -> None:
    assert gateway.interpret(_verified(event_type, {"id": "x", "object": "thing"})) == []


def test_interpret_events_the_fake_emitted_end_to_end(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe, capture_method="automatic")
    gateway.refund(refund_request(pi))
    fake_stripe.create_dispute(pi)
    kinds = {}
    for event in fake_stripe.events:
        public = {k: v for k, v in event.items() if not k.startswith("_")}
        body, headers = signed_event(public, FAKE_WEBHOOK_SECRET)
        verified = gateway.verify_webhook(body, headers)
        kinds[verified.event_type] = gateway.interpret(verified)
    assert kinds["checkout.session.completed"][0].status == PaymentStatus.SUCCEEDED
    assert kinds["refund.created"][0].refund_id == "rfd_1"
    assert (
        kinds["charge.refunded"][0].gateway_refund_id
        == kinds["refund.created"][0].gateway_refund_id
    )
    assert kinds["charge.dispute.created"][0].status == DisputeStatus.OPEN
    assert kinds["payment_intent.succeeded"] == []
    # Filled in from the payment intent: the dispute names only the intent, and the
    # session event carries no card details.
    assert kinds["charge.dispute.created"][0].ref.payment_id == "pay_abc"
    assert kinds["checkout.session.completed"][0].payment_method == {
        "brand": "visa",
        "last4": "4242",
    }


def test_dashboard_refund_is_matched_through_the_payment_intent(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    refund = fake_stripe.dashboard_refund(pi, 700)
    event = fake_stripe.events_of("refund.created")[-1]
    [update] = gateway.interpret(VerifiedEvent(event["id"], event["type"], event))
    assert update.gateway_refund_id == refund["id"]
    assert update.refund_id is None  # not one Kassa asked for
    assert update.ref.payment_id == "pay_abc"
    before = len(fake_stripe.calls("GET"))
    gateway.interpret(VerifiedEvent(event["id"], event["type"], event))
    assert len(fake_stripe.calls("GET")) == before  # the intent's owner is cached


def test_manual_capture_session_event_is_authorized_per_the_intent(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request(capture_method="manual"))
    fake_stripe.complete_session(session.reference)
    event = fake_stripe.events_of("checkout.session.completed")[-1]
    [update] = gateway.interpret(VerifiedEvent(event["id"], event["type"], event))
    assert update.status == PaymentStatus.AUTHORIZED
    assert update.capture_deadline is not None


def test_enrichment_errors_are_retried_with_the_job(gateway, fake_stripe) -> None:
    _, pi = _paid(gateway, fake_stripe)
    fake_stripe.dashboard_refund(pi, 700)
    event = fake_stripe.events_of("refund.created")[-1]
    fake_stripe.queue_error(503, "api_error", should_retry=False, path="/v1/payment_intents")
    with pytest.raises(GatewayError) as err:
        gateway.interpret(VerifiedEvent(event["id"], event["type"], event))
    assert err.value.code == "gateway_unavailable"


# ----------------------------------------------------------------------------- redact
def test_redact_removes_client_secrets_anywhere(gateway) -> None:
    payload = make_event(
        "payment_intent.payment_failed",
        {
            "id": "pi_1",
            "client_secret": "pi_1_secret_abc",
            "nested": {"client_secret": "x", "list": [{"client_secret": "y", "keep": 1}]},
        },
    )
    cleaned = gateway.redact(payload)
    assert "secret_abc" not in json.dumps(cleaned)
    assert "client_secret" not in json.dumps(cleaned)
    assert cleaned["data"]["object"]["nested"]["list"] == [{"keep": 1}]
    assert payload["data"]["object"]["client_secret"] == "pi_1_secret_abc"  # input untouched


# ----------------------------------------------------------------------------- fake itself
def test_fake_decodes_stripe_form_encoding() -> None:
    pairs = [
        ("a[b][0][c]", "1"),
        ("a[b][1][c]", "2"),
        ("expand[]", "x"),
        ("expand[]", "y"),
        ("m[k]", "v"),
    ]
    assert decode_form(pairs) == {
        "a": {"b": [{"c": "1"}, {"c": "2"}]},
        "expand": ["x", "y"],
        "m": {"k": "v"},
    }


def test_logs_name_what_happened_without_secrets_or_card_data(gateway, fake_stripe, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference, brand="visa", last4="4242")
    gateway.retrieve(PaymentRef(reference=session.reference))
    fake_stripe.queue_error(
        402, "card_error", code="card_declined", decline_code="insufficient_funds", times=1
    )
    with pytest.raises(GatewayError):
        gateway.create_checkout(checkout_request(idempotency_key="other"))
    text = caplog.text
    assert "card_declined" in text and "insufficient_funds" in text
    for secret in (FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET, "_secret_", "4242"):
        assert secret not in text


# ------------------------------------------------------- an authorization's end (#17)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("requested_by_customer", PaymentStatus.CANCELED),  # voided in Stripe's dashboard
        ("abandoned", PaymentStatus.CANCELED),
        ("automatic", PaymentStatus.EXPIRED),  # the hold ran out
    ],
)
def test_a_canceled_uncaptured_intent_is_an_authorization_end(
    gateway: StripeGateway, reason: str, status: PaymentStatus
) -> None:
    intent = {
        "id": "pi_1",
        "object": "payment_intent",
        "status": "canceled",
        "cancellation_reason": reason,
        "capture_method": "manual",
        "amount": 2500,
        "currency": "usd",
        "latest_charge": "ch_1",
        "metadata": {"payment_id": "pay_1"},
    }
    [update] = gateway.interpret(_verified("payment_intent.canceled", intent))
    assert isinstance(update, PaymentUpdate)
    assert (update.status, update.authorization_ended) == (status, True)
    assert update.ref.payment_id == "pay_1" and update.gateway_payment_id == "pi_1"


def test_an_intent_canceled_before_any_charge_is_left_to_the_session(
    gateway: StripeGateway,
) -> None:
    intent = {"id": "pi_1", "status": "canceled", "latest_charge": None, "metadata": {}}
    assert gateway.interpret(_verified("payment_intent.canceled", intent)) == []


def test_an_expired_charge_is_a_lapsed_authorization(gateway: StripeGateway) -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 2500,
        "currency": "usd",
        "captured": False,
        "payment_intent": "pi_1",
        "metadata": {"payment_id": "pay_1"},
    }
    [update] = gateway.interpret(_verified("charge.expired", charge))
    assert isinstance(update, PaymentUpdate)
    assert (update.status, update.authorization_ended) == (PaymentStatus.EXPIRED, True)
    assert (update.amount, update.currency, update.gateway_payment_id) == (2500, "USD", "pi_1")
    assert gateway.interpret(_verified("charge.expired", {**charge, "captured": True})) == []
