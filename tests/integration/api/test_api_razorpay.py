"""The API in front of Razorpay (the fake Razorpay API over real HTTP): a confirm with
Checkout's handler fields is verified (signature, then the payment at Razorpay) before
anything changes; forged or foreign fields change nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.api.conftest import Api, checkout_body, new_key
from tests.integration.razorpay_app import razorpay_config


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def rzp_api(make_app: Callable[..., Flask], fake: FakeRazorpay) -> Api:
    app = make_app(**razorpay_config(fake))
    return Api(app, new_key(app))


def inr_checkout(api: Api) -> dict:  # type: ignore[type-arg]
    response = api.post(
        "/checkout-sessions",
        checkout_body(items=[{"sku": "notebook-inr", "quantity": 1}], gateway="razorpay"),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]  # type: ignore[no-any-return]


def test_confirm_with_handler_fields_is_verified_at_razorpay(
    rzp_api: Api, fake: FakeRazorpay
) -> None:
    data = inr_checkout(rzp_api)
    order_id = data["payment"]["gateway_reference"]
    assert order_id.startswith("order_")
    paid = fake.add_payment(order_id)
    confirmed = rzp_api.post(
        f"/payments/{data['payment']['id']}/confirm", fake.callback_fields(order_id, paid["id"])
    )
    payment = confirmed.get_json()["data"]
    assert payment["status"] == "succeeded" and payment["gateway_payment_id"] == paid["id"]
    assert payment["amount"] == 49900 and payment["currency"] == "INR"
    order = rzp_api.get(f"/orders/{data['order']['id']}").get_json()["data"]
    assert order["status"] == "paid"


def test_forged_handler_fields_change_nothing(rzp_api: Api, fake: FakeRazorpay) -> None:
    victim, other = inr_checkout(rzp_api), inr_checkout(rzp_api)
    theirs = fake.add_payment(other["payment"]["gateway_reference"])
    ours = victim["payment"]["gateway_reference"]
    forged = [
        fake.callback_fields(other["payment"]["gateway_reference"], theirs["id"]),
        fake.callback_fields(ours, theirs["id"], secret="not_our_key_secret"),
        {
            "razorpay_order_id": ours,
            "razorpay_payment_id": theirs["id"],
            "razorpay_signature": "0" * 64,
        },
        {
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "description": "Forged",
                "metadata": {"payment_id": theirs["id"], "order_id": ours},
            }
        },
    ]
    url = f"/payments/{victim['payment']['id']}/confirm"
    for fields in forged:
        response = rzp_api.post(url, fields)
        assert response.status_code == 400, (fields, response.get_json())
        body = response.get_json()
        assert body["success"] is False and body["error"]["code"] == "signature_invalid", body
        payment = rzp_api.get(f"/payments/{victim['payment']['id']}").get_json()["data"]
        assert payment["status"] == "incomplete", fields
        assert payment["gateway_payment_id"] is None and payment["failure_message"] is None
    # The forgeries did not spoil the attempt: the genuine confirm still pays it.
    genuine = fake.add_payment(ours)
    response = rzp_api.post(url, fake.callback_fields(ours, genuine["id"]))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["status"] == "succeeded"
    order = rzp_api.get(f"/orders/{victim['order']['id']}").get_json()["data"]
    assert order["status"] == "paid"


def test_failure_fields_reach_the_adapter_in_razorpays_form_names() -> None:
    from app.api.schemas import PaymentConfirm

    body = PaymentConfirm.model_validate(
        {
            "error": {
                "code": "BAD_REQUEST_ERROR",
                "reason": "payment_failed",
                "metadata": {"order_id": "order_1", "payment_id": "pay_1"},
            }
        }
    )
    assert body.gateway_args() == {
        "error[code]": "BAD_REQUEST_ERROR",
        "error[reason]": "payment_failed",
        "error[metadata][order_id]": "order_1",
        "error[metadata][payment_id]": "pay_1",
    }
