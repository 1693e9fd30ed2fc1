"""The fake Stripe API's own behaviour that other tests and the dev server rely on:
the hosted page, signed webhook delivery, the events list and the HTTP controls."""

# Fixtures imported from tests/fakes and tests/integration shadow their names here.
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from app.gateways.base import PaymentRef
from app.gateways.stripe import StripeGateway
from app.models.enums import PaymentStatus
from tests.fakes.stripe_api import FakeStripe, serve_fake_stripe
from tests.fakes.stripe_fixtures import (
    FAKE_SECRET_KEY,
    FAKE_WEBHOOK_SECRET,
    checkout_request,
    fake_stripe,  # noqa: F401  (fixture)
)


@pytest.fixture
def gateway(fake_stripe: FakeStripe) -> Iterator[StripeGateway]:
    gw = StripeGateway(FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET, api_base=fake_stripe.base_url)
    yield gw
    gw.close()


def test_hosted_page_pay_redirects_to_success_with_session_id(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    with requests.Session() as browser:
        page = browser.get(session.redirect_url)
        assert page.status_code == 200
        assert "Blue mug" in page.text and "3700 USD" in page.text
        assert 'href="https://shop.example/checkout/cancel/pay_abc"' in page.text.replace("'", '"')
        paid = browser.post(
            f"{session.redirect_url}/complete", data={"outcome": "paid"}, allow_redirects=False
        )
    assert paid.status_code == 303
    assert paid.headers["Location"] == (
        f"https://shop.example/checkout/return/pay_abc?session_id={session.reference}"
    )
    assert (
        gateway.retrieve(PaymentRef(reference=session.reference)).status == PaymentStatus.SUCCEEDED
    )


def test_hosted_page_decline_keeps_the_session_open(gateway, fake_stripe) -> None:
    session = gateway.create_checkout(checkout_request())
    with requests.Session() as browser:
        declined = browser.post(f"{session.redirect_url}/complete", data={"outcome": "failed"})
    assert "Your card was declined." in declined.text
    assert fake_stripe.sessions[session.reference]["status"] == "open"
    assert [e["type"] for e in fake_stripe.events] == ["payment_intent.payment_failed"]


def test_webhooks_are_delivered_signed_and_verifiable(
    gateway, fake_stripe, httpserver: HTTPServer
) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    def handler(request: Request) -> Response:
        received.append((request.get_data(), dict(request.headers)))
        return Response("ok")

    httpserver.expect_request("/webhooks/stripe", method="POST").respond_with_handler(handler)
    fake_stripe.webhook_url = httpserver.url_for("/webhooks/stripe")
    fake_stripe.webhook_secret = FAKE_WEBHOOK_SECRET
    session = gateway.create_checkout(checkout_request())
    fake_stripe.complete_session(session.reference)
    assert fake_stripe.wait_for_deliveries(5)
    types = [gateway.verify_webhook(body, headers).event_type for body, headers in received]
    assert types == ["charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"]
    assert all(d.status == 200 for d in fake_stripe.deliveries)


def test_events_list_filters(fake_stripe) -> None:
    old = fake_stripe.emit("charge.succeeded", {"id": "ch_1"})
    old["created"] -= 1000
    fake_stripe.emit("checkout.session.completed", {"id": "cs_1"})
    fake_stripe.emit("checkout.session.expired", {"id": "cs_2"})
    url = f"{fake_stripe.base_url}/v1/events"
    auth = {"Authorization": f"Bearer {FAKE_SECRET_KEY}"}
    recent = requests.get(
        url, params={"created[gte]": int(time.time()) - 100}, headers=auth, timeout=5
    ).json()
    assert [e["type"] for e in recent["data"]] == [
        "checkout.session.expired",
        "checkout.session.completed",
    ]
    typed = requests.get(
        url, params={"type": "checkout.session.*", "limit": 1}, headers=auth, timeout=5
    ).json()
    assert [e["type"] for e in typed["data"]] == ["checkout.session.expired"]
    assert typed["has_more"] is True
    assert requests.get(url, timeout=5).status_code == 401


def test_http_controls_for_a_separate_dev_server() -> None:
    fake = serve_fake_stripe(0, latency_ms=0, block=False)
    gw = StripeGateway(
        FAKE_SECRET_KEY, FAKE_WEBHOOK_SECRET, api_base=fake.base_url, max_network_retries=0
    )
    try:
        session = gw.create_checkout(checkout_request())
        assert requests.post(
            f"{fake.base_url}/_test/sessions/{session.reference}/complete",
            json={"outcome": "paid"},
            timeout=5,
        ).ok
        assert (
            gw.retrieve(PaymentRef(reference=session.reference)).status == PaymentStatus.SUCCEEDED
        )
        requests.post(
            f"{fake.base_url}/_test/errors",
            json={"status": 500, "times": 1, "should_retry": False},
            timeout=5,
        )
        with pytest.raises(Exception):  # noqa: B017  GatewayError from the queued 500
            gw.retrieve(PaymentRef(reference=session.reference))
        log = requests.get(f"{fake.base_url}/_test/requests", timeout=5).json()
        assert [r["status"] for r in log] == [200, 200, 500]
    finally:
        gw.close()
        fake.shutdown()
