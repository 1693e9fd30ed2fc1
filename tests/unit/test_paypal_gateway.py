"""The PayPal adapter against the fake PayPal API over real HTTP (no Flask app, no DB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from app.gateways.base import (
    CaptureRequest,
    ChargeRequest,
    CheckoutRequest,
    DisputeUpdate,
    Gateway,
    GatewayError,
    LineItem,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundUpdate,
    ReturnParams,
    SavedMethod,
    SignatureError,
    VerifiedEvent,
)
from app.gateways.paypal import (
    PayPalGateway,
    check_cert_url,
    check_settings_safety,
    from_paypal_value,
    to_paypal_value,
)
from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus
from tests.fakes.paypal_api import FakePayPal, route_paypal_hosts
from tests.fakes.paypal_certs import SigningBundle, make_bundle, sibling

PUBLIC = "http://shop.test"


@pytest.fixture(scope="module")
def bundle() -> SigningBundle:
    return make_bundle()


@pytest.fixture
def fake(bundle: SigningBundle) -> Iterator[FakePayPal]:
    with FakePayPal(bundle=bundle).running() as api:
        yield api


def make_gateway(fake: FakePayPal, bundle: SigningBundle, **kw: object) -> PayPalGateway:
    options: dict[str, object] = {
        "api_base": fake.url,
        "brand_name": "Kassa test store",
        "trust_roots": [bundle.root],
        "timeout": 3.0,
        "cert_session": route_paypal_hosts(requests.Session(), fake.url),
    }
    options.update(kw)
    return PayPalGateway(fake.client_id, fake.client_secret, fake.webhook_id, **options)  # type: ignore[arg-type]


@pytest.fixture
def gw(fake: FakePayPal, bundle: SigningBundle) -> PayPalGateway:
    return make_gateway(fake, bundle)


def checkout_request(
    payment_id: str = "pay_ours0000000000000001",
    amount: int = 2500,
    currency: str = "USD",
    capture_method: str = "automatic",
    items: tuple[LineItem, ...] | None = None,
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        order_id="ord_ours0000000000000001",
        amount=amount,
        currency=currency,
        line_items=items if items is not None else (LineItem("Tea", amount, 1),),
        customer_email="asha@example.com",
        customer_name="Asha",
        success_url=f"{PUBLIC}/checkout/return/{payment_id}?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{PUBLIC}/checkout/cancel/{payment_id}",
        idempotency_key=f"kassa-checkout-{payment_id}",
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        capture_method=capture_method,
    )


def open_order(gw: PayPalGateway, **kw: object) -> PaymentRef:
    req = checkout_request(**kw)  # type: ignore[arg-type]
    session = gw.create_checkout(req)
    return PaymentRef(payment_id=req.payment_id, reference=session.reference)


def paid(gw: PayPalGateway, fake: FakePayPal, **kw: object) -> tuple[PaymentRef, PaymentUpdate]:
    ref = open_order(gw, **kw)
    assert ref.reference
    fake.approve(ref.reference)
    update = gw.confirm_return(ref, ReturnParams({"token": ref.reference, "PayerID": "X"}))
    assert update is not None
    return PaymentRef(ref.payment_id, ref.reference, update.gateway_payment_id), update


def test_satisfies_the_gateway_protocol(gw: PayPalGateway) -> None:
    assert isinstance(gw, Gateway)
    assert gw.name == "paypal"


# ---------------------------------------------------------------- orders


def test_create_order_sends_the_exact_body_and_headers(gw: PayPalGateway, fake: FakePayPal) -> None:
    req = checkout_request(amount=2750, items=(LineItem("Tea", 1000, 2), LineItem("Mug", 750, 1)))
    session = gw.create_checkout(req)

    (call,) = fake.calls("POST", "/v2/checkout/orders")
    assert call.request_id == "kassa-checkout-pay_ours0000000000000001"
    assert call.headers["Prefer"] == "return=representation"
    assert call.headers["Authorization"].startswith("Bearer A21AA")
    assert call.headers["Content-Type"] == "application/json"
    assert call.json == {
        "intent": "CAPTURE",
        "purchase_units": [
            {
                "reference_id": "pay_ours0000000000000001",
                "custom_id": "pay_ours0000000000000001",
                "invoice_id": "ord_ours0000000000000001",
                "description": "Order ord_ours0000000000000001",
                "amount": {
                    "currency_code": "USD",
                    "value": "27.50",
                    "breakdown": {"item_total": {"currency_code": "USD", "value": "27.50"}},
                },
                "items": [
                    {
                        "name": "Tea",
                        "quantity": "2",
                        "unit_amount": {"currency_code": "USD", "value": "10.00"},
                    },
                    {
                        "name": "Mug",
                        "quantity": "1",
                        "unit_amount": {"currency_code": "USD", "value": "7.50"},
                    },
                ],
            }
        ],
        "payment_source": {
            "paypal": {
                "experience_context": {
                    "shipping_preference": "NO_SHIPPING",
                    "user_action": "PAY_NOW",
                    "return_url": f"{PUBLIC}/checkout/return/pay_ours0000000000000001",
                    "cancel_url": f"{PUBLIC}/checkout/cancel/pay_ours0000000000000001",
                    "brand_name": "Kassa test store",
                },
                "email_address": "asha@example.com",
            }
        },
    }
    assert "application_context" not in call.json
    assert session.redirect_url == f"{fake.url}/checkoutnow?token={session.reference}"


def test_manual_capture_asks_for_an_authorize_intent(gw: PayPalGateway, fake: FakePayPal) -> None:
    open_order(gw, capture_method="manual")
    assert fake.calls("POST", "/v2/checkout/orders")[0].json["intent"] == "AUTHORIZE"


def test_a_retried_create_gets_the_same_order(gw: PayPalGateway, fake: FakePayPal) -> None:
    # The first answer is lost after PayPal made the order: the retry's request id replays it.
    fake.queue_latency(3.5, path="/v2/checkout/orders")
    with pytest.raises(GatewayError) as exc:
        gw.create_checkout(checkout_request())
    assert exc.value.retryable
    again = gw.create_checkout(checkout_request())
    assert len(fake.orders) == 1
    assert again.reference in fake.orders


def test_one_token_for_many_calls(gw: PayPalGateway, fake: FakePayPal) -> None:
    for n in range(4):
        open_order(gw, payment_id=f"pay_many{n:017d}")
    assert len(fake.calls("POST", "/v1/oauth2/token")) == 1
    token_call = fake.calls("POST", "/v1/oauth2/token")[0]
    assert token_call.headers["Authorization"].startswith("Basic ")
    assert token_call.raw == b"grant_type=client_credentials"


def test_a_revoked_token_is_renewed_once_on_401(gw: PayPalGateway, fake: FakePayPal) -> None:
    open_order(gw)
    fake.revoke_tokens()
    open_order(gw, payment_id="pay_second000000000000002")
    assert len(fake.calls("POST", "/v1/oauth2/token")) == 2
    assert len(fake.orders) == 2


def test_a_token_is_renewed_before_it_expires(fake: FakePayPal, bundle: SigningBundle) -> None:
    fake.token_lifetime = 0  # expires at once: every call needs a new one
    gw = make_gateway(fake, bundle)
    open_order(gw)
    open_order(gw, payment_id="pay_second000000000000002")
    assert len(fake.calls("POST", "/v1/oauth2/token")) == 2


def test_wrong_credentials_are_an_authentication_failure(
    fake: FakePayPal, bundle: SigningBundle
) -> None:
    gw = PayPalGateway("fake-client-id", "wrong", fake.webhook_id, api_base=fake.url)
    with pytest.raises(GatewayError) as exc:
        gw.create_checkout(checkout_request())
    assert exc.value.code == "authentication_failed"
    assert not fake.orders


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (2500, "USD", "25.00"),  # 2 decimals
        (5, "EUR", "0.05"),
        (1234, "JPY", "1234"),  # 0 decimals (ISO and PayPal)
        (123400, "HUF", "1234"),  # ISO has 2 decimals, PayPal none: whole forints only
        (50000, "TWD", "500"),
    ],
)
def test_amounts_go_out_as_strings_in_paypals_exponent(
    gw: PayPalGateway, fake: FakePayPal, amount: int, currency: str, expected: str
) -> None:
    open_order(gw, amount=amount, currency=currency)
    sent = fake.calls("POST", "/v2/checkout/orders")[-1].json["purchase_units"][0]["amount"]
    assert sent["value"] == expected
    assert sent["currency_code"] == currency
    assert from_paypal_value(expected, currency) == amount


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (12345, "HUF", "without decimals"),  # 123.45 HUF: never rounded
        (50050, "TWD", "without decimals"),
        (10000, "KWD", "does not accept KWD"),  # a 3-decimal currency PayPal does not take
        (10000, "INR", "does not accept INR"),
        (10000, "ZZZ", "ZZZ"),
    ],
)
def test_amounts_paypal_cannot_take_never_leave(
    gw: PayPalGateway, fake: FakePayPal, amount: int, currency: str, message: str
) -> None:
    with pytest.raises(GatewayError) as exc:
        gw.create_checkout(checkout_request(amount=amount, currency=currency))
    assert exc.value.code == "invalid_request"
    assert message in exc.value.message
    assert not fake.calls("POST", "/v2/checkout/orders")


def test_value_conversion_both_ways() -> None:
    assert to_paypal_value(100, "USD") == "1.00"
    assert to_paypal_value(0, "JPY") == "0"
    assert from_paypal_value("10.5", "USD") == 1050
    with pytest.raises(GatewayError):
        from_paypal_value("10.555", "USD")
    with pytest.raises(GatewayError):
        from_paypal_value(10, "USD")


@pytest.mark.parametrize(
    ("status", "name", "issue", "code", "retryable"),
    [
        (400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE", "invalid_request", False),
        (403, "NOT_AUTHORIZED", "PERMISSION_DENIED", "authentication_failed", False),
        (404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "not_found", False),
        (409, "RESOURCE_CONFLICT", "PREVIOUS_REQUEST_IN_PROGRESS", "gateway_unavailable", True),
        (422, "UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED", "payment_failed", False),
        (422, "UNPROCESSABLE_ENTITY", "DUPLICATE_INVOICE_ID", "invalid_request", False),
        (429, "RATE_LIMIT_REACHED", None, "rate_limited", True),
        (500, "INTERNAL_SERVER_ERROR", None, "gateway_unavailable", True),
        (503, "SERVICE_UNAVAILABLE", None, "gateway_unavailable", True),
    ],
)
def test_paypal_errors_map_to_kassa_codes(
    gw: PayPalGateway,
    fake: FakePayPal,
    status: int,
    name: str,
    issue: str | None,
    code: str,
    retryable: bool,
) -> None:
    fake.queue_error(status, name, "PayPal says no", issue, path="/v2/checkout/orders")
    with pytest.raises(GatewayError) as exc:
        gw.create_checkout(checkout_request())
    assert (exc.value.code, exc.value.retryable, exc.value.http_status) == (code, retryable, status)
    assert exc.value.decline_code == issue
    assert "fakedebug01" in exc.value.message  # PayPal's debug_id, for support


def test_a_reset_connection_is_retryable(gw: PayPalGateway, fake: FakePayPal) -> None:
    gw.create_checkout(checkout_request())  # token cached
    fake.queue_reset(path="/v2/checkout/orders/")
    ref = PaymentRef("pay_ours0000000000000001", next(iter(fake.orders)))
    with pytest.raises(GatewayError) as exc:
        gw.retrieve(ref)
    assert exc.value.code == "gateway_unavailable" and exc.value.retryable


# ---------------------------------------------------------------- return page


def test_the_return_page_captures_with_the_attempts_request_id(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, update = paid(gw, fake)
    (capture_call,) = fake.calls("POST", f"/v2/checkout/orders/{ref.reference}/capture")
    assert capture_call.request_id == "kassa-capture-pay_ours0000000000000001"
    assert capture_call.json == {}
    assert update.status is PaymentStatus.SUCCEEDED
    assert (update.amount, update.currency) == (2500, "USD")
    assert update.gateway_payment_id in fake.captures
    assert update.ref.payment_id == "pay_ours0000000000000001"
    assert update.payment_method == {
        "method": "wallet",
        "wallet": "paypal",
        "payer_id": "FAKEPAYER01",
    }


def test_a_second_return_never_captures_again(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref, first = paid(gw, fake)
    again = gw.confirm_return(ref, ReturnParams({"token": ref.reference or ""}))
    assert again is not None and again.status is PaymentStatus.SUCCEEDED
    assert again.gateway_payment_id == first.gateway_payment_id
    assert len(fake.captures) == 1
    assert len(fake.calls("POST", "/v2/checkout/orders/")) == 1


def test_a_capture_retried_after_a_lost_answer_is_not_a_second_capture(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref = open_order(gw)
    assert ref.reference
    fake.approve(ref.reference)
    # PayPal captured, the answer never arrived (the crash/timeout window).
    fake.queue_latency(3.5, path=f"/v2/checkout/orders/{ref.reference}/capture")
    with pytest.raises(GatewayError):
        gw.complete_order(ref.reference, "CAPTURE", "pay_ours0000000000000001")
    order = gw.complete_order(ref.reference, "CAPTURE", "pay_ours0000000000000001")
    assert len(fake.captures) == 1
    assert order["purchase_units"][0]["payments"]["captures"][0]["status"] == "COMPLETED"


def test_a_return_before_approval_proves_nothing(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref = open_order(gw)
    update = gw.confirm_return(ref, ReturnParams({"token": ref.reference or ""}))
    assert update is not None and update.status is PaymentStatus.PROCESSING
    assert not fake.captures
    assert not fake.calls("POST", f"/v2/checkout/orders/{ref.reference}/capture")


def test_a_return_naming_another_order_is_ignored(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref = open_order(gw)
    other = open_order(gw, payment_id="pay_other000000000000009")
    assert other.reference
    fake.approve(other.reference)
    assert gw.confirm_return(ref, ReturnParams({"token": other.reference})) is None
    # Our stored order id names another attempt's order: refused too.
    forged = PaymentRef("pay_ours0000000000000001", other.reference)
    assert gw.confirm_return(forged, ReturnParams({})) is None
    assert not fake.captures


def test_a_pending_capture_stays_processing_with_its_reason(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    fake.next_capture.append("PENDING")
    _, update = paid(gw, fake)
    assert update.status is PaymentStatus.PROCESSING
    assert update.failure_code == "PENDING_REVIEW"


def test_a_declined_capture_fails(gw: PayPalGateway, fake: FakePayPal) -> None:
    fake.next_capture.append("DECLINED")
    _, update = paid(gw, fake)
    assert update.status is PaymentStatus.FAILED


def test_a_refused_instrument_leaves_the_attempt_processing(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    fake.next_capture.append("INSTRUMENT_DECLINED")
    _, update = paid(gw, fake)
    assert update.status is PaymentStatus.PROCESSING
    assert update.failure_code == "INSTRUMENT_DECLINED"
    assert not fake.captures


def test_manual_return_authorizes_and_shows_the_deadlines(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, update = paid(gw, fake, capture_method="manual")
    (call,) = fake.calls("POST", f"/v2/checkout/orders/{ref.reference}/authorize")
    assert call.request_id == "kassa-authorize-pay_ours0000000000000001"
    assert update.status is PaymentStatus.AUTHORIZED
    assert update.gateway_payment_id in fake.authorizations
    assert update.capture_deadline is not None
    assert update.capture_deadline - datetime.now(UTC) > timedelta(days=28)
    assert update.payment_method is not None
    honor = datetime.fromisoformat(update.payment_method["honor_period_ends"])
    assert timedelta(days=2, hours=23) < honor - datetime.now(UTC) <= timedelta(days=3)


# ---------------------------------------------------------------- capture, void, refunds


def test_capture_of_an_authorization_sends_amount_and_its_request_id(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, auth = paid(gw, fake, capture_method="manual")
    request = CaptureRequest(
        ref.payment_id or "", ref.reference, auth.gateway_payment_id, 2500, "USD", "kassa-cap-1"
    )
    update = gw.capture(request)
    (call,) = fake.calls("POST", "/v2/payments/authorizations/")
    assert call.path == f"/v2/payments/authorizations/{auth.gateway_payment_id}/capture"
    assert call.request_id == "kassa-cap-1"
    assert call.json == {
        "amount": {"currency_code": "USD", "value": "25.00"},
        "final_capture": True,
    }
    assert update.status is PaymentStatus.SUCCEEDED and update.gateway_payment_id in fake.captures
    # Repeating the capture reports the same capture, without a second call.
    again = gw.capture(request)
    assert again.gateway_payment_id == update.gateway_payment_id
    assert len(fake.calls("POST", "/v2/payments/authorizations/")) == 1


def test_cancel_voids_an_open_authorization(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref, auth = paid(gw, fake, capture_method="manual")
    gw.cancel_checkout(ref)
    (call,) = fake.calls("POST", "/v2/payments/authorizations/")
    assert call.path.endswith("/void")
    assert call.request_id == f"kassa-void-{auth.gateway_payment_id}"
    assert fake.authorizations[auth.gateway_payment_id or ""]["status"] == "VOIDED"
    assert gw.retrieve(ref).status is PaymentStatus.CANCELED


def test_cancel_of_an_unpaid_order_calls_nothing_that_changes_it(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref = open_order(gw)
    gw.cancel_checkout(ref)
    assert not [c for c in fake.calls("POST") if c.path != "/v1/oauth2/token"][1:]


def refund_request(ref: PaymentRef, amount: int, refund_id: str) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=ref.payment_id or "",
        reference=ref.reference,
        gateway_payment_id=ref.gateway_payment_id,
        amount=amount,
        currency="USD",
        reason="customer asked",
        idempotency_key=f"kassa-refund-{refund_id}",
    )


def test_refund_sends_its_own_request_id_and_exact_body(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, _ = paid(gw, fake)
    result = gw.refund(refund_request(ref, 1000, "rfd_one00000000001"))
    (call,) = fake.calls("POST", "/v2/payments/captures/")
    assert call.path == f"/v2/payments/captures/{ref.gateway_payment_id}/refund"
    assert call.request_id == "kassa-refund-rfd_one00000000001"
    assert call.json == {
        "amount": {"currency_code": "USD", "value": "10.00"},
        "custom_id": "rfd_one00000000001",
        "note_to_payer": "customer asked",
    }
    assert result.status is RefundStatus.SUCCEEDED and result.gateway_refund_id in fake.refunds


def test_several_partial_refunds_and_a_retry_that_refunds_nothing_more(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, _ = paid(gw, fake)
    first = gw.refund(refund_request(ref, 1000, "rfd_one00000000001"))
    again = gw.refund(refund_request(ref, 1000, "rfd_one00000000001"))
    assert again.gateway_refund_id == first.gateway_refund_id
    gw.refund(refund_request(ref, 1500, "rfd_two00000000002"))
    assert len(fake.refunds) == 2
    with pytest.raises(GatewayError) as exc:
        gw.refund(refund_request(ref, 1, "rfd_three000000003"))
    assert exc.value.decline_code == "CAPTURE_FULLY_REFUNDED"


def test_a_409_in_progress_refund_is_retryable_with_the_same_id(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, _ = paid(gw, fake)
    fake.queue_error(
        409,
        "RESOURCE_CONFLICT",
        "in progress",
        "PREVIOUS_REQUEST_IN_PROGRESS",
        path="/v2/payments/captures/",
    )
    req = refund_request(ref, 1000, "rfd_one00000000001")
    with pytest.raises(GatewayError) as exc:
        gw.refund(req)
    assert exc.value.retryable
    gw.refund(req)
    ids = {c.request_id for c in fake.calls("POST", "/v2/payments/captures/")}
    assert ids == {"kassa-refund-rfd_one00000000001"}
    assert len(fake.refunds) == 1


def test_retrieve_refund_reports_pending_then_completed(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    fake.refund_status = "PENDING"
    ref, _ = paid(gw, fake)
    result = gw.refund(refund_request(ref, 1000, "rfd_one00000000001"))
    assert result.status is RefundStatus.PENDING
    fake.set_refund_status(result.gateway_refund_id, "COMPLETED")
    update = gw.retrieve_refund(ref, result.gateway_refund_id)
    assert update.status is RefundStatus.SUCCEEDED
    assert (update.amount, update.currency, update.refund_id) == (1000, "USD", "rfd_one00000000001")
    assert update.ref.gateway_payment_id == ref.gateway_payment_id


# ---------------------------------------------------------------- webhooks: verification


def event_for(fake: FakePayPal, kind: str) -> dict[str, object]:
    return next(e for e in reversed(fake.events) if e["event_type"] == kind)


def test_a_good_signature_is_accepted_and_the_cert_is_cached(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    paid(gw, fake)
    body, headers = fake.signed(event_for(fake, "PAYMENT.CAPTURE.COMPLETED"))
    event = gw.verify_webhook(body, headers)
    assert event.event_type == "PAYMENT.CAPTURE.COMPLETED"
    assert event.event_id == json.loads(body)["id"]
    body2, headers2 = fake.signed(event_for(fake, "CHECKOUT.ORDER.APPROVED"))
    gw.verify_webhook(body2, headers2)
    assert len(gw._certs) == 1  # fetched once


def test_every_forgery_is_refused(
    gw: PayPalGateway, fake: FakePayPal, bundle: SigningBundle
) -> None:
    paid(gw, fake)
    event = event_for(fake, "PAYMENT.CAPTURE.COMPLETED")
    body, headers = fake.signed(event)

    tampered = body.replace(b'"COMPLETED"', b'"COMPLETEX"', 1)
    reserialised = json.dumps(json.loads(body), indent=1).encode()  # same JSON, other bytes
    cases: list[tuple[bytes, dict[str, str]]] = [
        (tampered, headers),
        (reserialised, headers),
        fake.signed(event, webhook_id="WH0SOMEONE0ELSE"),
        fake.signed(event, cert_url="https://evil.example.com/v1/notifications/certs/CERT-1"),
        fake.signed(event, cert_url=fake.cert_url.replace("https://", "http://")),
        fake.signed(event, when=datetime.now(UTC) - timedelta(hours=1)),
        (
            body,
            {**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"},
        ),
        (body, {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}),
    ]
    for forged_body, forged_headers in cases:
        with pytest.raises(SignatureError):
            gw.verify_webhook(forged_body, forged_headers)


@pytest.mark.parametrize(
    "variant",
    [{"expired": True}, {"leaf_name": "attacker.example.com"}, {"self_signed": True}],
)
def test_certificates_that_are_not_paypals_are_refused(
    fake: FakePayPal, bundle: SigningBundle, variant: dict[str, object]
) -> None:
    other = sibling(bundle, **variant)  # type: ignore[arg-type]
    fake.bundle = other
    gw = make_gateway(fake, bundle)
    paid(gw, fake)
    body, headers = fake.signed(event_for(fake, "PAYMENT.CAPTURE.COMPLETED"))
    with pytest.raises(SignatureError):
        gw.verify_webhook(body, headers)
    assert not gw._certs


def test_a_chain_from_an_untrusted_root_is_refused(fake: FakePayPal) -> None:
    gw = make_gateway(fake, make_bundle())  # trusts another root
    paid(gw, fake)
    body, headers = fake.signed(event_for(fake, "PAYMENT.CAPTURE.COMPLETED"))
    with pytest.raises(SignatureError, match="trusted root"):
        gw.verify_webhook(body, headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com.evil.test/v1/notifications/certs/CERT-1",
        "https://evil.test/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
    ],
)
def test_cert_urls_off_paypals_hosts_are_refused_before_any_fetch(url: str) -> None:
    with pytest.raises(SignatureError):
        check_cert_url(url)


def test_paypal_hosts_are_accepted() -> None:
    for host in ("api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com"):
        check_cert_url(f"https://{host}/v1/notifications/certs/CERT-360caa42-fca2a594-1")


def test_api_verification_sends_the_raw_body(fake: FakePayPal, bundle: SigningBundle) -> None:
    gw = make_gateway(fake, bundle, verification="api")
    paid(gw, fake)
    body, headers = fake.signed(event_for(fake, "PAYMENT.CAPTURE.COMPLETED"))
    assert gw.verify_webhook(body, headers).event_type == "PAYMENT.CAPTURE.COMPLETED"
    (call,) = fake.calls("POST", "/v1/notifications/verify-webhook-signature")
    assert call.raw.endswith(b',"webhook_event":' + body + b"}")
    assert call.json["webhook_id"] == fake.webhook_id
    tampered = body.replace(b'"COMPLETED"', b'"COMPLETEX"', 1)
    with pytest.raises(SignatureError):
        gw.verify_webhook(tampered, headers)


# ---------------------------------------------------------------- webhooks: interpretation


def verified(fake: FakePayPal, kind: str) -> VerifiedEvent:
    e = event_for(fake, kind)
    return VerifiedEvent(str(e["id"]), kind, e)  # type: ignore[arg-type]


def test_payment_events_are_re_fetched_and_report_the_order_now(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    ref, _ = paid(gw, fake)
    # The APPROVED event was sent before the capture; re-fetched, it reports the capture.
    (approved,) = gw.interpret(verified(fake, "CHECKOUT.ORDER.APPROVED"))
    assert isinstance(approved, PaymentUpdate) and approved.status is PaymentStatus.SUCCEEDED
    assert approved.ref.reference == ref.reference
    assert approved.ref.payment_id == ref.payment_id
    (completed,) = gw.interpret(verified(fake, "PAYMENT.CAPTURE.COMPLETED"))
    assert completed == approved


def test_refund_events_are_re_fetched(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref, _ = paid(gw, fake)
    gw.refund(refund_request(ref, 1000, "rfd_one00000000001"))
    (update,) = gw.interpret(verified(fake, "PAYMENT.CAPTURE.REFUNDED"))
    assert isinstance(update, RefundUpdate)
    assert (update.amount, update.status, update.refund_id) == (
        1000,
        RefundStatus.SUCCEEDED,
        "rfd_one00000000001",
    )
    assert update.ref == PaymentRef(ref.payment_id, ref.reference, ref.gateway_payment_id)


def test_a_dashboard_refund_is_reported_without_our_id(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref, _ = paid(gw, fake)
    fake.dashboard_refund(ref.gateway_payment_id or "", "5.00")
    (update,) = gw.interpret(verified(fake, "PAYMENT.CAPTURE.REFUNDED"))
    assert isinstance(update, RefundUpdate)
    assert update.refund_id is None and update.amount == 500
    assert update.ref.payment_id == ref.payment_id


def test_dispute_events_are_re_fetched(gw: PayPalGateway, fake: FakePayPal) -> None:
    ref, _ = paid(gw, fake)
    dispute = fake.create_dispute(ref.gateway_payment_id or "")
    (update,) = gw.interpret(verified(fake, "CUSTOMER.DISPUTE.CREATED"))
    assert isinstance(update, DisputeUpdate)
    assert (update.status, update.amount, update.currency) == (DisputeStatus.OPEN, 2500, "USD")
    assert update.ref.gateway_payment_id == ref.gateway_payment_id
    assert update.ref.payment_id == ref.payment_id
    assert update.evidence_due_by is not None
    fake.resolve_dispute(dispute["dispute_id"], "RESOLVED_SELLER_FAVOUR")
    # The CREATED event, handled late, reports the dispute as it is now: won.
    (late,) = gw.interpret(verified(fake, "CUSTOMER.DISPUTE.CREATED"))
    assert isinstance(late, DisputeUpdate) and late.status is DisputeStatus.WON


def test_other_events_are_only_stored(gw: PayPalGateway) -> None:
    event = VerifiedEvent("WH-1", "BILLING.SUBSCRIPTION.CREATED", {"resource": {"id": "I-1"}})
    assert gw.interpret(event) == []


def test_list_events_pages_through_the_window(gw: PayPalGateway, fake: FakePayPal) -> None:
    for n in range(3):
        paid(gw, fake, payment_id=f"pay_list{n:017d}")
    events = gw.list_events(datetime.now(UTC) - timedelta(hours=1))
    assert {e.event_id for e in events} == {e["id"] for e in fake.events}
    calls = fake.calls("GET", "/v1/notifications/webhooks-events")
    assert calls[0].query["page_size"] == "300"
    assert calls[0].query["start_time"].endswith("Z")


# ---------------------------------------------------------------- settings


def test_from_config_needs_all_three_settings(fake: FakePayPal) -> None:
    base = {"PAYPAL_CLIENT_ID": "id", "PAYPAL_CLIENT_SECRET": "s", "PAYPAL_WEBHOOK_ID": "WH1"}
    assert PayPalGateway.from_config(base) is not None
    for key in base:
        assert PayPalGateway.from_config({**base, key: ""}) is None
    gw = PayPalGateway.from_config(base)
    assert gw is not None and gw.api_base == "https://api-m.sandbox.paypal.com"
    assert gw.mode == "sandbox"


def test_live_api_is_refused_in_debug_and_plain_http_off_loopback() -> None:
    with pytest.raises(RuntimeError):
        check_settings_safety("https://api-m.paypal.com", debug=True)
    with pytest.raises(RuntimeError):
        check_settings_safety("http://paypal.example.com", debug=False)
    check_settings_safety("https://api-m.paypal.com", debug=False)
    check_settings_safety("http://127.0.0.1:8766", debug=True)


# ---------------------------------------------------------------- saved wallets (vault)


def saved_wallet(gw: PayPalGateway, fake: FakePayPal) -> tuple[PaymentUpdate, str]:
    """A checkout with the customer's consent to save, approved and captured."""
    req = replace(checkout_request(), save_payment_method=True)
    ref = PaymentRef(payment_id=req.payment_id, reference=gw.create_checkout(req).reference)
    assert ref.reference
    fake.approve(ref.reference)
    update = gw.confirm_return(ref, ReturnParams({"token": ref.reference}))
    assert update is not None
    return update, ref.reference


def vault_charge(token: str, key: str = "kassa-charge-unit") -> ChargeRequest:
    return ChargeRequest(
        payment_id="pay_charge000000000000001",
        order_id="ord_charge000000000000001",
        amount=4200,
        currency="EUR",
        token=token,
        gateway_customer_id=None,
        description="Refill",
        idempotency_key=key,
        return_url=f"{PUBLIC}/checkout/return/pay_charge000000000000001",
    )


def test_without_consent_nothing_is_vaulted(gw: PayPalGateway, fake: FakePayPal) -> None:
    _, update = paid(gw, fake)
    (call,) = [c for c in fake.calls("POST") if c.path == "/v2/checkout/orders"]
    assert "attributes" not in call.json["payment_source"]["paypal"]
    assert update.saved_method is None and fake.payment_tokens == {}


def test_the_captured_order_names_the_vaulted_wallet(gw: PayPalGateway, fake: FakePayPal) -> None:
    update, _ = saved_wallet(gw, fake)
    [(token_id, token)] = fake.payment_tokens.items()
    assert update.status is PaymentStatus.SUCCEEDED
    assert update.saved_method == SavedMethod(
        token=token_id,
        wallet="paypal",
        gateway_customer_id=token["customer"]["id"],
        account_email="buyer@example.com",
    )


def test_a_wallet_not_vaulted_yet_is_not_saved(gw: PayPalGateway, fake: FakePayPal) -> None:
    fake.vault_on_capture = False  # PayPal answers the capture before the vault
    update, order_id = saved_wallet(gw, fake)
    assert update.status is PaymentStatus.SUCCEEDED and update.saved_method is None
    vault = fake.orders[order_id]["payment_source"]["paypal"]["attributes"]["vault"]
    assert vault["status"] == "APPROVED" and "id" not in vault


def test_the_vault_event_is_re_fetched_with_its_order(gw: PayPalGateway, fake: FakePayPal) -> None:
    fake.vault_on_capture = False
    _, order_id = saved_wallet(gw, fake)
    token_id = fake.finish_vaulting(order_id)
    [event] = fake.events_of("VAULT.PAYMENT-TOKEN.CREATED")
    [update] = gw.interpret(VerifiedEvent(event["id"], event["event_type"], event))
    assert isinstance(update, PaymentUpdate) and update.status is PaymentStatus.SUCCEEDED
    assert update.saved_method is not None and update.saved_method.token == token_id
    assert update.ref.reference == order_id
    # A token deleted since, or one not saved with an order, saves nothing.
    gw.detach_method(token_id)
    assert gw.interpret(VerifiedEvent(event["id"], event["event_type"], event)) == []
    orphan = {"resource": {"id": "abc1234", "customer": {"id": "C1"}}}
    assert gw.interpret(VerifiedEvent("WH-2", "VAULT.PAYMENT-TOKEN.CREATED", orphan)) == []


def test_a_declined_capture_of_a_vault_charge_is_a_decline(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    saved_wallet(gw, fake)
    [token_id] = fake.payment_tokens
    fake.next_capture.append("DECLINED")
    with pytest.raises(GatewayError) as raised:
        gw.charge_saved_method(vault_charge(token_id))
    assert raised.value.code == "payment_failed" and not raised.value.retryable


def test_a_vault_charge_sends_the_amount_in_paypals_form(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    saved_wallet(gw, fake)
    [token_id] = fake.payment_tokens
    result = gw.charge_saved_method(vault_charge(token_id))
    assert result.update.status is PaymentStatus.SUCCEEDED
    assert (result.update.amount, result.update.currency) == (4200, "EUR")
    call = [c for c in fake.calls("POST") if c.path == "/v2/checkout/orders"][-1]
    assert call.json["purchase_units"][0]["amount"] == {"currency_code": "EUR", "value": "42.00"}
    assert call.request_id == "kassa-charge-unit"


def test_deleting_a_token_twice_is_fine_and_a_bad_token_never_leaves(
    gw: PayPalGateway, fake: FakePayPal
) -> None:
    saved_wallet(gw, fake)
    [token_id] = fake.payment_tokens
    gw.detach_method(token_id)
    gw.detach_method(token_id)  # PayPal answers 404: gone already
    assert len(fake.calls("DELETE")) == 2 and fake.payment_tokens == {}
    with pytest.raises(GatewayError) as raised:
        gw.detach_method("../v2/checkout/orders")
    assert raised.value.code == "invalid_request" and len(fake.calls("DELETE")) == 2
