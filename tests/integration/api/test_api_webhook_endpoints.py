"""Webhook endpoints and fulfilment through the JSON API: a back office adds an endpoint,
pays, fulfils, reads the delivery log, rotates, replays and recovers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from flask import Flask

from app.models.base import utcnow
from tests.integration.api.conftest import (
    Api,
    checkout_body,
    complete_at_sandbox,
    error_code,
    new_key,
)
from tests.integration.outgoing.receiver import Answer, Receiver


def pay(api: Api) -> str:
    data = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    complete_at_sandbox(api.app, data["payment"]["gateway_reference"])
    return str(data["order"]["id"])


def test_endpoint_fulfilment_and_delivery_log(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = make_app(OUTGOING_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    api = Api(app, new_key(app))
    receiver = Receiver()
    try:
        created = api.post(
            "/webhook-endpoints",
            {"url": receiver.url, "event_types": ["order.paid", "order.fulfilled"]},
        )
        assert created.status_code == 201, created.get_json()
        endpoint = created.get_json()["data"]
        assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] is True
        assert created.headers["Location"] == f"/api/v1/webhook-endpoints/{endpoint['id']}"
        receiver.secrets = [endpoint["secret"]]
        listed = api.get("/webhook-endpoints").get_json()["data"]
        assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]

        order_id = pay(api)
        # Fulfil it: the order shows it, the customer is emailed, the endpoint is told.
        response = api.post(f"/orders/{order_id}/fulfillment", {"note": "DHL 00340434161094042557"})
        assert response.status_code == 200, response.get_json()
        order = response.get_json()["data"]
        assert order["fulfillment_status"] == "fulfilled" and order["fulfilled_at"]
        # Repeating it changes nothing; canceling a fulfilled order is refused.
        assert api.post(f"/orders/{order_id}/fulfillment", {}).status_code == 200
        refused = api.post(f"/orders/{order_id}/fulfillment", {"status": "canceled"})
        assert refused.status_code == 409 and error_code(refused) == "invalid_state"
        got = receiver.wait_for(2)
        assert [r.payload["type"] for r in got] == ["order.paid", "order.fulfilled"]
        assert all(r.verified_with == [0] for r in got)
        assert got[1].payload["data"]["fulfillment_status"] == "fulfilled"
        mails = [
            p.read_text() for p in (tmp_path / "instance" / "outbox").glob("*order_fulfilled*")
        ]
        assert len(mails) == 1 and "DHL 00340434161094042557" in mails[0]

        log = api.get(f"/webhook-endpoints/{endpoint['id']}/deliveries").get_json()["data"]
        assert [d["event_type"] for d in log] == ["order.fulfilled", "order.paid"]
        assert all(d["status"] == "delivered" and d["last_status_code"] == 204 for d in log)
        assert log[1]["event_id"] == got[0].webhook_id

        # Rotate: both secrets sign for a day; a replay is re-signed with both.
        rotated = api.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret", {}).get_json()
        new_secret = rotated["data"]["secret"]
        assert rotated["data"]["previous_secret_valid_until"]
        assert (
            api.get(f"/webhook-endpoints/{endpoint['id']}/secret").get_json()["data"]["secret"]
            == new_secret
        )
        receiver.secrets = [new_secret]
        replayed = api.post(
            f"/webhook-endpoints/{endpoint['id']}/deliveries/{log[1]['id']}/replay", {}
        )
        assert replayed.status_code == 202
        again = receiver.wait_for(3)[2]
        assert again.webhook_id == got[0].webhook_id and again.verified_with == [0]

        # A test event, failing; then recovered since an hour ago.
        receiver.answer(Answer(500))
        sent = api.post(f"/webhook-endpoints/{endpoint['id']}/test", {})
        assert sent.status_code == 202
        test_id = sent.get_json()["data"]["event_id"]
        assert receiver.wait_for(4)[3].webhook_id == test_id
        # Disable, then enable, then recover: the failed test event goes again.
        patched = api.client.patch(
            f"/api/v1/webhook-endpoints/{endpoint['id']}",
            data=json.dumps({"enabled": False}),
            headers=api.headers({"Content-Type": "application/json"}),
        )
        assert patched.get_json()["data"]["enabled"] is False
        assert error_code(api.post(f"/webhook-endpoints/{endpoint['id']}/test", {})) == (
            "invalid_state"
        )
        api.client.patch(
            f"/api/v1/webhook-endpoints/{endpoint['id']}",
            data=json.dumps({"enabled": True}),
            headers=api.headers({"Content-Type": "application/json"}),
        )
        since = (utcnow() - timedelta(hours=1)).isoformat()
        recovered = api.post(f"/webhook-endpoints/{endpoint['id']}/recover", {"since": since})
        assert recovered.get_json()["data"] == {"deliveries": 1}
        assert receiver.wait_for(5)[4].webhook_id == test_id
    finally:
        receiver.close()


def test_bad_endpoints_are_refused_with_the_field_named(api: Api) -> None:
    response = api.post("/webhook-endpoints", {"url": "http://10.0.0.7/hooks"})
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.get_json()["error"]["details"][0]["field"] == "url"
    response = api.post(
        "/webhook-endpoints", {"url": "https://hooks.example.com/", "event_types": ["nope"]}
    )
    assert response.status_code == 400
    assert "nope" in response.get_json()["error"]["message"]
    assert api.get("/webhook-endpoints").get_json()["data"] == []
    assert api.get("/webhook-endpoints/we_missing").status_code == 404


def test_read_keys_cannot_read_secrets_or_fulfil(api_app: Flask, api: Api) -> None:
    reader = Api(api_app, new_key(api_app, "read"))
    order_id = pay(api)
    assert reader.post(f"/orders/{order_id}/fulfillment", {}).status_code == 403
    # An unpaid order cannot be fulfilled.
    pending = api.post("/checkout-sessions", checkout_body()).get_json()["data"]["order"]["id"]
    refused = api.post(f"/orders/{pending}/fulfillment", {})
    assert refused.status_code == 409
    assert "Only a paid order" in refused.get_json()["error"]["message"]
    canceled = api.post(f"/orders/{pending}/fulfillment", {"status": "canceled"})
    assert canceled.get_json()["data"]["fulfillment_status"] == "canceled"
