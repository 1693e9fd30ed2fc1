"""The Razorpay adapter's saved methods against the fake API over HTTP (the SDK is real):
what a saved token keeps, when a token is not saved, and a charge's retry that finds the
attempt's order already charged or declined (never a second recurring payment)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from app.gateways.base import (
    ChargeRequest,
    CheckoutRequest,
    GatewayError,
    LineItem,
    PaymentRef,
)
from app.gateways.razorpay import RazorpayGateway, _token_address, _valid_through
from app.models.enums import PaymentStatus
from tests.fakes.razorpay_api import FakeRazorpay


def _checkout(
    gw: RazorpayGateway, *, save: bool = True, name: str = "Asha Rao", email: str = ""
) -> str:
    session = gw.create_checkout(
        CheckoutRequest(
            payment_id="pay_kassa0001",
            order_id="ord_kassa0001",
            amount=49900,
            currency="INR",
            line_items=(LineItem("Notebook", 49900, 1),),
            customer_email=email or "asha@example.com",
            customer_name=name,
            success_url="http://shop.test/ok",
            cancel_url="http://shop.test/cancel",
            idempotency_key="kassa-pay-0001",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
            save_payment_method=save,
        )
    )
    return session.reference


def _charge_request(token: str, payment_id: str = "pay_kassacharge1") -> ChargeRequest:
    return ChargeRequest(
        payment_id=payment_id,
        order_id="ord_kassacharge1",
        amount=25000,
        currency="INR",
        token=token,
        gateway_customer_id=None,
        description="Refill",
        idempotency_key="kassa-charge-abc",
        return_url="http://shop.test/return",
        customer_email="asha@example.com",
    )


def gw_ref(payment: dict[str, object]) -> PaymentRef:
    return PaymentRef(payment_id="pay_kassa0001", reference=str(payment["order_id"]))


def _paid_with_token(gw: RazorpayGateway, fake: FakeRazorpay) -> dict[str, object]:
    order_id = _checkout(gw)
    [customer_id] = fake.customers
    return fake.add_payment(order_id, recurring=True, customer_id=customer_id, last4="4242")


def test_the_same_customer_details_find_the_same_razorpay_customer(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    _checkout(gw)
    fake.orders.clear()  # another attempt of the same customer: a new order, same customer
    _checkout(gw)
    assert len(fake.calls("POST", "/v1/customers")) == 2
    assert len(fake.customers) == 1


def test_without_consent_the_order_is_a_plain_one(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    _checkout(gw, save=False)
    [order_call] = fake.calls("POST", "/v1/orders")
    assert {"customer_id", "method", "token"}.isdisjoint(order_call.json)
    assert not fake.calls("POST", "/v1/customers")
    options = gw.checkout_options(
        reference="order_x",
        amount=49900,
        currency="INR",
        store_name="Shop",
        description="1 × Notebook",
        customer_name="Asha",
        customer_email="asha@example.com",
        callback_url="http://shop.test/cb",
        order_id="ord_1",
        payment_id="pay_1",
    )
    assert "recurring" not in options and "customer_id" not in options


def test_a_paid_authorisation_payment_saves_its_token(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    paid = _paid_with_token(gw, fake)
    update = gw.retrieve(gw_ref(paid))
    saved = update.saved_method
    assert saved is not None
    assert saved.token == f"{paid['customer_id']}/{paid['token_id']}"
    assert (saved.brand, saved.last4, saved.exp_month, saved.exp_year) == ("Visa", "4242", 12, 2034)
    assert saved.gateway_customer_id == paid["customer_id"]


def test_a_rejected_or_deleted_token_is_not_saved(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    paid = _paid_with_token(gw, fake)
    fake.tokens[str(paid["token_id"])]["recurring_details"]["status"] = "rejected"
    assert gw.retrieve(gw_ref(paid)).saved_method is None
    del fake.tokens[str(paid["token_id"])]
    update = gw.retrieve(gw_ref(paid))
    assert update.status == PaymentStatus.SUCCEEDED and update.saved_method is None


def test_a_token_ending_before_the_card_sets_the_expiry() -> None:
    assert _valid_through(datetime(2031, 3, 15, tzinfo=UTC)) == (2031, 3)
    assert _valid_through(datetime(2031, 4, 1, tzinfo=UTC)) == (2031, 3)
    now = datetime.now(UTC)
    ended = _valid_through(now - timedelta(hours=1))
    assert ended < (now.year, now.month)  # ended already: expired from now on


def test_a_token_address_names_both_ids() -> None:
    assert _token_address("cust_A/token_B", None) == ("cust_A", "token_B")
    assert _token_address("token_B", "cust_A") == ("cust_A", "token_B")
    with pytest.raises(GatewayError):
        _token_address("token_B", None)


def test_a_retry_after_the_charge_went_through_reports_it(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    paid = _paid_with_token(gw, fake)
    token = f"{paid['customer_id']}/{paid['token_id']}"
    first = gw.charge_saved_method(_charge_request(token))
    again = gw.charge_saved_method(_charge_request(token))
    assert first.update.status == again.update.status == PaymentStatus.SUCCEEDED
    assert again.update.gateway_payment_id == first.update.gateway_payment_id
    assert again.reference == first.reference
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1


def test_a_retry_after_a_decline_is_the_same_decline(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    paid = _paid_with_token(gw, fake)
    token = f"{paid['customer_id']}/{paid['token_id']}"
    fake.recurring_declines[str(paid["token_id"])] = ("card_declined", "The card was declined.")
    for _ in range(2):
        with pytest.raises(GatewayError) as caught:
            gw.charge_saved_method(_charge_request(token))
        assert caught.value.code == "payment_failed"
        assert caught.value.message == "The card was declined."
        assert caught.value.decline_code == "card_declined"
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1


def test_an_expired_token_is_refused_by_razorpay(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    paid = _paid_with_token(gw, fake)
    fake.tokens[str(paid["token_id"])]["expired_at"] = int(time.time()) - 60
    with pytest.raises(GatewayError) as caught:
        gw.charge_saved_method(_charge_request(f"{paid['customer_id']}/{paid['token_id']}"))
    assert caught.value.code == "invalid_request" and "expired" in caught.value.message


def test_a_name_razorpay_would_refuse_is_left_out(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    _checkout(gw, name="Zoë Saint-Clair")
    [call] = fake.calls("POST", "/v1/customers")
    assert call.json == {"email": "asha@example.com", "fail_existing": "0"}
    with pytest.raises(GatewayError) as caught:
        _checkout(gw, email="a" * 60 + "@example.com")
    assert caught.value.code == "invalid_request"
    assert len(fake.calls("POST", "/v1/customers")) == 1  # refused before asking
