"""Idempotency-Key: replays are byte-identical, reuse with another body is refused, a
request in flight blocks its duplicates, failures that should be retried store nothing,
and on PostgreSQL fifty concurrent duplicates make one order and one gateway call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import IdempotencyKey, Order, Payment, Refund, SandboxSession
from app.models.base import utcnow
from tests.fakes.gateway import FakeGateway
from tests.integration.api.conftest import (
    Api,
    checkout_body,
    complete_at_sandbox,
    error_code,
    new_key,
)


def count(app: Flask, column: Any) -> int:
    with app.app_context():
        return int(db.session.execute(select(func.count(column))).scalar_one())


def test_same_key_same_body_replays_the_first_response_byte_for_byte(api: Api) -> None:
    key = {"Idempotency-Key": "order-1001"}
    first = api.post("/checkout-sessions", checkout_body(), headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # The same JSON with its keys in another order and other spacing is the same request.
    same = json.dumps(
        {
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "items": [{"quantity": 1, "sku": "tee-usd"}],
        },
        indent=2,
    )
    for body in (checkout_body(), None):
        again = api.post(
            "/checkout-sessions",
            body,
            headers=key,
            **({} if body else {"data": same, "content_type": "application/json"}),
        )
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.data == first.data
        assert again.mimetype == "application/json"
    assert count(api.app, Order.id) == 1
    assert count(api.app, SandboxSession.id) == 1


def test_same_key_with_another_body_is_refused(api: Api) -> None:
    key = {"Idempotency-Key": "order-1002"}
    assert api.post("/checkout-sessions", checkout_body(), headers=key).status_code == 201
    other = api.post(
        "/checkout-sessions", checkout_body(items=[{"sku": "tee-usd", "quantity": 2}]), headers=key
    )
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    # Another endpoint with the same key is another request too.
    refund = api.post("/payments/pay_x/refunds", {}, headers=key)
    assert refund.status_code == 422 and error_code(refund) == "idempotency_key_reused"
    assert count(api.app, Order.id) == 1


def test_errors_are_replayed_too(api: Api) -> None:
    key = {"Idempotency-Key": "oos-1"}
    body = checkout_body(items=[{"sku": "print-usd", "quantity": 6}])
    first = api.post("/checkout-sessions", body, headers=key)
    assert first.status_code == 409 and error_code(first) == "out_of_stock"
    again = api.post("/checkout-sessions", body, headers=key)
    assert again.data == first.data and again.headers["Idempotent-Replayed"] == "true"


def test_a_failed_validation_stores_nothing(api: Api) -> None:
    key = {"Idempotency-Key": "typo-1"}
    bad = api.post(
        "/checkout-sessions", checkout_body(customer={"email": "x@example.com"}), headers=key
    )
    assert bad.status_code == 400
    # Core-level validation (an SKU twice) stores nothing either.
    twice = [{"sku": "tee-usd", "quantity": 1}, {"sku": "tee-usd", "quantity": 1}]
    assert (
        api.post("/checkout-sessions", checkout_body(items=twice), headers=key).status_code == 400
    )
    assert count(api.app, IdempotencyKey.id) == 0
    fixed = api.post("/checkout-sessions", checkout_body(), headers=key)
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers


def test_invalid_keys_are_refused(api: Api) -> None:
    for key in ("x" * 256, "tab\there", "ключ"):
        response = api.post("/checkout-sessions", checkout_body(), headers={"Idempotency-Key": key})
        assert response.status_code == 400 and error_code(response) == "validation_error"
    assert count(api.app, Order.id) == 0
    assert (
        api.post(
            "/checkout-sessions", checkout_body(), headers={"Idempotency-Key": "k" * 255}
        ).status_code
        == 201
    )


def test_keys_are_scoped_per_api_key_and_per_client(api_app: Flask) -> None:
    key = {"Idempotency-Key": "shared-name"}
    one, two = Api(api_app, new_key(api_app)), Api(api_app, new_key(api_app))
    a = one.post("/checkout-sessions", checkout_body(), headers=key)
    b = two.post("/checkout-sessions", checkout_body(), headers=key)
    assert a.status_code == b.status_code == 201
    assert a.get_json()["data"]["order"]["id"] != b.get_json()["data"]["order"]["id"]
    client = api_app.test_client()
    c = client.post(
        "/api/v1/checkout-sessions",
        json=checkout_body(),
        headers=key,
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    d = client.post(
        "/api/v1/checkout-sessions",
        json=checkout_body(),
        headers=key,
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    e = client.post(
        "/api/v1/checkout-sessions",
        json=checkout_body(),
        headers=key,
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert c.status_code == d.status_code == e.status_code == 201
    assert e.data == c.data and e.headers["Idempotent-Replayed"] == "true"
    assert count(api_app, Order.id) == 4


def test_a_duplicate_while_the_first_is_in_flight_gets_409(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.hold = threading.Event()
    key = {"Idempotency-Key": "slow-1"}
    results: dict[str, Any] = {}

    def first() -> None:
        results["first"] = api.app.test_client().post(
            "/api/v1/checkout-sessions",
            json=checkout_body(gateway="fake"),
            headers={**api.headers(), **key},
        )

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert fake_gateway.entered.wait(10)
        during = api.post("/checkout-sessions", checkout_body(gateway="fake"), headers=key)
        assert during.status_code == 409
        assert error_code(during) == "idempotency_key_in_progress"
        assert during.headers["Retry-After"] == "1"
    finally:
        fake_gateway.hold.set()
        thread.join(10)
    assert results["first"].status_code == 201
    after = api.post("/checkout-sessions", checkout_body(gateway="fake"), headers=key)
    assert after.data == results["first"].data and after.headers["Idempotent-Replayed"] == "true"
    assert len(fake_gateway.calls) == 1


def test_a_gateway_outage_releases_the_key_for_a_retry(api: Api, fake_gateway: FakeGateway) -> None:
    fake_gateway.fail_with, fake_gateway.retryable = "gateway_unavailable", True
    key = {"Idempotency-Key": "outage-1"}
    down = api.post("/checkout-sessions", checkout_body(gateway="fake"), headers=key)
    assert down.status_code == 503
    assert count(api.app, IdempotencyKey.id) == 0
    fake_gateway.fail_with = None
    up = api.post("/checkout-sessions", checkout_body(gateway="fake"), headers=key)
    assert up.status_code == 201 and "Idempotent-Replayed" not in up.headers


def test_keys_expire(api: Api) -> None:
    key = {"Idempotency-Key": "old-1"}
    first = api.post("/checkout-sessions", checkout_body(), headers=key)
    with api.app.app_context():
        db.session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(1)))
        db.session.commit()
    second = api.post("/checkout-sessions", checkout_body(), headers=key)
    assert second.status_code == 201 and "Idempotent-Replayed" not in second.headers
    assert second.get_json()["data"]["order"]["id"] != first.get_json()["data"]["order"]["id"]
    with api.app.app_context():
        row = db.session.execute(select(IdempotencyKey)).scalar_one()
        assert row.expires_at > utcnow() + timedelta(hours=23)


def test_expired_keys_are_purged(api: Api) -> None:
    api.post("/checkout-sessions", checkout_body(), headers={"Idempotency-Key": "old-2"})
    api.post("/checkout-sessions", checkout_body(), headers={"Idempotency-Key": "new-2"})
    with api.app.app_context():
        db.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old-2")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    result = api.app.test_cli_runner().invoke(args=["purge-idempotency-keys"])
    assert "Deleted 1 expired" in result.output
    with api.app.app_context():
        assert db.session.execute(select(IdempotencyKey.key)).scalars().all() == ["new-2"]


def test_refunds_with_a_key_happen_once(api: Api) -> None:
    created = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    complete_at_sandbox(api.app, created["payment"]["gateway_reference"])
    payment_id = created["payment"]["id"]
    key = {"Idempotency-Key": "refund-7"}
    first = api.post(f"/payments/{payment_id}/refunds", {"amount": 500}, headers=key)
    again = api.post(f"/payments/{payment_id}/refunds", {"amount": 500}, headers=key)
    assert first.status_code == 201 and again.data == first.data
    assert count(api.app, Refund.id) == 1


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_fifty_concurrent_duplicates_make_one_order_and_one_gateway_call(
    serve: Callable[..., Any], pg_url: str
) -> None:
    server = serve(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 20, "max_overflow": 40},
    )
    token = new_key(server.app)
    headers = {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": "burst-1",
        "Content-Type": "application/json",
    }
    body = json.dumps(checkout_body())
    barrier = threading.Barrier(50)

    def send(_: int) -> requests.Response:
        with requests.Session() as http:
            barrier.wait(10)
            return http.post(
                f"{server.url}/api/v1/checkout-sessions", data=body, headers=headers, timeout=30
            )

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(send, range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    originals = [
        r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(originals) == 1
    for r in responses:
        if r.status_code == 201:
            assert r.content == originals[0].content
        else:
            assert r.json()["error"]["code"] == "idempotency_key_in_progress"
    # Everyone who retries now gets the stored answer.
    with requests.Session() as http:
        late = http.post(
            f"{server.url}/api/v1/checkout-sessions", data=body, headers=headers, timeout=30
        )
    assert late.content == originals[0].content and late.headers["Idempotent-Replayed"] == "true"
    assert count(server.app, Order.id) == 1
    assert count(server.app, Payment.id) == 1
    assert count(server.app, SandboxSession.id) == 1
    assert count(server.app, IdempotencyKey.id) == 1
