"""Payment links through the API and the customer's page: single use, reusable, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.integration.api.conftest import Api, deliver_webhooks, error_code

CUSTOMER = {"email": "payer@example.com", "name": "Pat Payer", "gateway": "sandbox"}


def _pay(api: Api, url: str, email: str = "payer@example.com") -> int:
    path = url.removeprefix("http://127.0.0.1:5000")
    return api.client.post(path, data={**CUSTOMER, "email": email}).status_code


def test_a_single_use_custom_amount_link_is_paid_once(api: Api) -> None:
    created = api.post(
        "/payment-links",
        {"description": "Deposit for order 1042", "amount": 5000, "currency": "eur"},
        headers={"Idempotency-Key": "link-1"},
    )
    assert created.status_code == 201, created.get_json()
    link = created.get_json()["data"]
    assert link["amount"] == 5000 and link["currency"] == "EUR" and link["sku"] is None
    assert link["usable"] is True and link["url"].endswith(f"/pay/{link['id']}")
    page = api.client.get(f"/pay/{link['id']}").get_data(as_text=True)
    assert "Deposit for order 1042" in page and "€50.00" in page and "Pay €50.00" in page
    # The custom amount is nobody's catalog item.
    skus = [p["sku"] for p in api.get("/products").get_json()["data"]]
    assert not any(s.startswith("link-") for s in skus)

    assert _pay(api, link["url"]) == 303
    again = api.client.get(f"/pay/{link['id']}")
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert _pay(api, link["url"], "second@example.com") == 422
    fetched = api.get(f"/payment-links/{link['id']}").get_json()["data"]
    assert fetched["usable"] is False and len(fetched["order_ids"]) == 1
    order = api.get(f"/orders/{fetched['order_ids'][0]}").get_json()["data"]
    assert order["total_amount"] == 5000 and order["items"][0]["name"] == "Deposit for order 1042"
    deliver_webhooks(api.app)


def test_a_reusable_catalog_link_and_an_expired_one(api: Api) -> None:
    reusable = api.post(
        "/payment-links",
        {"description": "Two shirts", "sku": "tee-usd", "quantity": 2, "reusable": True},
        headers={"Idempotency-Key": "link-2"},
    ).get_json()["data"]
    assert reusable["amount"] == 5000 and reusable["sku"] == "tee-usd"
    assert _pay(api, reusable["url"]) == 303
    assert _pay(api, reusable["url"], "other@example.com") == 303
    listed = api.get("/payment-links").get_json()["data"]
    assert len(next(x for x in listed if x["id"] == reusable["id"])["order_ids"]) == 2

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = api.post(
        "/payment-links",
        {"description": "Late", "amount": 100, "currency": "USD", "expires_at": past},
        headers={"Idempotency-Key": "link-3"},
    )
    assert refused.status_code == 400 and error_code(refused) == "validation_error"
    bad = api.post(
        "/payment-links",
        {"description": "Both", "amount": 100, "currency": "USD", "sku": "tee-usd"},
        headers={"Idempotency-Key": "link-4"},
    )
    assert bad.status_code == 400
    unknown = api.post(
        "/payment-links", {"description": "?", "sku": "nope"}, headers={"Idempotency-Key": "l5"}
    )
    assert unknown.status_code == 404
