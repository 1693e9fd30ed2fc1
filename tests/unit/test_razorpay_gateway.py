"""The Razorpay adapter against the fake Razorpay API over real HTTP (no Flask app, no DB)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import razorpay
from razorpay.errors import SignatureVerificationError

from app.gateways.base import (
    CaptureRequest,
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
    ReturnRejected,
    SignatureError,
)
from app.gateways.razorpay import RazorpayGateway, from_razorpay_amount, to_razorpay_amount
from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus
from tests.fakes.razorpay_api import FakeRazorpay
from tests.fakes.razorpay_signing import payment_signature, signed_webhook, webhook_signature

PUBLIC = "http://shop.test"


def checkout_request(
    payment_id: str = "pay_ours0000000000000001",
    amount: int = 29500,
    currency: str = "INR",
    capture_method: str = "automatic",
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        order_id="ord_ours0000000000000001",
        amount=amount,
        currency=currency,
        line_items=(LineItem("Tea", amount, 1),),
        customer_email="asha@example.com",
        customer_name="Asha",
        success_url=f"{PUBLIC}/return",
        cancel_url=f"{PUBLIC}/cancel",
        idempotency_key=f"checkout-{payment_id}",
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        capture_method=capture_method,
    )


def open_order(gw: RazorpayGateway, **kw: object) -> tuple[str, PaymentRef]:
    req = checkout_request(**kw)  # type: ignore[arg-type]
    session = gw.create_checkout(req)
    return session.reference, PaymentRef(payment_id=req.payment_id, reference=session.reference)


def sdk_accepts_payment(secret: str, order_id: str, payment_id: str, signature: str) -> bool:
    client = razorpay.Client(auth=("rzp_test_oracle", secret))
    try:
        return bool(
            client.utility.verify_payment_signature(
                {
                    "razorpay_order_id": order_id,
                    "razorpay_payment_id": payment_id,
                    "razorpay_signature": signature,
                }
            )
        )
    except SignatureVerificationError:
        return False
    except TypeError:
        # The SDK's compare_digest on str crashes on non-ASCII input; ours says "no".
        return False


def sdk_accepts_webhook(secret: str, body: bytes, signature: str) -> bool:
    client = razorpay.Client(auth=("rzp_test_oracle", "unused"))
    try:
        return bool(client.utility.verify_webhook_signature(body.decode(), signature, secret))
    except SignatureVerificationError:
        return False


def test_satisfies_the_gateway_protocol(gw: RazorpayGateway) -> None:
    assert isinstance(gw, Gateway)
    assert gw.name == "razorpay"


# ---------------------------------------------------------------- orders


def test_create_checkout_sends_the_exact_order_with_basic_auth(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    session = gw.create_checkout(checkout_request())

    lookup, create = fake.requests
    assert (lookup.method, lookup.path) == ("GET", "/v1/orders")
    assert lookup.query == {"receipt": "pay_ours0000000000000001", "count": "100"}
    assert (create.method, create.path) == ("POST", "/v1/orders")
    assert create.json == {
        "amount": 29500,
        "currency": "INR",
        "receipt": "pay_ours0000000000000001",
        "notes": {"order_id": "ord_ours0000000000000001", "payment_id": "pay_ours0000000000000001"},
        "payment": {"capture": "automatic"},
    }
    assert create.auth == lookup.auth == (fake.key_id, fake.key_secret)
    assert session.reference in fake.orders
    assert session.redirect_url == f"{PUBLIC}/checkout/razorpay/pay_ours0000000000000001"


def test_manual_capture_is_asked_per_order(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    gw.create_checkout(checkout_request(capture_method="manual"))
    assert fake.calls("POST", "/v1/orders")[0].json["payment"] == {"capture": "manual"}


def test_a_retry_after_a_timeout_reuses_the_order_the_first_call_made(fake: FakeRazorpay) -> None:
    impatient = RazorpayGateway(
        fake.key_id,
        fake.key_secret,
        fake.webhook_secret,
        public_base_url=PUBLIC,
        api_base=fake.url,
        timeout=0.3,
    )
    fake.queue_latency(1.0, path="/v1/orders", method="POST")
    with pytest.raises(GatewayError) as err:
        impatient.create_checkout(checkout_request())
    assert err.value.code == "gateway_unavailable" and err.value.retryable

    session = impatient.create_checkout(checkout_request())

    assert list(fake.orders) == [session.reference]
    assert len(fake.calls("POST", "/v1/orders")) == 1


def test_a_retry_after_a_reset_connection_creates_exactly_one_order(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    fake.queue_reset(path="/v1/orders", method="POST")
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request())
    assert err.value.code == "gateway_unavailable" and err.value.retryable
    assert fake.orders == {}

    session = gw.create_checkout(checkout_request())
    again = gw.create_checkout(checkout_request())

    assert session.reference == again.reference
    assert list(fake.orders) == [session.reference]


def test_an_order_with_our_receipt_but_another_amount_is_a_conflict(gw: RazorpayGateway) -> None:
    gw.create_checkout(checkout_request(amount=29500))
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request(amount=30000))
    assert err.value.code == "idempotency_conflict"


def test_receipt_filter_is_compared_exactly(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    # Razorpay's receipt filter matches "contains": a longer receipt is another attempt.
    first = gw.create_checkout(checkout_request(payment_id="pay_ab0000000000000001x"))
    second = gw.create_checkout(checkout_request(payment_id="pay_ab0000000000000001"))
    assert first.reference != second.reference
    assert len(fake.orders) == 2


@pytest.mark.parametrize(
    ("currency", "amount", "sent"),
    [
        ("INR", 29500, 29500),  # ₹295.00 in paise
        ("JPY", 295, 295),  # zero-decimal: ¥295
        ("KWD", 295990, 295990),  # three-decimal: 295.990 KWD
        ("usd", 2000, 2000),
    ],
)
def test_amounts_go_out_in_iso_subunits(
    gw: RazorpayGateway, fake: FakeRazorpay, currency: str, amount: int, sent: int
) -> None:
    gw.create_checkout(checkout_request(amount=amount, currency=currency))
    body = fake.calls("POST", "/v1/orders")[0].json
    assert (body["amount"], body["currency"]) == (sent, currency.upper())
    assert from_razorpay_amount(sent, currency.upper()) == amount


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        ("KWD", 295991),  # Razorpay needs the third decimal to be 0
        ("JOD", 1000),  # three-decimal currency Razorpay does not take
        ("XXZ", 1000),  # not a currency
        ("INR", 0),
    ],
)
def test_amounts_razorpay_would_reject_never_leave(
    gw: RazorpayGateway, fake: FakeRazorpay, currency: str, amount: int
) -> None:
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request(amount=amount, currency=currency))
    assert err.value.code == "invalid_request"
    assert fake.calls("POST") == []
    with pytest.raises(GatewayError):
        to_razorpay_amount(amount, currency)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "code", "description", "kassa", "retryable"),
    [
        (400, "BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00", "invalid_request", False),
        (400, "BAD_REQUEST_ERROR", "The id provided does not exist", "not_found", False),
        (401, "BAD_REQUEST_ERROR", "Authentication failed", "authentication_failed", False),
        (429, "BAD_REQUEST_ERROR", "Too many requests", "rate_limited", True),
        (500, "SERVER_ERROR", "The server encountered an error", "gateway_unavailable", True),
        (502, "GATEWAY_ERROR", "Bank gateway timed out", "gateway_unavailable", True),
        (
            409,
            "BAD_REQUEST_ERROR",
            "A request with this key is in progress",
            "gateway_unavailable",
            True,
        ),
    ],
)
def test_razorpay_errors_map_to_kassa_codes(
    gw: RazorpayGateway,
    fake: FakeRazorpay,
    status: int,
    code: str,
    description: str,
    kassa: str,
    retryable: bool,
) -> None:
    fake.queue_error(status, description, code)
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request())
    assert (err.value.code, err.value.retryable) == (kassa, retryable)
    assert err.value.http_status == status
    assert err.value.message == description


def test_a_customer_side_bad_request_is_a_payment_failure(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    fake.queue_error(
        400, "Your payment was declined by the bank", source="bank", reason="payment_declined"
    )
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request())
    assert err.value.code == "payment_failed"
    assert err.value.decline_code == "payment_declined"


def test_a_non_json_5xx_is_gateway_unavailable(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    fake.queue_error(503, body={"unexpected": "shape"})
    with pytest.raises(GatewayError) as err:
        gw.create_checkout(checkout_request())
    assert err.value.code == "gateway_unavailable" and err.value.retryable


def test_wrong_credentials_are_an_authentication_failure(fake: FakeRazorpay) -> None:
    wrong = RazorpayGateway(
        fake.key_id,
        "not-the-secret",
        fake.webhook_secret,
        public_base_url=PUBLIC,
        api_base=fake.url,
    )
    with pytest.raises(GatewayError) as err:
        wrong.create_checkout(checkout_request())
    assert err.value.code == "authentication_failed"


def test_an_unreachable_api_is_retryable() -> None:
    gone = RazorpayGateway(
        "rzp_test_x", "s", "w", public_base_url=PUBLIC, api_base="http://127.0.0.1:9", timeout=0.5
    )
    with pytest.raises(GatewayError) as err:
        gone.retrieve(PaymentRef(reference="order_nothere"))
    assert err.value.code == "gateway_unavailable" and err.value.retryable


# ---------------------------------------------------------------- signatures (SDK as oracle)


def payment_signature_cases(
    fake: FakeRazorpay, order_a: str, order_b: str, pay_a: str, pay_b: str
) -> list[tuple[str, str, str, str]]:
    """(label, order id we check against, payment id, signature)."""
    good = payment_signature(fake.key_secret, order_a, pay_a)
    return [
        ("valid", order_a, pay_a, good),
        (
            "another order's signature",
            order_a,
            pay_b,
            payment_signature(fake.key_secret, order_b, pay_b),
        ),
        ("swapped payment id", order_a, pay_b, good),
        (
            "signed with another key",
            order_a,
            pay_a,
            payment_signature("someone_elses_secret", order_a, pay_a),
        ),
        ("upper-case hex", order_a, pay_a, good.upper()),
        ("truncated", order_a, pay_a, good[:-2]),
        ("empty", order_a, pay_a, ""),
        ("non-ascii", order_a, pay_a, "é" * 64),
    ]


def test_payment_signature_agrees_with_the_sdk(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    cases = payment_signature_cases(
        fake,
        "order_A000000000000",
        "order_B000000000000",
        "pay_A00000000000000",
        "pay_B00000000000000",
    )
    for label, order_id, payment_id, sig in cases:
        ours = gw.verify_payment_signature(order_id, payment_id, sig)
        oracle = sdk_accepts_payment(fake.key_secret, order_id, payment_id, sig)
        assert ours == oracle, label
        assert ours == (label == "valid"), label


def webhook_cases(secret: str) -> list[tuple[str, bytes, str]]:
    body = json.dumps({"event": "payment.captured", "payload": {}}).encode()
    good = webhook_signature(secret, body)
    return [
        ("valid", body, good),
        ("tampered body", body.replace(b"captured", b"failed"), good),
        ("another secret", body, webhook_signature("not_the_webhook_secret", body)),
        ("signature of another body", body, webhook_signature(secret, body + b" ")),
        ("truncated", body, good[:32]),
        ("empty", body, ""),
    ]


def test_webhook_signature_agrees_with_the_sdk(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    for label, body, sig in webhook_cases(fake.webhook_secret):
        headers = {"X-Razorpay-Signature": sig, "X-Razorpay-Event-Id": "evt_1"}
        try:
            gw.verify_webhook(body, headers)
            ours = True
        except SignatureError:
            ours = False
        assert ours == sdk_accepts_webhook(fake.webhook_secret, body, sig), label
        assert ours == (label == "valid"), label


def test_webhook_event_id_comes_from_the_header(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    body, headers = signed_webhook(
        fake.webhook_secret, {"event": "payment.captured", "payload": {}}, "evt_Abc123"
    )
    lower = {k.lower(): v for k, v in headers.items()}
    event = gw.verify_webhook(body, lower)
    assert (event.event_id, event.event_type) == ("evt_Abc123", "payment.captured")


def test_webhook_without_event_id_gets_a_stable_key(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    body, headers = signed_webhook(fake.webhook_secret, {"event": "order.paid", "payload": {}})
    del headers["X-Razorpay-Event-Id"]
    first = gw.verify_webhook(body, headers)
    second = gw.verify_webhook(body, headers)
    assert first.event_id == second.event_id and first.event_id.startswith("sha256:")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"payload": {}}'])
def test_signed_but_malformed_webhooks_are_rejected(
    gw: RazorpayGateway, fake: FakeRazorpay, body: bytes
) -> None:
    signed, headers = signed_webhook(fake.webhook_secret, body)
    with pytest.raises(SignatureError):
        gw.verify_webhook(signed, headers)


def test_webhook_without_signature_is_rejected(gw: RazorpayGateway) -> None:
    with pytest.raises(SignatureError):
        gw.verify_webhook(b'{"event": "order.paid"}', {"X-Razorpay-Event-Id": "evt_1"})


# ---------------------------------------------------------------- callback verification


def test_a_valid_callback_is_confirmed_from_razorpay(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    payment = fake.add_payment(order_id)
    fields = fake.callback_fields(order_id, payment["id"])
    fields["razorpay_order_id"] = "order_TheBrowserSaid"  # ignored: ours is in ref

    update = gw.confirm_return(ref, ReturnParams(fields))

    assert update == PaymentUpdate(
        ref=PaymentRef(
            payment_id=ref.payment_id, reference=order_id, gateway_payment_id=payment["id"]
        ),
        status=PaymentStatus.SUCCEEDED,
        amount=29500,
        currency="INR",
        gateway_payment_id=payment["id"],
        payment_method={
            "method": "card",
            "brand": "Visa",
            "last4": "1111",
            "funding": "credit",
            "issuer": "HDFC",
        },
    )
    fetched = fake.calls("GET", f"/v1/payments/{payment['id']}")
    assert fetched and fetched[0].query == {"expand[]": "card"}


def test_forged_callbacks_prove_nothing(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_a, ref_a = open_order(gw, payment_id="pay_A000000000000000001")
    order_b, _ = open_order(gw, payment_id="pay_B000000000000000001")
    paid_b = fake.add_payment(order_b)
    forged = [
        # B's genuine callback replayed against A
        fake.callback_fields(order_b, paid_b["id"]),
        # A's order id with B's payment, B's signature
        {
            "razorpay_order_id": order_a,
            "razorpay_payment_id": paid_b["id"],
            "razorpay_signature": fake.callback_fields(order_b, paid_b["id"])["razorpay_signature"],
        },
        # signed with another key
        fake.callback_fields(order_a, paid_b["id"], secret="attackers_own_key"),
        # no signature at all
        {"razorpay_order_id": order_a, "razorpay_payment_id": paid_b["id"]},
        # the failure fields are unsigned: they point at B's captured payment
        {"error[code]": "BAD_REQUEST_ERROR", "error[metadata][payment_id]": paid_b["id"]},
        # ... or try to steer the request path elsewhere
        {"error[code]": "BAD_REQUEST_ERROR", "error[metadata][payment_id]": f"../orders/{order_a}"},
    ]
    for fields in forged:
        with pytest.raises(ReturnRejected):
            gw.confirm_return(ref_a, ReturnParams(fields))
    # Nothing got as far as reading an order.
    assert not any(r.path.startswith("/v1/orders/") for r in fake.requests)


def test_a_signed_callback_for_a_payment_of_another_order_is_refused(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    # Defence in depth: even a correct HMAC over (our order, their payment) is refused
    # when Razorpay says the payment belongs elsewhere.
    order_a, ref_a = open_order(gw, payment_id="pay_A000000000000000001")
    order_b, _ = open_order(gw, payment_id="pay_B000000000000000001")
    paid_b = fake.add_payment(order_b)
    fields = fake.callback_fields(order_a, paid_b["id"])
    with pytest.raises(ReturnRejected, match="another order"):
        gw.confirm_return(ref_a, ReturnParams(fields))


def test_a_payment_with_another_amount_is_refused(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, ref = open_order(gw)
    payment = fake.add_payment(order_id, amount=100)
    assert (
        gw.confirm_return(ref, ReturnParams(fake.callback_fields(order_id, payment["id"]))) is None
    )


def test_a_callback_for_an_order_with_another_receipt_is_refused(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    payment = fake.add_payment(order_id)
    other = PaymentRef(payment_id="pay_someoneelse00000001", reference=order_id)
    assert (
        gw.confirm_return(other, ReturnParams(fake.callback_fields(order_id, payment["id"])))
        is None
    )
    assert (
        gw.confirm_return(ref, ReturnParams(fake.callback_fields(order_id, payment["id"])))
        is not None
    )


def test_a_signed_callback_for_an_unsettled_payment_waits(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    payment = fake.add_payment(order_id, "created")
    assert (
        gw.confirm_return(ref, ReturnParams(fake.callback_fields(order_id, payment["id"]))) is None
    )


def test_manual_capture_callback_reports_authorized_with_the_3_day_deadline(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw, capture_method="manual")
    payment = fake.add_payment(order_id, created_at=1_780_000_000)
    assert payment["status"] == "authorized"

    update = gw.confirm_return(ref, ReturnParams(fake.callback_fields(order_id, payment["id"])))

    assert update is not None and update.status is PaymentStatus.AUTHORIZED
    assert update.capture_deadline == datetime.fromtimestamp(1_780_000_000, UTC) + timedelta(days=3)


def test_a_failure_callback_is_checked_and_leaves_the_order_payable(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    failed = fake.add_payment(
        order_id,
        "failed",
        error_reason="insufficient_funds",
        error_description="Your card has insufficient funds.",
    )
    fields = fake.failure_fields(failed["id"])
    fields["error[description]"] = "the browser can say anything here"

    update = gw.confirm_return(ref, ReturnParams(fields))

    assert update is not None
    assert update.status is PaymentStatus.PROCESSING
    assert update.failure_code == "insufficient_funds"
    assert update.failure_message == "Your card has insufficient funds."


# ---------------------------------------------------------------- retrieve


def test_retrieve_with_no_payment_yet_is_processing(gw: RazorpayGateway) -> None:
    _, ref = open_order(gw)
    update = gw.retrieve(ref)
    assert update.status is PaymentStatus.PROCESSING and update.amount is None


def test_retrieve_prefers_a_capture_over_earlier_failures(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    fake.add_payment(order_id, "failed", created_at=1_780_000_000)
    good = fake.add_payment(order_id, "captured", method="upi", created_at=1_780_000_100)
    fake.add_payment(order_id, "failed", created_at=1_780_000_200)

    update = gw.retrieve(ref)

    assert (update.status, update.gateway_payment_id) == (PaymentStatus.SUCCEEDED, good["id"])
    assert update.payment_method == {"method": "upi", "vpa": "customer@okbank"}
    assert fake.calls("GET", f"/v1/orders/{order_id}/payments")


def test_retrieve_with_only_failures_reports_the_latest_error(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw)
    fake.add_payment(order_id, "failed", error_reason="payment_timed_out", created_at=1_780_000_000)
    fake.add_payment(
        order_id,
        "failed",
        error_reason="card_declined",
        error_description="Declined",
        created_at=1_780_000_100,
    )
    update = gw.retrieve(ref)
    assert update.status is PaymentStatus.PROCESSING
    assert (update.failure_code, update.failure_message) == ("card_declined", "Declined")


def test_retrieve_authorized_for_manual_capture(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, ref = open_order(gw, capture_method="manual")
    fake.add_payment(order_id, method="wallet")
    update = gw.retrieve(ref)
    assert update.status is PaymentStatus.AUTHORIZED
    assert update.capture_deadline is not None
    assert update.payment_method == {"method": "wallet", "wallet": "paytm"}


# ---------------------------------------------------------------- capture and refunds


def test_capture_sends_amount_and_currency_and_is_safe_to_repeat(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw, capture_method="manual", amount=295, currency="JPY")
    payment = fake.add_payment(order_id)
    request = CaptureRequest(
        payment_id=ref.payment_id or "",
        reference=order_id,
        gateway_payment_id=payment["id"],
        amount=295,
        currency="JPY",
        idempotency_key="cap-1",
    )

    first = gw.capture(request)
    again = gw.capture(request)

    assert fake.calls("POST", f"/v1/payments/{payment['id']}/capture")[0].json == {
        "amount": 295,
        "currency": "JPY",
    }
    assert first.status is again.status is PaymentStatus.SUCCEEDED
    assert (first.amount, first.currency) == (295, "JPY")


def test_capture_finds_the_authorized_payment_by_order(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, ref = open_order(gw, capture_method="manual")
    payment = fake.add_payment(order_id)
    update = gw.capture(
        CaptureRequest(
            payment_id=ref.payment_id or "",
            reference=order_id,
            gateway_payment_id=None,
            amount=29500,
            currency="INR",
            idempotency_key="cap-2",
        )
    )
    assert update.gateway_payment_id == payment["id"]
    assert fake.payments[payment["id"]]["status"] == "captured"


def test_capture_of_a_wrong_amount_is_refused(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, ref = open_order(gw, capture_method="manual")
    payment = fake.add_payment(order_id)
    with pytest.raises(GatewayError) as err:
        gw.capture(
            CaptureRequest(
                payment_id=ref.payment_id or "",
                reference=order_id,
                gateway_payment_id=payment["id"],
                amount=100,
                currency="INR",
                idempotency_key="cap-3",
            )
        )
    assert err.value.code == "invalid_request"
    assert fake.payments[payment["id"]]["status"] == "authorized"


def refund_request(
    payment_id: str, order_id: str, refund_id: str, amount: int, reason: str | None = None
) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id="pay_ours0000000000000001",
        reference=order_id,
        gateway_payment_id=payment_id,
        amount=amount,
        currency="INR",
        reason=reason,
        idempotency_key=f"key-{refund_id}",
    )


def test_refund_sends_our_refund_id_as_idempotency_key(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, _ = open_order(gw)
    payment = fake.add_payment(order_id)

    result = gw.refund(
        refund_request(payment["id"], order_id, "rfd_first000000000000001", 10000, reason="damaged")
    )

    call = fake.calls("POST", f"/v1/payments/{payment['id']}/refund")[0]
    assert call.idempotency_key == "rfd_first000000000000001"
    assert call.json == {
        "amount": 10000,
        "speed": "normal",
        "notes": {
            "refund_id": "rfd_first000000000000001",
            "payment_id": "pay_ours0000000000000001",
            "reason": "damaged",
        },
        "receipt": "rfd_first000000000000001",
    }
    assert call.auth == (fake.key_id, fake.key_secret)
    assert result.gateway_refund_id in fake.refunds
    assert result.status is RefundStatus.PENDING


def test_a_retried_refund_is_not_refunded_twice(fake: FakeRazorpay) -> None:
    impatient = RazorpayGateway(
        fake.key_id,
        fake.key_secret,
        fake.webhook_secret,
        public_base_url=PUBLIC,
        api_base=fake.url,
        timeout=0.3,
    )
    order_id, _ = open_order(impatient)
    payment = fake.add_payment(order_id)
    request = refund_request(payment["id"], order_id, "rfd_retry000000000000001", 5000)
    fake.queue_latency(1.0, path=f"/v1/payments/{payment['id']}/refund")
    with pytest.raises(GatewayError) as err:
        impatient.refund(request)
    assert err.value.retryable

    result = impatient.refund(request)

    assert list(fake.refunds) == [result.gateway_refund_id]
    assert fake.payments[payment["id"]]["amount_refunded"] == 5000


def test_several_partial_refunds_then_processed(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, _ = open_order(gw)
    payment = fake.add_payment(order_id)
    fake.refund_initial_status = "processed"
    one = gw.refund(refund_request(payment["id"], order_id, "rfd_one00000000000000001", 10000))
    two = gw.refund(refund_request(payment["id"], order_id, "rfd_two00000000000000001", 19500))
    assert one.gateway_refund_id != two.gateway_refund_id
    assert one.status is two.status is RefundStatus.SUCCEEDED
    assert fake.payments[payment["id"]]["status"] == "refunded"
    with pytest.raises(GatewayError) as err:
        gw.refund(refund_request(payment["id"], order_id, "rfd_three000000000000001", 1))
    assert err.value.code == "invalid_request"


def test_same_key_with_another_body_is_an_idempotency_conflict(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, _ = open_order(gw)
    payment = fake.add_payment(order_id)
    gw.refund(refund_request(payment["id"], order_id, "rfd_same0000000000000001", 1000))
    with pytest.raises(GatewayError) as err:
        gw.refund(refund_request(payment["id"], order_id, "rfd_same0000000000000001", 2000))
    assert err.value.code == "idempotency_conflict"


def test_a_short_refund_id_still_makes_a_valid_idempotency_key(gw: RazorpayGateway) -> None:
    key = gw.refund_idempotency_key(refund_request("pay_x", "order_x", "r1", 100))
    assert len(key) >= 10 and key == gw.refund_idempotency_key(
        refund_request("pay_x", "order_x", "r1", 100)
    )


# ---------------------------------------------------------------- interpret


def interpret(gw: RazorpayGateway, fake: FakeRazorpay, kind: str, **ids: str):  # type: ignore[no-untyped-def]
    body, headers = fake.webhook(kind, **ids)
    return gw.interpret(gw.verify_webhook(body, headers))


def test_interpret_payment_events(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, ref = open_order(gw)
    payment = fake.add_payment(order_id, created_at=1_780_000_000)
    failed = fake.add_payment(
        order_id, "failed", error_reason="card_declined", error_description="Declined by bank"
    )

    [authorized] = interpret(gw, fake, "payment.authorized", payment_id=payment["id"])
    [captured] = interpret(gw, fake, "payment.captured", payment_id=payment["id"])
    [paid] = interpret(gw, fake, "order.paid", payment_id=payment["id"])
    [failure] = interpret(gw, fake, "payment.failed", payment_id=failed["id"])

    assert isinstance(authorized, PaymentUpdate)
    assert authorized.status is PaymentStatus.AUTHORIZED
    assert authorized.capture_deadline == datetime.fromtimestamp(1_780_000_000 + 3 * 86400, UTC)
    assert captured.status is paid.status is PaymentStatus.SUCCEEDED
    assert captured.ref == PaymentRef(
        payment_id=ref.payment_id, reference=order_id, gateway_payment_id=payment["id"]
    )
    assert paid.ref == captured.ref
    assert (captured.amount, captured.currency) == (29500, "INR")
    assert failure.status is PaymentStatus.PROCESSING
    assert (failure.failure_code, failure.failure_message) == ("card_declined", "Declined by bank")


def test_interpret_refund_events(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, _ = open_order(gw)
    payment = fake.add_payment(order_id)
    ours = gw.refund(refund_request(payment["id"], order_id, "rfd_mine0000000000000001", 500))
    theirs = fake.dashboard_refund(payment["id"], 700)

    for kind, status in [
        ("refund.created", RefundStatus.PENDING),
        ("refund.processed", RefundStatus.SUCCEEDED),
        ("refund.failed", RefundStatus.FAILED),
    ]:
        [mine] = interpret(gw, fake, kind, refund_id=ours.gateway_refund_id)
        assert isinstance(mine, RefundUpdate)
        assert (mine.status, mine.refund_id, mine.amount, mine.currency) == (
            status,
            "rfd_mine0000000000000001",
            500,
            "INR",
        )
        assert mine.ref.gateway_payment_id == payment["id"]
        assert mine.ref.reference == order_id

    [dashboard] = interpret(gw, fake, "refund.processed", refund_id=theirs["id"])
    assert isinstance(dashboard, RefundUpdate)
    assert dashboard.refund_id is None and dashboard.gateway_refund_id == theirs["id"]
    assert dashboard.amount == 700 and dashboard.status is RefundStatus.SUCCEEDED


def test_interpret_dispute_events(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    order_id, _ = open_order(gw)
    payment = fake.add_payment(order_id)
    dispute = fake.create_dispute(payment["id"], amount=29500)
    for kind, status in [
        ("payment.dispute.created", DisputeStatus.OPEN),
        ("payment.dispute.won", DisputeStatus.WON),
        ("payment.dispute.lost", DisputeStatus.LOST),
        ("payment.dispute.closed", DisputeStatus.CLOSED),
    ]:
        [update] = interpret(gw, fake, kind, dispute_id=dispute["id"])
        assert isinstance(update, DisputeUpdate)
        assert (update.status, update.gateway_dispute_id, update.amount) == (
            status,
            dispute["id"],
            29500,
        )
        assert update.ref.gateway_payment_id == payment["id"]
        assert update.evidence_due_by == datetime.fromtimestamp(dispute["respond_by"], UTC)


def test_interpret_ignores_other_events(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    body, headers = signed_webhook(fake.webhook_secret, {"event": "invoice.paid", "payload": {}})
    assert gw.interpret(gw.verify_webhook(body, headers)) == []


def test_redact_drops_card_numbers_and_tokens_but_keeps_last4(gw: RazorpayGateway) -> None:
    payload = {
        "payload": {
            "payment": {
                "entity": {
                    "id": "pay_1",
                    "token_id": "token_abc",
                    "card": {"last4": "1111", "number": "4111111111111111"},
                    "description": "card 4111 1111 1111 1111",
                    "contact": "+919999999999",
                }
            }
        }
    }
    clean = gw.redact(payload)
    entity = clean["payload"]["payment"]["entity"]
    assert entity["card"] == {"last4": "1111"}
    assert "token_id" not in entity
    assert entity["description"] == "card [redacted]" and entity["contact"] == "+919999999999"
    assert "4111111111111111" not in json.dumps(clean)


def test_from_config_needs_all_three_secrets(fake: FakeRazorpay) -> None:
    config = {
        "RAZORPAY_KEY_ID": "rzp_test_k",
        "RAZORPAY_KEY_SECRET": "s",
        "RAZORPAY_WEBHOOK_SECRET": "w",
        "PUBLIC_BASE_URL": PUBLIC,
        "RAZORPAY_API_BASE": fake.url,
    }
    built = RazorpayGateway.from_config(config)
    assert built is not None and built.checkout_url("pay_1") == f"{PUBLIC}/checkout/razorpay/pay_1"
    for missing in ("RAZORPAY_KEY_ID", "RAZORPAY_KEY_SECRET", "RAZORPAY_WEBHOOK_SECRET"):
        assert RazorpayGateway.from_config({**config, missing: None}) is None


def test_live_keys_are_refused_in_debug_mode() -> None:
    from app.gateways.razorpay import check_key_safety, key_mode

    assert [key_mode(k) for k in ("rzp_live_abc", "rzp_test_abc", "abc")] == [
        "live",
        "test",
        "unknown",
    ]
    check_key_safety("rzp_test_abc", debug=True)
    check_key_safety("rzp_live_abc", debug=False)
    with pytest.raises(RuntimeError, match="live Razorpay key"):
        check_key_safety("rzp_live_abc", debug=True)
