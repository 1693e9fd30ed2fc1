"""#17: the payment page offers "Void authorization" beside Capture for an authorized
payment whose gateway can void (Stripe here, over the fake's HTTP API); voiding releases
the hold, cancels the order and frees its stock."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask

from app.extensions import db
from app.models import Payment
from app.payments import checkout
from app.payments.audit import CUSTOMER
from app.payments.orders import ItemRequest
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import FAKE_WEBHOOK_SECRET, fake_stripe  # noqa: F401
from tests.fakes.stripe_signing import signed_event
from tests.integration.dashboard.conftest import login
from tests.integration.stripe_support import stripe_settings

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def _authorized(app: Flask, fake: FakeStripe) -> str:
    with app.test_request_context():
        payment = checkout.create_checkout(
            [ItemRequest("tee-usd", 1)], "ann@example.com", "Ann Lee", "stripe", CUSTOMER
        )
        public_id, session_id = payment.public_id, payment.gateway_reference or ""
    since = len(fake.events)
    fake.complete_session(session_id)
    client = app.test_client()
    for event in fake.events[since:]:
        if event["type"] == "checkout.session.completed":
            public = {k: v for k, v in event.items() if not k.startswith("_")}
            body, headers = signed_event(public, FAKE_WEBHOOK_SECRET)
            assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    with app.app_context():
        row = db.session.query(Payment).filter_by(public_id=public_id).one()
        assert row.status == "authorized"
    return public_id


def test_the_void_button_releases_the_authorization(
    make_app: Callable[..., Flask],
    fake_stripe: FakeStripe,  # noqa: F811  (the fixture)
) -> None:
    app = make_app(**stripe_settings(fake_stripe, CAPTURE_METHOD="manual"))
    pid = _authorized(app, fake_stripe)
    client = login(app.test_client(), "owner")
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert f'action="/dashboard/payments/{pid}/void"' in page and "Void authorization" in page
    token = CSRF.search(page)
    assert token
    response = client.post(f"/dashboard/payments/{pid}/void", data={"csrf_token": token.group(1)})
    assert response.status_code == 303
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert "Authorization voided: nothing was charged." in page
    assert "Void authorization" not in page and "/capture" not in page
    with app.app_context():
        row = db.session.query(Payment).filter_by(public_id=pid).one()
        assert (row.status, row.order.status, row.order.stock_reserved) == (
            "canceled",
            "canceled",
            False,
        )
    pi = fake_stripe.payment_intents[row.gateway_payment_id or ""]
    assert pi["status"] == "canceled"


def test_a_viewer_cannot_void(
    make_app: Callable[..., Flask],
    fake_stripe: FakeStripe,  # noqa: F811  (the fixture)
) -> None:
    app = make_app(**stripe_settings(fake_stripe, CAPTURE_METHOD="manual"))
    pid = _authorized(app, fake_stripe)
    client = login(app.test_client(), "viewer")
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert "Void authorization" not in page
    token = CSRF.search(page) or re.search(r'"X-CSRFToken": "([^"]+)"', page)
    data = {"csrf_token": token.group(1)} if token else {}
    assert client.post(f"/dashboard/payments/{pid}/void", data=data).status_code == 403
