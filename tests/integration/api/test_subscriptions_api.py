"""/api/v1/plans and /api/v1/subscriptions: create, get, list, cancel, resume; bad input
is a 4xx that changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Plan, Subscription
from tests.integration.api.conftest import Api, deliver_webhooks, error_code


def idem() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def plan_body(**overrides: Any) -> dict[str, Any]:
    return {
        "sku": "pro",
        "name": "Pro",
        "amount": 1500,
        "currency": "eur",
        "interval": "month",
        **overrides,
    }


def count(app: Flask, model: Any) -> int:
    with app.app_context():
        return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def test_plans_subscriptions_create_get_list_cancel_resume(api: Api, api_app: Flask) -> None:
    created = api.post("/plans", plan_body(), headers=idem())
    assert created.status_code == 201, created.get_json()
    plan = created.get_json()["data"]
    assert plan["currency"] == "EUR" and plan["interval"] == "month"
    listed = api.get("/plans").get_json()["data"]
    assert [p["id"] for p in listed] == [plan["id"]]

    body = {"plan_id": plan["id"], "customer": {"email": "ada@example.com", "name": "Ada"}}
    started = api.post("/subscriptions", {**body, "gateway": "sandbox"}, headers=idem())
    assert started.status_code == 201, started.get_json()
    sub = started.get_json()["data"]
    assert sub["status"] == "incomplete" and "/sandbox/subscribe/" in sub["checkout_url"]
    assert sub["entitlement"]["entitled"] is False

    with api_app.app_context():
        gateway_id = db.session.execute(select(Subscription.gateway_subscription_id)).scalar_one()
        api_app.extensions["kassa_gateways"]["sandbox"].processor.subscribe(gateway_id, "succeed")
    deliver_webhooks(api_app)
    got = api.get(f"/subscriptions/{sub['id']}").get_json()["data"]
    assert got["status"] == "active" and got["entitlement"]["entitled"] is True
    assert len(got["payment_ids"]) == 1 and got["checkout_url"] is None

    other = api.post("/plans", plan_body(sku="max", amount=3000), headers=idem()).get_json()
    changed = api.post(
        f"/subscriptions/{sub['id']}/change-plan", {"plan_id": other["data"]["id"]}, headers=idem()
    )
    assert (
        changed.status_code == 200 and changed.get_json()["data"]["plan_id"] == other["data"]["id"]
    )
    same = api.post(
        f"/subscriptions/{sub['id']}/change-plan", {"plan_id": other["data"]["id"]}, headers=idem()
    )
    assert same.status_code == 409

    canceled = api.post(f"/subscriptions/{sub['id']}/cancel", {}, headers=idem())
    assert canceled.status_code == 200, canceled.get_json()
    assert canceled.get_json()["data"]["cancel_at_period_end"] is True
    assert canceled.get_json()["data"]["entitlement"]["renews"] is False
    again = api.post(f"/subscriptions/{sub['id']}/cancel", {}, headers=idem())
    assert again.status_code == 409
    resumed = api.post(f"/subscriptions/{sub['id']}/resume", {}, headers=idem())
    assert resumed.get_json()["data"]["cancel_at_period_end"] is False
    now = api.post(f"/subscriptions/{sub['id']}/cancel", {"at_period_end": False}, headers=idem())
    assert now.get_json()["data"]["status"] == "canceled"

    assert [x["id"] for x in api.get("/subscriptions?status=canceled").get_json()["data"]] == [
        sub["id"]
    ]
    assert api.get("/subscriptions?status=active").get_json()["data"] == []
    assert api.get("/subscriptions?status=nope").status_code == 400


def test_bad_input_is_refused_and_changes_nothing(api: Api, api_app: Flask) -> None:
    for bad in (
        plan_body(amount=0),
        plan_body(interval="fortnight"),
        plan_body(currency="XQZ"),
        plan_body(extra=1),
    ):
        answer = api.post("/plans", bad, headers=idem())
        assert 400 <= answer.status_code < 500, bad
        assert error_code(answer)
    assert count(api_app, Plan) == 0
    missing = api.post(
        "/subscriptions",
        {"plan_id": "plan_nope", "customer": {"email": "a@example.com", "name": "A"}},
        headers=idem(),
    )
    assert missing.status_code == 404
    assert api.get("/subscriptions/sub_nope").status_code == 404
    assert api.post("/subscriptions/sub_nope/resume", {}, headers=idem()).status_code == 404
    assert count(api_app, Subscription) == 0


def test_reading_needs_a_key(public_api: Api) -> None:
    assert public_api.get("/subscriptions").status_code == 401
    assert public_api.get("/plans").status_code == 200
