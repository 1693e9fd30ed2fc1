"""Saving a card without a payment on Stripe (Checkout mode=setup), over real HTTP against
the fake Stripe API: POST /api/v1/customers/{id}/setup answers Stripe's page; the method is
saved when checkout.session.completed (mode setup) arrives, read from its SetupIntent, and
can then be charged off-session."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.api.conftest import Api, checkout_body, error_code, new_key
from tests.integration.stripe_support import (
    Shop,
    make_stripe_app,  # noqa: F401  (fixture)
)


def _customer(
    make_stripe_app: Callable[..., Flask], fake: FakeStripe, **settings: object
) -> tuple[Shop, Api, str]:
    app = make_stripe_app(**settings)
    api = Api(app, new_key(app))
    bought = api.post("/checkout-sessions", checkout_body(gateway="stripe"))
    assert bought.status_code == 201, bought.get_json()
    return (
        Shop(app, app.test_client(), fake),
        api,
        bought.get_json()["data"]["payment"]["customer_id"],
    )


def test_a_customer_saves_a_card_without_paying_and_it_can_be_charged(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer_id = _customer(make_stripe_app, fake_stripe)
    started = api.post(f"/customers/{customer_id}/setup", {"gateway": "stripe", "currency": "eur"})
    assert started.status_code == 201, started.get_json()
    setup = started.get_json()["data"]
    session_id = setup["reference"]
    assert setup["url"] == f"{fake_stripe.base_url}/pay/{session_id}"
    # A Stripe customer of its own, then a setup session on it (Stripe's documented
    # parameters: mode, customer, currency, success and cancel URLs).
    [customer_call] = fake_stripe.calls("POST", "/v1/customers")
    assert customer_call.form["metadata"] == {"customer_id": customer_id}
    cus_id = fake_stripe.sessions[session_id]["customer"]
    [session_call] = [
        c for c in fake_stripe.calls("POST", "/v1/checkout/sessions") if c.form["mode"] == "setup"
    ]
    base = "http://127.0.0.1:5000"
    assert session_call.form == {
        "mode": "setup",
        "customer": cus_id,
        "currency": "eur",
        "client_reference_id": customer_id,
        "metadata": {"customer_id": customer_id},
        "setup_intent_data": {"metadata": {"customer_id": customer_id}},
        "success_url": f"{base}/pay/setup/{customer_id}/done?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{base}/pay/setup/{customer_id}/done?canceled=1",
    }
    assert session_call.idempotency_key and session_call.idempotency_key.startswith("kassa-setup-")

    # The customer saves a card on Stripe's page and comes back: a hint, nothing saved yet.
    since = len(fake_stripe.events)
    page = requests.get(setup["url"], timeout=5)
    assert "Save card" in page.text
    saved = requests.post(f"{setup['url']}/complete", allow_redirects=False, timeout=5)
    assert saved.status_code == 303
    back = urlsplit(saved.headers["Location"])
    assert back.path == f"/pay/setup/{customer_id}/done"
    done = shop.client.get(f"{back.path}?{back.query}")
    assert done.status_code == 200 and "Nothing was charged" in done.get_data(as_text=True)
    assert api.get(f"/customers/{customer_id}").get_json()["data"]["payment_methods"] == []

    # checkout.session.completed (mode setup): the SetupIntent's method is saved, once.
    events = [e for e in shop.events_for("", since) if e["type"] == "checkout.session.completed"]
    shop.deliver_all(events)
    shop.deliver_all(events)  # delivered twice: stored once
    methods = api.get(f"/customers/{customer_id}").get_json()["data"]["payment_methods"]
    [method] = methods
    assert (method["gateway"], method["brand"], method["last4"]) == ("stripe", "visa", "4242")
    si_id = fake_stripe.sessions[session_id]["setup_intent"]
    assert fake_stripe.calls("GET", f"/v1/setup_intents/{si_id}")
    with shop.app.app_context():
        actions = (
            db.session.execute(select(AuditEntry.action).where(AuditEntry.object_id == customer_id))
            .scalars()
            .all()
        )
    assert actions.count("payment_method.setup_started") == 1
    assert actions.count("payment_method.saved") == 1

    # The saved card is charged off-session like any other.
    charged = api.post(
        "/payments/charge",
        {"payment_method_id": method["id"], "amount": 700, "currency": "EUR"},
        headers={"Idempotency-Key": "after-setup"},
    )
    assert charged.status_code == 201, charged.get_json()
    assert charged.get_json()["data"]["status"] == "succeeded"
    [charge_call] = fake_stripe.calls("POST", "/v1/payment_intents")
    assert charge_call.form["customer"] == cus_id

    # A second setup reuses the Stripe customer Kassa keeps.
    again = api.post(f"/customers/{customer_id}/setup", {"gateway": "stripe"})
    assert again.status_code == 201
    assert len(fake_stripe.calls("POST", "/v1/customers")) == 1
    second = fake_stripe.sessions[again.get_json()["data"]["reference"]]
    assert second["customer"] == cus_id and second["currency"] == "eur"  # the latest charge's


def test_leaving_stripes_page_saves_nothing(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer_id = _customer(make_stripe_app, fake_stripe)
    api.post(f"/customers/{customer_id}/setup", {"gateway": "stripe"})
    left = shop.client.get(f"/pay/setup/{customer_id}/done?canceled=1")
    assert left.status_code == 200 and "Nothing was saved" in left.get_data(as_text=True)
    assert api.get(f"/customers/{customer_id}").get_json()["data"]["payment_methods"] == []


def test_bad_setup_requests_change_nothing(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    _, api, customer_id = _customer(make_stripe_app, fake_stripe, SANDBOX_ENABLED=True)
    sessions = len(fake_stripe.sessions)
    unknown = api.post("/customers/cus_nobody/setup", {"gateway": "stripe"})
    assert unknown.status_code == 404
    bad = api.post(f"/customers/{customer_id}/setup", {"gateway": "stripe", "currency": "EURO"})
    assert bad.status_code == 400 and error_code(bad) == "validation_error"
    cannot = api.post(f"/customers/{customer_id}/setup", {"gateway": "sandbox"})
    assert cannot.status_code == 409, cannot.get_json()
    assert "cannot save a method without a payment" in cannot.get_json()["error"]["message"]
    assert len(fake_stripe.sessions) == sessions
