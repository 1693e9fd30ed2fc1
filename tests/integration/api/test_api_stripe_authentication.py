"""A Stripe charge the bank wants authenticated, finished on-session without Stripe.js
(Stripe's manual redirect for 3D Secure), over real HTTP against the fake Stripe API:
the customer's Kassa link confirms the PaymentIntent with a return_url, Stripe answers
next_action redirect_to_url, the customer passes (or fails) the bank's page and comes
back to Kassa's return page, which re-fetches the intent; the webhooks then change
nothing more."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.gateways.stripe import AUTH_FAILED_MESSAGE
from app.models import AuditEntry, OutboxEvent, Payment
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.api.conftest import Api
from tests.integration.api.test_api_stripe_saved_methods import _save
from tests.integration.stripe_support import (
    Shop,
    make_stripe_app,  # noqa: F401  (fixture)
)


def _waiting_charge(
    make_stripe_app: Callable[..., Flask], fake: FakeStripe
) -> tuple[Shop, Api, dict[str, Any]]:
    shop, api, customer = _save(make_stripe_app, fake, last4="3184")
    response = api.post(
        "/payments/charge",
        {
            "payment_method_id": customer["payment_methods"][0]["id"],
            "amount": 900,
            "currency": "EUR",
        },
        headers={"Idempotency-Key": "needs-3ds"},
    )
    assert response.status_code == 201, response.get_json()
    payment = response.get_json()["data"]
    assert payment["status"] == "requires_action"
    return shop, api, payment


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _status(api: Api, payment_id: str) -> dict[str, Any]:
    data: dict[str, Any] = api.get(f"/payments/{payment_id}").get_json()["data"]
    return data


def _to_the_bank(shop: Shop, payment: dict[str, Any]) -> str:
    """Open the emailed link, press the button: the 303 to Stripe's redirect_to_url."""
    link = _path(payment["action_url"])
    page = shop.client.get(link)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Continue to your bank" in html and "€9.00" in html
    pressed = shop.client.post(link)
    assert pressed.status_code == 303, pressed.get_data(as_text=True)[:500]
    return str(pressed.headers["Location"])


def test_the_link_confirms_on_session_and_the_return_page_settles_it(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, payment = _waiting_charge(make_stripe_app, fake_stripe)
    pi_id = payment["gateway_payment_id"]
    pm_id = fake_stripe.payment_intents[pi_id]["payment_method"]
    location = _to_the_bank(shop, payment)
    assert location == f"{fake_stripe.base_url}/3ds/{pi_id}"
    # Confirmed on-session: the saved method and our return page, no off_session.
    [confirm] = fake_stripe.calls("POST", f"/v1/payment_intents/{pi_id}/confirm")
    assert confirm.form == {
        "payment_method": pm_id,
        "return_url": f"http://127.0.0.1:5000/checkout/return/{payment['id']}",
        "expand": ["latest_charge"],
    }
    with shop.app.app_context():
        key = db.session.execute(
            select(Payment.idempotency_key).where(Payment.public_id == payment["id"])
        ).scalar_one()
    assert confirm.idempotency_key == f"{key}-authenticate"
    assert _status(api, payment["id"])["status"] == "requires_action"

    # The bank's page (the fake's 3DS page, another server: over HTTP) sends the
    # customer back to Kassa.
    since = len(fake_stripe.events)
    assert "Complete authentication" in requests.get(location, timeout=5).text
    answer = requests.post(
        f"{location}/complete", data={"outcome": "pass"}, allow_redirects=False, timeout=5
    )
    assert answer.status_code == 303
    back = answer.headers["Location"]
    assert back.startswith(f"http://127.0.0.1:5000/checkout/return/{payment['id']}?payment_intent=")
    returned = shop.client.get(_path(back))
    assert returned.status_code == 200
    assert "Thank you" in returned.get_data(as_text=True)
    settled = _status(api, payment["id"])
    assert settled["status"] == "succeeded" and settled["action_url"] is None
    # Stripe's webhooks for it arrive after the return: applied once, so nothing moves.
    with shop.app.app_context():
        paid_events = (
            db.session.execute(
                select(OutboxEvent.type).where(OutboxEvent.payment_id == payment["id"])
            )
            .scalars()
            .all()
        )
        moves = db.session.execute(
            select(AuditEntry.to_state).where(
                AuditEntry.object_id == payment["id"], AuditEntry.to_state == "succeeded"
            )
        ).all()
    shop.deliver_all(shop.events_for("", since))
    with shop.app.app_context():
        after = (
            db.session.execute(
                select(OutboxEvent.type).where(OutboxEvent.payment_id == payment["id"])
            )
            .scalars()
            .all()
        )
    assert after == paid_events and after.count("order.paid") == 1
    assert len(moves) == 1  # one audited move to succeeded, from the return page

    # The link again: the status, and no second confirmation at Stripe.
    again = shop.client.get(_path(payment["action_url"]))
    assert again.status_code == 200
    assert "This payment is confirmed" in again.get_data(as_text=True)
    pressed = shop.client.post(_path(payment["action_url"]))
    assert pressed.status_code == 200
    assert "This payment is confirmed" in pressed.get_data(as_text=True)
    assert len(fake_stripe.calls("POST", f"/v1/payment_intents/{pi_id}/confirm")) == 1


def test_a_second_visit_before_authenticating_goes_to_the_same_bank_page(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, _, payment = _waiting_charge(make_stripe_app, fake_stripe)
    first = _to_the_bank(shop, payment)
    second = _to_the_bank(shop, payment)
    assert first == second
    pi_id = payment["gateway_payment_id"]
    assert len(fake_stripe.calls("POST", f"/v1/payment_intents/{pi_id}/confirm")) == 1


def test_a_failed_authentication_fails_the_payment_in_plain_words(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, payment = _waiting_charge(make_stripe_app, fake_stripe)
    _to_the_bank(shop, payment)
    since = len(fake_stripe.events)
    back = fake_stripe.authenticate(payment["gateway_payment_id"], passed=False)
    assert "redirect_status=failed" in back
    page = shop.client.get(_path(back)).get_data(as_text=True)
    assert AUTH_FAILED_MESSAGE in page
    failed = _status(api, payment["id"])
    assert failed["status"] == "failed"
    assert failed["failure_code"] == "payment_intent_authentication_failure"
    assert failed["failure_message"] == AUTH_FAILED_MESSAGE
    # payment_intent.payment_failed comes after: a duplicate, one payment.failed event.
    shop.deliver_all(shop.events_for("", since))
    with shop.app.app_context():
        kinds = (
            db.session.execute(
                select(OutboxEvent.type).where(OutboxEvent.payment_id == payment["id"])
            )
            .scalars()
            .all()
        )
    assert kinds.count("payment.failed") == 1
    # The link now says what happened, with no way on to the bank.
    link = shop.client.get(_path(payment["action_url"])).get_data(as_text=True)
    assert AUTH_FAILED_MESSAGE in link and "Continue to your bank" not in link


def test_the_webhook_alone_settles_it_when_the_customer_never_comes_back(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    shop, api, payment = _waiting_charge(make_stripe_app, fake_stripe)
    _to_the_bank(shop, payment)
    since = len(fake_stripe.events)
    fake_stripe.authenticate(payment["gateway_payment_id"], passed=True)  # tab closed after
    shop.deliver_all(shop.events_for("", since))
    assert _status(api, payment["id"])["status"] == "succeeded"
    # A late return finds it settled and changes nothing.
    returned = shop.client.get(f"/checkout/return/{payment['id']}")
    assert returned.status_code == 200
    assert _status(api, payment["id"])["status"] == "succeeded"
