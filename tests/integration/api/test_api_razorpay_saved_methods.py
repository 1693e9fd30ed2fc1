"""Saved methods on Razorpay, over real HTTP against the fake Razorpay API (the SDK is
real): with the customer's consent the checkout's order is a card recurring authorisation
order on a Razorpay customer and Checkout opens with `customer_id` and `recurring: "1"`;
once paid, the payment's token is read and kept (its address and what is safe to show); a
later charge is a new order and POST /payments/create/recurring, idempotent by the order's
receipt; removing the method deletes the token at Razorpay."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Order, Payment, SavedPaymentMethod
from app.payments import customers
from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.api.conftest import Api, error_code, new_key
from tests.integration.razorpay_app import add_products, razorpay_config

BODY = {
    "items": [{"sku": "notebook-inr", "quantity": 1}],
    "customer": {"email": "asha@example.com", "name": "Asha Rao"},
}


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def rzp_app(make_app: Callable[..., Flask], fake: FakeRazorpay) -> Flask:
    app = make_app(**razorpay_config(fake, WTF_CSRF_ENABLED=False))
    with app.app_context():
        add_products()
    return app


def _webhook(api: Api, fake: FakeRazorpay, kind: str, payment_id: str) -> None:
    body, headers = fake.webhook(kind, payment_id=payment_id)
    response = api.client.post("/webhooks/razorpay", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def _options(api: Api, payment_id: str) -> dict[str, Any]:
    html = api.client.get(f"/checkout/razorpay/{payment_id}").get_data(as_text=True)
    match = re.search(r'data-options="([^"]+)"', html)
    assert match is not None, html[:500]
    return dict(json.loads(match.group(1).replace("&#34;", '"').replace("&amp;", "&")))


def _save(
    rzp_app: Flask, fake: FakeRazorpay, last4: str = "1111"
) -> tuple[Api, dict[str, Any], dict[str, Any]]:
    """Buy with "save" ticked, pay in Checkout (as checkout.js would), webhooks arrive."""
    api = Api(rzp_app, new_key(rzp_app))
    created = api.post("/checkout-sessions", {**BODY, "save_payment_method": True})
    assert created.status_code == 201, created.get_json()
    payment = created.get_json()["data"]["payment"]
    order_id = payment["gateway_reference"]
    # A Razorpay customer, made or found (fail_existing=0), then an authorisation order.
    [customer_call] = fake.calls("POST", "/v1/customers")
    assert customer_call.json == {
        "email": "asha@example.com",
        "name": "Asha Rao",
        "fail_existing": "0",
    }
    [cust_id] = fake.customers
    [order_call] = fake.calls("POST", "/v1/orders")
    token = order_call.json.pop("token")
    assert order_call.json == {
        "amount": 49900,
        "currency": "INR",
        "receipt": payment["id"],
        "notes": {
            "order_id": created.get_json()["data"]["order"]["id"],
            "payment_id": payment["id"],
            "save_payment_method": "true",
        },
        "payment": {"capture": "automatic"},
        "customer_id": cust_id,
        "method": "card",
    }
    assert token["max_amount"] == 1_500_000 and token["frequency"] == "as_presented"
    assert token["expire_at"] > time.time() + 9 * 365 * 86400
    # The checkout page opens Checkout on that customer, recurring.
    options = _options(api, payment["id"])
    assert options["customer_id"] == cust_id and options["recurring"] == "1"
    assert options["order_id"] == order_id
    assert options["notes"]["save_payment_method"] == "true"
    paid = requests.post(
        f"{fake.url}/_fake/checkout/{order_id}/pay",
        data={
            "outcome": "success",
            "key": fake.key_id,
            "method": "card",
            "customer_id": options["customer_id"],
            "recurring": options["recurring"],
            "last4": last4,
        },
        timeout=10,
    )
    assert paid.ok, paid.text
    rzp_payment_id = paid.json()["razorpay_payment_id"]
    assert fake.payments[rzp_payment_id]["token_id"] in fake.tokens
    for kind in ("payment.authorized", "payment.captured", "order.paid"):
        _webhook(api, fake, kind, rzp_payment_id)
    assert api.get(f"/payments/{payment['id']}").get_json()["data"]["status"] == "succeeded"
    customer = api.get(f"/customers/{payment['customer_id']}").get_json()["data"]
    return api, customer, fake.payments[rzp_payment_id]


def _charge(api: Api, method_id: str, key: str, amount: int = 25000) -> Any:
    return api.post(
        "/payments/charge",
        {
            "payment_method_id": method_id,
            "amount": amount,
            "currency": "INR",
            "description": "Refill",
        },
        headers={"Idempotency-Key": key},
    )


def test_save_at_checkout_then_charge_later(rzp_app: Flask, fake: FakeRazorpay) -> None:
    api, customer, first = _save(rzp_app, fake, last4="4242")
    [method] = customer["payment_methods"]
    assert (method["gateway"], method["brand"], method["last4"]) == ("razorpay", "Visa", "4242")
    assert (method["exp_month"], method["exp_year"], method["expired"]) == (12, 2034, False)
    token_id, cust_id = first["token_id"], first["customer_id"]
    # Read from Razorpay once paid: the payment (its stored webhook has no token id) and
    # the token itself.
    assert fake.calls("GET", f"/v1/customers/{cust_id}/tokens/{token_id}")
    with rzp_app.app_context():
        row = db.session.execute(select(SavedPaymentMethod)).scalar_one()
        assert row.gateway_token == f"{cust_id}/{token_id}"
        raw = db.session.execute(text("SELECT gateway_token FROM saved_payment_methods")).scalar()
        assert token_id not in str(raw)  # encrypted at rest

    response = _charge(api, method["id"], "rzp-charge-1")
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "succeeded"
    assert payment["gateway_payment_id"].startswith("pay_")
    with rzp_app.app_context():
        row = db.session.execute(
            select(Payment).where(Payment.public_id == payment["id"])
        ).scalar_one()
        order_id = row.order.public_id
        rzp_order = row.gateway_reference
    # The charge's order, exactly as Razorpay documents it for subsequent payments.
    order_call = fake.calls("POST", "/v1/orders")[-1]
    assert order_call.json == {
        "amount": 25000,
        "currency": "INR",
        "receipt": payment["id"],
        "payment_capture": True,
        "notes": {"order_id": order_id, "payment_id": payment["id"], "off_session": "true"},
    }
    assert fake.orders[rzp_order]["receipt"] == payment["id"]
    [recurring] = fake.calls("POST", "/v1/payments/create/recurring")
    assert recurring.json == {
        "amount": 25000,
        "currency": "INR",
        "order_id": rzp_order,
        "customer_id": cust_id,
        "token": token_id,
        "recurring": True,
        "email": "asha@example.com",
        "description": "Refill",
        "notes": {"order_id": order_id, "payment_id": payment["id"], "off_session": "true"},
    }
    # Its webhooks are duplicates of what the charge's answer already applied.
    for kind in ("payment.authorized", "payment.captured", "order.paid"):
        _webhook(api, fake, kind, payment["gateway_payment_id"])
    assert api.get(f"/payments/{payment['id']}").get_json()["data"]["status"] == "succeeded"


def test_the_same_idempotency_key_twice_is_one_charge_at_razorpay(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    api, customer, _ = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    first = _charge(api, method["id"], "once-only")
    again = _charge(api, method["id"], "once-only")
    assert first.status_code == 201 and again.status_code == 201
    assert again.get_json()["data"]["id"] == first.get_json()["data"]["id"]
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1
    assert len(fake.calls("POST", "/v1/orders")) == 2  # the checkout's and the charge's


def test_a_lost_answer_is_retried_without_a_second_charge(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    """Razorpay charged, but its answer never came: the retry (same attempt) finds the
    order by its receipt and the payment on it, and charges nothing more."""
    api, customer, _ = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    # The recurring payment is made; the read of it that follows is dropped.
    fake.queue_reset(path="/v1/payments/pay_", method="GET")
    response = _charge(api, method["id"], "lost-answer")
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "succeeded"
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1
    assert len([o for o in fake.orders.values() if o["receipt"] == payment["id"]]) == 1
    # The retry looked the order up by its receipt and read its payments.
    assert fake.calls("GET", f"/v1/orders/{payment['gateway_reference']}/payments")


def test_a_decline_is_402_with_the_reason_and_nothing_else_changes(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    api, customer, first = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    fake.recurring_declines[first["token_id"]] = (
        "insufficient_funds",
        "Payment failed due to insufficient balance in the card.",
    )
    with rzp_app.app_context():
        orders_before = db.session.scalar(select(func.count()).select_from(Order))
    response = _charge(api, method["id"], "declined")
    assert response.status_code == 402 and error_code(response) == "payment_failed"
    body = response.get_json()["error"]
    assert body["message"] == "Payment failed due to insufficient balance in the card."
    # One attempt, failed with Razorpay's reason; the method stays; no second charge.
    with rzp_app.app_context():
        [charged] = db.session.execute(
            select(Payment).where(Payment.saved_method_id.is_not(None))
        ).scalars()
        assert charged.status == "failed"
        assert charged.failure_code == "payment_failed"
        assert db.session.scalar(select(func.count()).select_from(Order)) == orders_before + 1
    listed = api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"]
    assert [(m["id"], m["status"]) for m in listed] == [(method["id"], "active")]
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1
    # The same key again answers the same decline; Razorpay is not asked again.
    again = _charge(api, method["id"], "declined")
    assert again.status_code == 402 and again.get_json()["error"] == body
    assert len(fake.calls("POST", "/v1/payments/create/recurring")) == 1
    # The payment.failed webhook agrees: still failed, final.
    failed = next(p for p in fake.payments.values() if p["status"] == "failed")
    _webhook(api, fake, "payment.failed", failed["id"])
    with rzp_app.app_context():
        assert db.session.get(Payment, charged.id).status == "failed"  # type: ignore[union-attr]


def test_removing_a_method_deletes_the_token_at_razorpay(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    api, customer, first = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    token_id, cust_id = first["token_id"], first["customer_id"]
    removed = api.client.delete(
        f"/api/v1/customers/{customer['id']}/payment-methods/{method['id']}",
        headers=api.headers(),
    )
    assert removed.status_code == 200, removed.get_json()
    assert removed.get_json()["data"]["status"] == "detached"
    assert fake.calls("DELETE", f"/v1/customers/{cust_id}/tokens/{token_id}")
    assert token_id not in fake.tokens
    assert api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"] == []
    # A removed method can never be charged.
    refused = _charge(api, method["id"], "after-removal")
    assert refused.status_code == 409 and error_code(refused) == "invalid_state"
    assert not fake.calls("POST", "/v1/payments/create/recurring")


def test_a_token_that_has_expired_is_marked_expired(rzp_app: Flask, fake: FakeRazorpay) -> None:
    """The token's expired_at (earlier than the card's own expiry) decides: shown expired,
    and Kassa refuses to charge it."""
    fake.card_expiry = (12, 2034)
    api = Api(rzp_app, new_key(rzp_app))
    created = api.post("/checkout-sessions", {**BODY, "save_payment_method": True})
    payment = created.get_json()["data"]["payment"]
    options = _options(api, payment["id"])
    paid = requests.post(
        f"{fake.url}/_fake/checkout/{payment['gateway_reference']}/pay",
        data={
            "outcome": "success",
            "key": fake.key_id,
            "customer_id": options["customer_id"],
            "recurring": "1",
        },
        timeout=10,
    ).json()
    rzp_payment = fake.payments[paid["razorpay_payment_id"]]
    fake.tokens[rzp_payment["token_id"]]["expired_at"] = int(time.time()) - 86400 * 40
    _webhook(api, fake, "payment.captured", rzp_payment["id"])
    customer = api.get(f"/customers/{payment['customer_id']}").get_json()["data"]
    [method] = customer["payment_methods"]
    assert method["expired"] is True
    refused = _charge(api, method["id"], "expired")
    assert refused.status_code == 409 and error_code(refused) == "invalid_state"
    assert "expired" in refused.get_json()["error"]["message"]
    assert not fake.calls("POST", "/v1/payments/create/recurring")


@pytest.mark.parametrize(("outcome", "final"), [("captured", "succeeded"), ("failed", "failed")])
def test_a_charge_the_bank_settles_later_is_settled_by_webhooks(
    rzp_app: Flask, fake: FakeRazorpay, outcome: str, final: str
) -> None:
    """Some banks settle recurring debits in files: the payment is `created` at first, the
    charge answers `processing`, and Razorpay's webhook settles it; a failure is final for
    a merchant-initiated charge (no checkout to retry in)."""
    api, customer, _ = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    fake.recurring_status = "created"
    response = _charge(api, method["id"], f"later-{outcome}")
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "processing"
    settled = fake.settle(
        payment["gateway_payment_id"],
        outcome,
        error_reason="insufficient_funds",
        error_description="Payment failed due to insufficient balance.",
    )
    _webhook(
        api, fake, "payment.failed" if outcome == "failed" else "payment.captured", settled["id"]
    )
    after = api.get(f"/payments/{payment['id']}").get_json()["data"]
    assert after["status"] == final
    if outcome == "failed":
        assert after["failure_code"] == "insufficient_funds"


def test_the_customer_removes_their_method_on_their_own_page(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    api, customer, first = _save(rzp_app, fake, last4="4242")
    method = customer["payment_methods"][0]
    with rzp_app.test_request_context():
        link = customers.methods_link(customers.get_customer(customer["id"]))
    path = link.split("://", 1)[-1].split("/", 1)[-1]
    page = api.client.get(f"/{path}").get_data(as_text=True)
    assert "4242" in page
    removed = api.client.post(f"/{path}/{method['id']}/remove")
    assert removed.status_code == 303
    assert fake.calls("DELETE", f"/v1/customers/{first['customer_id']}/tokens/{first['token_id']}")
    assert first["token_id"] not in fake.tokens
    assert "4242" not in api.client.get(f"/{path}").get_data(as_text=True)


def test_when_razorpay_cannot_delete_the_token_the_method_stays(
    rzp_app: Flask, fake: FakeRazorpay
) -> None:
    api, customer, first = _save(rzp_app, fake)
    method = customer["payment_methods"][0]
    for _ in range(3):  # every attempt the resilience layer makes
        fake.queue_error(500, "Something went wrong", "SERVER_ERROR", method="DELETE")
    removed = api.client.delete(
        f"/api/v1/customers/{customer['id']}/payment-methods/{method['id']}",
        headers=api.headers(),
    )
    assert removed.status_code == 503, removed.get_json()
    assert first["token_id"] in fake.tokens
    listed = api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"]
    assert [(m["id"], m["status"]) for m in listed] == [(method["id"], "active")]
