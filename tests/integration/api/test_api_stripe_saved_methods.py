"""Saved methods on Stripe, over real HTTP against the fake Stripe API: Checkout saves the
card on a Stripe customer (setup_future_usage=off_session), the saved PaymentMethod is read
when checkout.session.completed arrives, and a later charge is an off-session PaymentIntent
with exactly the parameters Stripe documents and the attempt's idempotency key."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Payment
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.api.conftest import Api, checkout_body, error_code, new_key
from tests.integration.stripe_support import (
    Shop,
    make_stripe_app,  # noqa: F401  (fixture)
)


def _save(
    make_stripe_app: Callable[..., Flask], fake: FakeStripe, last4: str = "4242"
) -> tuple[Shop, Api, dict[str, Any]]:
    app = make_stripe_app()
    shop = Shop(app, app.test_client(), fake)
    api = Api(app, new_key(app))
    created = api.post("/checkout-sessions", checkout_body(save_payment_method=True))
    assert created.status_code == 201, created.get_json()
    data = created.get_json()["data"]
    session_id = data["payment"]["gateway_reference"]
    # Stripe was asked for a customer, then a Checkout Session on it that saves the card.
    [customer_call] = fake.calls("POST", "/v1/customers")
    assert customer_call.form == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "metadata": {"payment_id": data["payment"]["id"]},
    }
    assert customer_call.headers["Idempotency-Key"].endswith("-customer")
    [session_call] = fake.calls("POST", "/v1/checkout/sessions")
    cus_id = fake.sessions[session_id]["customer"]
    assert session_call.form["customer"] == cus_id and cus_id.startswith("cus_")
    assert "customer_email" not in session_call.form
    assert session_call.form["payment_intent_data"]["setup_future_usage"] == "off_session"
    since = len(fake.events)
    fake.complete_session(session_id, "paid", last4=last4)
    shop.deliver_all(shop.events_for(session_id, since))
    customer = api.get(f"/customers/{data['payment']['customer_id']}").get_json()["data"]
    return shop, api, customer


def test_save_at_checkout_then_charge_off_session(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer = _save(make_stripe_app, fake_stripe)
    [method] = customer["payment_methods"]
    assert (method["gateway"], method["brand"], method["last4"]) == ("stripe", "visa", "4242")
    assert (method["exp_month"], method["exp_year"]) == (12, 2034)
    assert fake_stripe.calls("GET", "/v1/payment_methods/*")  # read from Stripe, once saved

    response = api.post(
        "/payments/charge",
        {
            "payment_method_id": method["id"],
            "amount": 1250,
            "currency": "USD",
            "description": "Refill",
        },
        headers={"Idempotency-Key": "stripe-charge-1"},
    )
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "succeeded" and payment["gateway_payment_id"].startswith("pi_")
    [call] = fake_stripe.calls("POST", "/v1/payment_intents")
    pm_id = fake_stripe.payment_intents[payment["gateway_payment_id"]]["payment_method"]
    with shop.app.app_context():
        row = db.session.execute(
            select(Payment).where(Payment.public_id == payment["id"])
        ).scalar_one()
        key = row.idempotency_key
        order_id = row.order.public_id
    assert call.form == {
        "amount": "1250",
        "currency": "usd",
        "customer": fake_stripe.payment_methods[pm_id]["customer"],
        "payment_method": pm_id,
        "off_session": "true",
        "confirm": "true",
        "metadata": {"order_id": order_id, "payment_id": payment["id"]},
        "expand": ["latest_charge"],
        "description": "Refill",
    }
    assert call.headers["Idempotency-Key"] == key and key.startswith("kassa-charge-")
    # The same Idempotency-Key again: the stored answer, no second PaymentIntent.
    again = api.post(
        "/payments/charge",
        {
            "payment_method_id": method["id"],
            "amount": 1250,
            "currency": "USD",
            "description": "Refill",
        },
        headers={"Idempotency-Key": "stripe-charge-1"},
    )
    assert again.get_json()["data"]["id"] == payment["id"]
    assert len(fake_stripe.calls("POST", "/v1/payment_intents")) == 1
    # Its payment_intent.succeeded webhook is a duplicate: nothing moves.
    shop.deliver_all([e for e in shop.events_for("", 0) if e["type"] == "payment_intent.succeeded"])
    assert api.get(f"/payments/{payment['id']}").get_json()["data"]["status"] == "succeeded"


def test_authentication_required_waits_in_requires_action_and_the_webhook_settles_it(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer = _save(make_stripe_app, fake_stripe, last4="3184")
    method = customer["payment_methods"][0]
    response = api.post(
        "/payments/charge",
        {"payment_method_id": method["id"], "amount": 900, "currency": "USD"},
        headers={"Idempotency-Key": "auth"},
    )
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "requires_action" and "/pay/action/" in payment["action_url"]
    pi = fake_stripe.payment_intents[payment["gateway_payment_id"]]
    assert pi["status"] == "requires_action"
    # The customer authenticates with their bank (on-session); Stripe then tells us.
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
    shop.deliver(fake_stripe.emit("payment_intent.succeeded", pi))
    assert api.get(f"/payments/{payment['id']}").get_json()["data"]["status"] == "succeeded"


def test_a_decline_is_402_with_stripes_reason(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    _, api, customer = _save(make_stripe_app, fake_stripe, last4="0341")
    method = customer["payment_methods"][0]
    response = api.post(
        "/payments/charge",
        {"payment_method_id": method["id"], "amount": 900, "currency": "USD"},
        headers={"Idempotency-Key": "declined"},
    )
    assert response.status_code == 402 and error_code(response) == "card_declined"
    assert response.get_json()["error"]["message"] == "Your card was declined."
    assert (
        api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"][0]["status"]
        == "active"
    )


def test_removing_a_method_detaches_it_at_stripe(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    _, api, customer = _save(make_stripe_app, fake_stripe)
    method = customer["payment_methods"][0]
    pm_id = next(iter(p for p, v in fake_stripe.payment_methods.items() if v["customer"]))
    removed = api.client.delete(
        f"/api/v1/customers/{customer['id']}/payment-methods/{method['id']}", headers=api.headers()
    )
    assert removed.status_code == 200
    assert fake_stripe.calls("POST", f"/v1/payment_methods/{pm_id}/detach")
    assert fake_stripe.payment_methods[pm_id]["customer"] is None
