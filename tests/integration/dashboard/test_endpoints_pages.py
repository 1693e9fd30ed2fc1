"""The dashboard's webhook endpoint pages and the fulfilment panel: managers add an
endpoint, see its secret and log, send a test event, recover; viewers see none of it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import Order, WebhookEndpoint
from app.models.base import utcnow
from tests.integration.dashboard.conftest import csrf_token, sandbox_payment
from tests.integration.outgoing.receiver import Answer, Receiver


def test_manager_adds_tests_and_recovers_an_endpoint(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    dash_app.config["OUTGOING_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    client = signed_in("admin")
    receiver = Receiver()
    try:
        token = csrf_token(client, "/dashboard/endpoints")
        refused = client.post(
            "/dashboard/endpoints",
            data={"csrf_token": token, "url": "http://169.254.169.254/latest"},
        )
        assert refused.status_code == 422
        assert "link-local" in refused.get_data(as_text=True)
        created = client.post(
            "/dashboard/endpoints",
            data={"csrf_token": token, "url": receiver.url, "event_types": ["order.paid"]},
        )
        assert created.status_code == 303
        page_url = created.headers["Location"]
        html = client.get(page_url).get_data(as_text=True)
        secret = re.search(r'value="(whsec_[^"]+)"', html)
        assert secret and "order.paid" in html
        receiver.secrets = [secret.group(1)]

        receiver.answer(Answer(500))
        token = csrf_token(client, page_url)
        assert client.post(page_url + "/test", data={"csrf_token": token}).status_code == 303
        [got] = receiver.wait_for(1)
        assert got.verified_with == [0] and got.payload["type"] == "webhook_endpoint.test"
        html = client.get(page_url).get_data(as_text=True)
        assert "webhook_endpoint.test" in html and 'data-status="pending"' in html
        assert "answered 500" in html
        # The delivery page shows the request as sent and the answer.
        link = re.search(r'href="(/dashboard/endpoints/[^"]+/deliveries/[^"]+)"', html)
        assert link
        detail = client.get(link.group(1)).get_data(as_text=True)
        assert "webhook-signature" in detail and got.webhook_id in detail
        assert "answered 500" in detail and " ms " in detail

        # Disable (the pending delivery fails), enable, recover since an hour ago.
        for action in ("disable", "enable"):
            client.post(page_url + "/" + action, data={"csrf_token": token})
        since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        bad = client.post(page_url + "/recover", data={"csrf_token": token, "since": "soon"})
        assert bad.status_code == 422 and "field-error" in bad.get_data(as_text=True)
        done = client.post(page_url + "/recover", data={"csrf_token": token, "since": since})
        assert done.status_code == 303
        assert "1 failed delivery sent again" in client.get(page_url).get_data(as_text=True)
        assert receiver.wait_for(2)[1].webhook_id == got.webhook_id
    finally:
        receiver.close()


def test_viewers_cannot_see_endpoints(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    with dash_app.test_request_context():
        from app.payments.audit import Actor
        from app.payments.outgoing import endpoints

        endpoint, _ = endpoints.create_endpoint(
            "https://hooks.example.com/", None, "", Actor("user", "1")
        )
        endpoint_id = endpoint.public_id
    viewer = signed_in("viewer")
    assert viewer.get("/dashboard/endpoints").status_code == 403
    assert viewer.get(f"/dashboard/endpoints/{endpoint_id}").status_code == 403
    assert "Endpoints" not in viewer.get("/dashboard/payments").get_data(as_text=True)
    with dash_app.app_context():
        assert db.session.execute(select(WebhookEndpoint.enabled)).scalar_one()


def test_fulfilment_from_the_payment_page_reaches_the_customer(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    owner = signed_in("owner")
    pid = sandbox_payment(dash_app, owner)
    page = f"/dashboard/payments/{pid}"
    html = owner.get(page).get_data(as_text=True)
    assert 'data-fulfillment="unfulfilled"' in html and "Mark fulfilled" in html
    token = csrf_token(owner, page)
    done = owner.post(
        f"{page}/fulfillment/fulfilled", data={"csrf_token": token, "note": "Posted, track 12345"}
    )
    assert done.status_code == 303
    html = owner.get(page).get_data(as_text=True)
    assert 'data-fulfillment="fulfilled"' in html and "Posted, track 12345" in html
    assert "Mark fulfilled" not in html
    with dash_app.app_context():
        order_id = db.session.execute(select(Order.public_id)).scalar_one()
    customer = dash_app.test_client().get(f"/orders/{order_id}").get_data(as_text=True)
    assert "Your order has been sent" in customer and "Posted, track 12345" in customer
    viewer = signed_in("viewer")
    assert "Mark fulfilled" not in viewer.get(page).get_data(as_text=True)
