"""A shop's back office drives a purchase through the API with the sandbox gateway:
checkout, payment, status, refunds, capture, timeline, lists with filters and pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import quote

from flask import Flask

from app.models.base import utcnow
from tests.integration.api.conftest import (
    Api,
    checkout_body,
    complete_at_sandbox,
    deliver_webhooks,
    error_code,
    new_key,
)


def test_checkout_pay_refund_through_the_api(api: Api) -> None:
    response = api.post(
        "/checkout-sessions", checkout_body(items=[{"sku": "tee-usd", "quantity": 2}])
    )
    created = response.get_json()
    assert created["success"] is True
    data = created["data"]
    assert response.headers["Location"] == f"/api/v1/payments/{data['payment']['id']}"
    base = api.app.config["PUBLIC_BASE_URL"]
    assert data["checkout_url"] == f"{base}/sandbox/pay/{data['payment']['gateway_reference']}"
    assert data["order"]["status"] == "pending" and data["order"]["total_amount"] == 5000
    payment_id = data["payment"]["id"]
    assert data["order"]["payment_ids"] == [payment_id]

    # The customer pays at the sandbox; its webhooks reach us.
    complete_at_sandbox(api.app, data["payment"]["gateway_reference"])
    payment = api.get(f"/payments/{payment_id}").get_json()["data"]
    assert payment["status"] == "succeeded"
    assert payment["gateway_payment_id"].startswith("sbx_pay_")
    assert payment["payment_method"] == {"brand": "visa", "last4": "4242"}
    assert api.get(f"/orders/{data['order']['id']}").get_json()["data"]["status"] == "paid"

    partial = api.post(
        f"/payments/{payment_id}/refunds", {"amount": 1000, "reason": "one shirt back"}
    )
    assert partial.status_code == 201
    refund = partial.get_json()["data"]
    assert partial.headers["Location"] == f"/api/v1/refunds/{refund['id']}"
    assert refund["status"] == "pending" and refund["amount"] == 1000
    deliver_webhooks(api.app)
    refund = api.get(f"/refunds/{refund['id']}").get_json()["data"]
    assert refund["status"] == "succeeded" and refund["gateway_refund_id"].startswith("sbx_re_")
    payment = api.get(f"/payments/{payment_id}").get_json()["data"]
    assert payment["status"] == "partially_refunded" and payment["amount_refunded"] == 1000

    rest = api.post(f"/payments/{payment_id}/refunds", {}).get_json()["data"]
    assert rest["amount"] == 4000
    deliver_webhooks(api.app)
    payment = api.get(f"/payments/{payment_id}?refresh=true").get_json()["data"]
    assert payment["status"] == "refunded" and payment["amount_refunded"] == 5000
    assert api.get(f"/orders/{data['order']['id']}").get_json()["data"]["status"] == "refunded"

    events = api.get(f"/payments/{payment_id}/events").get_json()
    assert events["next_cursor"] is None
    timeline = events["data"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    audit_types = [e["type"] for e in timeline if e["source"] == "audit"]
    assert audit_types[0] == "payment.created"
    assert "refund.requested" in audit_types
    gateway_types = [e["type"] for e in timeline if e["source"] == "gateway"]
    assert gateway_types[:2] == ["payment.processing", "payment.succeeded"]
    assert gateway_types.count("refund.succeeded") == 2
    actors = {e["actor"] for e in timeline}
    assert f"api_key:{api.key[:18]}" in actors  # type: ignore[index]


def test_confirm_is_verified_with_the_gateway(api: Api) -> None:
    data = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    payment_id = data["payment"]["id"]
    # The browser claims success, but the sandbox confirms by webhook only: nothing changes.
    claimed = api.post(
        f"/payments/{payment_id}/confirm", {"session_id": data["payment"]["gateway_reference"]}
    )
    assert claimed.status_code == 200
    assert claimed.get_json()["data"]["status"] == "incomplete"
    forged = api.post(
        f"/payments/{payment_id}/confirm",
        {"razorpay_payment_id": "pay_fake", "razorpay_signature": "deadbeef"},
    )
    assert forged.get_json()["data"]["status"] == "incomplete"
    complete_at_sandbox(api.app, data["payment"]["gateway_reference"])
    confirmed = api.post(
        f"/payments/{payment_id}/confirm", {"session_id": data["payment"]["gateway_reference"]}
    )
    assert confirmed.get_json()["data"]["status"] == "succeeded"
    unknown_field = api.post(f"/payments/{payment_id}/confirm", {"paid": True})
    assert unknown_field.status_code == 400 and error_code(unknown_field) == "validation_error"


def test_refresh_syncs_a_missed_webhook(api: Api) -> None:
    data = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    payment_id = data["payment"]["id"]
    processor = api.app.extensions["kassa_gateways"]["sandbox"].processor
    with api.app.app_context():
        processor.complete(data["payment"]["gateway_reference"], "decline")
    processor.undelivered.clear()  # the webhooks never arrive
    assert api.get(f"/payments/{payment_id}").get_json()["data"]["status"] == "incomplete"
    synced = api.get(f"/payments/{payment_id}?refresh=true").get_json()["data"]
    assert synced["status"] == "failed"
    assert synced["failure_code"] == "card_declined"
    assert synced["failure_message"] == "Your card was declined."


def test_manual_capture(make_app: Callable[..., Flask]) -> None:
    app = make_app(CAPTURE_METHOD="manual")
    api = Api(app, new_key(app))
    data = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    payment_id = data["payment"]["id"]
    assert data["payment"]["capture_method"] == "manual"
    complete_at_sandbox(app, data["payment"]["gateway_reference"])
    assert api.get(f"/payments/{payment_id}").get_json()["data"]["status"] == "authorized"
    captured = api.post(f"/payments/{payment_id}/capture")  # no body at all
    assert captured.status_code == 200
    assert captured.get_json()["data"]["status"] == "succeeded"
    again = api.post(f"/payments/{payment_id}/capture", {})
    assert again.status_code == 409 and error_code(again) == "invalid_state"


def test_lists_filter_and_paginate(api: Api, read_key: str) -> None:
    reader = Api(api.app, read_key)
    made = []
    for i, (sku, email) in enumerate(
        [
            ("tee-usd", "a@example.com"),
            ("mug-eur", "b@example.com"),
            ("tee-usd", "B@example.com"),
            ("notebook-inr", "c@example.com"),
            ("tee-usd", "a@example.com"),
        ]
    ):
        data = api.post(
            "/checkout-sessions",
            checkout_body(
                items=[{"sku": sku, "quantity": 1}], customer={"email": email, "name": f"Buyer {i}"}
            ),
        ).get_json()["data"]
        made.append(data)
    complete_at_sandbox(api.app, made[0]["payment"]["gateway_reference"])

    page1 = reader.get("/payments?limit=2").get_json()
    assert [p["id"] for p in page1["data"]] == [made[4]["payment"]["id"], made[3]["payment"]["id"]]
    page2 = reader.get(f"/payments?limit=2&cursor={page1['next_cursor']}").get_json()
    page3 = reader.get(f"/payments?limit=2&cursor={page2['next_cursor']}").get_json()
    assert [p["id"] for p in page2["data"] + page3["data"]] == [
        made[2]["payment"]["id"],
        made[1]["payment"]["id"],
        made[0]["payment"]["id"],
    ]
    assert page3["next_cursor"] is None

    def ids(path: str) -> list[str]:
        body = reader.get(path).get_json()
        assert body["success"] is True, body
        return [item["id"] for item in body["data"]]

    assert ids("/payments?currency=usd") == [made[i]["payment"]["id"] for i in (4, 2, 0)]
    assert ids("/payments?status=succeeded") == [made[0]["payment"]["id"]]
    assert ids("/payments?email=b%40example.com") == [made[i]["payment"]["id"] for i in (2, 1)]
    assert ids("/payments?gateway=sandbox&currency=INR") == [made[3]["payment"]["id"]]
    assert ids("/payments?gateway=stripe") == []
    assert ids("/orders?status=paid") == [made[0]["order"]["id"]]
    assert ids("/orders?status=pending&email=a@example.com") == [made[4]["order"]["id"]]
    future = quote((utcnow() + timedelta(hours=1)).isoformat())
    past = quote((utcnow() - timedelta(hours=1)).isoformat())
    assert ids(f"/orders?created_after={future}") == []
    assert len(ids(f"/orders?created_after={past}&created_before={future}")) == 5
    assert ids(f"/payments?created_before={past}") == []
