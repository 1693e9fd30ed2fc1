"""The API in front of Stripe (the fake Stripe API over real HTTP): a confirm is verified by
retrieving the session, never taken from the browser; an unreachable Stripe is a 503."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import socket
from collections.abc import Callable

from flask import Flask

from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import fake_stripe  # noqa: F401  (fixture)
from tests.integration.api.conftest import Api, checkout_body, error_code, new_key
from tests.integration.stripe_support import make_stripe_app  # noqa: F401  (fixture)


def test_confirm_asks_stripe_and_only_a_paid_session_counts(
    make_stripe_app: Callable[..., Flask], fake_stripe: FakeStripe
) -> None:
    app = make_stripe_app()
    api = Api(app, new_key(app))
    paid = api.post(
        "/checkout-sessions",
        checkout_body(
            success_url=app.config["PUBLIC_BASE_URL"] + "/thanks?s={CHECKOUT_SESSION_ID}"
        ),
    )
    assert paid.status_code == 201, paid.get_json()
    paid_data = paid.get_json()["data"]
    assert paid_data["payment"]["gateway"] == "stripe"  # the first active gateway
    session_id = paid_data["payment"]["gateway_reference"]
    assert session_id.startswith("cs_test_")
    assert paid_data["checkout_url"].startswith(fake_stripe.base_url)
    unpaid = api.post("/checkout-sessions", checkout_body()).get_json()["data"]

    fake_stripe.complete_session(session_id, "paid", emit=False)  # no webhook arrives
    # A browser claiming the paid session for the unpaid payment changes nothing.
    forged = api.post(f"/payments/{unpaid['payment']['id']}/confirm", {"session_id": session_id})
    assert forged.status_code == 200
    assert forged.get_json()["data"]["status"] == "incomplete"
    confirmed = api.post(
        f"/payments/{paid_data['payment']['id']}/confirm", {"session_id": session_id}
    )
    payment = confirmed.get_json()["data"]
    assert payment["status"] == "succeeded"
    assert payment["gateway_payment_id"].startswith("pi_")
    order = api.get(f"/orders/{paid_data['order']['id']}").get_json()["data"]
    assert order["status"] == "paid"


def test_an_unreachable_stripe_is_503(make_stripe_app: Callable[..., Flask]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_stripe_app(STRIPE_API_BASE=f"http://127.0.0.1:{port}")
    response = Api(app, new_key(app)).post("/checkout-sessions", checkout_body())
    assert response.status_code == 503 and error_code(response) == "gateway_unavailable"
    assert response.headers["Retry-After"]
