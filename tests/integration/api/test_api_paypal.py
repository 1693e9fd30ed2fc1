"""The API in front of PayPal (the fake PayPal API over real HTTP): `"gateway": "paypal"`
opens an order, and a confirm with PayPal's order id is verified (and captured) at PayPal
before anything changes; another attempt's order id changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.fakes.paypal_api import FakePayPal
from tests.integration.api.conftest import Api, checkout_body, new_key
from tests.integration.paypal_app import add_products, paypal_config


@pytest.fixture
def fake() -> Iterator[FakePayPal]:
    with FakePayPal().running() as api:
        api.send_webhooks = False
        yield api


@pytest.fixture
def pp_api(make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path) -> Api:
    app = make_app(**paypal_config(fake, tmp_path / "root.pem"))
    with app.app_context():
        add_products()
    return Api(app, new_key(app))


def usd_checkout(api: Api) -> dict:  # type: ignore[type-arg]
    response = api.post(
        "/checkout-sessions",
        checkout_body(items=[{"sku": "mug-usd", "quantity": 2}], gateway="paypal"),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]  # type: ignore[no-any-return]


def test_a_paypal_checkout_and_confirm_capture_at_paypal(pp_api: Api, fake: FakePayPal) -> None:
    data = usd_checkout(pp_api)
    payment = data["payment"]
    assert payment["gateway"] == "paypal"
    order_id = payment["gateway_reference"]
    assert payment["checkout_url"] == f"{fake.url}/checkoutnow?token={order_id}"
    fake.approve(order_id)
    confirmed = pp_api.post(f"/payments/{payment['id']}/confirm", {"paypal_order_id": order_id})
    assert confirmed.status_code == 200, confirmed.get_json()
    result = confirmed.get_json()["data"]
    assert result["status"] == "succeeded"
    assert result["gateway_payment_id"] in fake.captures
    assert (result["amount"], result["currency"]) == (5000, "USD")
    assert result["payment_method_label"] == "PayPal"
    (capture,) = fake.calls("POST", f"/v2/checkout/orders/{order_id}/capture")
    assert capture.request_id == f"kassa-capture-{payment['id']}"
    order = pp_api.get(f"/orders/{data['order']['id']}").get_json()["data"]
    assert order["status"] == "paid"


def test_a_confirm_naming_another_order_changes_nothing(pp_api: Api, fake: FakePayPal) -> None:
    victim, other = usd_checkout(pp_api), usd_checkout(pp_api)
    fake.approve(other["payment"]["gateway_reference"])
    response = pp_api.post(
        f"/payments/{victim['payment']['id']}/confirm",
        {"paypal_order_id": other["payment"]["gateway_reference"]},
    )
    assert response.status_code == 200
    assert response.get_json()["data"]["status"] == "incomplete"  # not paid, nothing changed
    assert not fake.captures


def test_a_malformed_order_id_is_a_validation_error(pp_api: Api) -> None:
    data = usd_checkout(pp_api)
    response = pp_api.post(
        f"/payments/{data['payment']['id']}/confirm", {"paypal_order_id": "../../v1/oauth2"}
    )
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["details"][0]["field"].endswith("paypal_order_id")
