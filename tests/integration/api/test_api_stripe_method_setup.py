"""Saving a card without a payment on Stripe (Checkout mode=setup), over real HTTP against
the fake Stripe API: the merchant emails the customer a link from their dashboard page
(Stripe's page in setup mode); the method is saved when checkout.session.completed (mode
setup) arrives, read from its SetupIntent, and can then be charged off-session."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import re
from collections.abc import Callable
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import AuditEntry, User
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.api.conftest import Api, checkout_body, new_key
from tests.integration.stripe_support import (
    Shop,
    make_stripe_app,  # noqa: F401  (fixture)
)

PASSWORD = "correct horse battery staple"


def _customer(
    make_stripe_app: Callable[..., Flask], fake: FakeStripe, **settings: object
) -> tuple[Shop, Api, str]:
    """A customer (made by a Stripe checkout) and a signed-in owner's client (Shop)."""
    app = make_stripe_app(**settings)
    api = Api(app, new_key(app))
    bought = api.post("/checkout-sessions", checkout_body(gateway="stripe"))
    assert bought.status_code == 201, bought.get_json()
    with app.app_context():
        db.session.add(
            User(
                email="owner@shop.test",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                role="owner",
                session_token="t" * 32,
            )
        )
        db.session.commit()
    client = app.test_client()
    signed = client.post("/auth/login", data={"email": "owner@shop.test", "password": PASSWORD})
    assert signed.status_code == 303
    customer_id = bought.get_json()["data"]["payment"]["customer_id"]
    return Shop(app, client, fake), api, customer_id


def _send_link(shop: Shop, customer_id: str, currency: str) -> str:
    """The owner presses "Email the link" on the customer's page: the flashed URL."""
    page = shop.client.get(f"/dashboard/customers/{customer_id}").get_data(as_text=True)
    assert "Send the customer a link to save a card" in page
    sent = shop.client.post(
        f"/dashboard/customers/{customer_id}/setup",
        data={"gateway": "stripe", "currency": currency},
    )
    assert sent.status_code == 303
    page = shop.client.get(f"/dashboard/customers/{customer_id}").get_data(as_text=True)
    found = re.search(r"A link to save a card was emailed to \S+: (\S+/pay/cs_test_\w+)", page)
    assert found, page
    return found.group(1)


def test_a_customer_saves_a_card_without_paying_and_it_can_be_charged(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer_id = _customer(make_stripe_app, fake_stripe)
    url = _send_link(shop, customer_id, "eur")
    session_id = url.rsplit("/", 1)[1]
    assert url == f"{fake_stripe.base_url}/pay/{session_id}"
    setup = {"url": url}
    # The customer was emailed the same page.
    [mail] = (Path(shop.app.instance_path) / "outbox").glob(f"setup-{session_id}*")
    text = message_from_bytes(mail.read_bytes(), policy=default).get_content()
    assert url in text and "Nothing is charged now" in text
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
    again = _send_link(shop, customer_id, "")
    assert len(fake_stripe.calls("POST", "/v1/customers")) == 1
    second = fake_stripe.sessions[again.rsplit("/", 1)[1]]
    assert second["customer"] == cus_id and second["currency"] == "eur"  # the latest charge's


def test_leaving_stripes_page_saves_nothing(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, customer_id = _customer(make_stripe_app, fake_stripe)
    _send_link(shop, customer_id, "usd")
    left = shop.client.get(f"/pay/setup/{customer_id}/done?canceled=1")
    assert left.status_code == 200 and "Nothing was saved" in left.get_data(as_text=True)
    assert api.get(f"/customers/{customer_id}").get_json()["data"]["payment_methods"] == []


def test_bad_setup_requests_change_nothing(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, _, customer_id = _customer(make_stripe_app, fake_stripe, SANDBOX_ENABLED=True)
    sessions = len(fake_stripe.sessions)
    assert shop.client.post("/dashboard/customers/cus_nobody/setup").status_code == 404
    bad = shop.client.post(
        f"/dashboard/customers/{customer_id}/setup", data={"gateway": "stripe", "currency": "EURO"}
    )
    assert bad.status_code == 303
    # The sandbox cannot save without a payment: it is not offered, and refused if sent.
    page = shop.client.get(f"/dashboard/customers/{customer_id}").get_data(as_text=True)
    assert 'value="sandbox"' not in page.split("Send the customer a link")[1].split("</form>")[0]
    cannot = shop.client.post(
        f"/dashboard/customers/{customer_id}/setup", data={"gateway": "sandbox", "currency": "USD"}
    )
    assert cannot.status_code == 303
    assert len(fake_stripe.sessions) == sessions
    with shop.app.app_context():
        assert not db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "payment_method.setup_started")
        ).first()
