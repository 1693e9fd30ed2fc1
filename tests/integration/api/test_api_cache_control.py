"""Every /api/v1 answer carries customers' data or may: `Cache-Control: no-store` on all of
them, successes and errors alike, so no shared or browser cache keeps an email or a payment."""

from __future__ import annotations

from tests.integration.api.conftest import Api, checkout_body


def test_api_answers_are_never_stored(api: Api) -> None:
    created = api.post("/checkout-sessions", checkout_body())
    assert created.status_code == 201
    order_id = created.get_json()["data"]["order"]["id"]
    payment_id = created.get_json()["data"]["payment"]["id"]
    answers = {
        "create": created,
        "list orders": api.get("/orders?email=ada@example.com"),
        "one order": api.get(f"/orders/{order_id}"),
        "list payments": api.get("/payments"),
        "one payment": api.get(f"/payments/{payment_id}"),
        "not found": api.get("/orders/ord_doesnotexist"),
        "bad query": api.get("/orders?limit=0"),
        "no key": Api(api.app).get("/orders"),
    }
    assert answers["list orders"].get_json()["data"][0]["customer"]["email"] == "ada@example.com"
    for name, response in answers.items():
        assert response.headers.get("Cache-Control") == "no-store", name
