"""A PayPal wallet in the dashboard (issue 18): a customer buys on the shop's page with
"save" ticked and pays with PayPal; the merchant sees the wallet on the customer's page,
charges it (confirmation first; PayPal is asked once, by vault id) and removes it (the
payment token is deleted at PayPal). Over real HTTP against the fake PayPal API."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fakes.paypal_api import FakePayPal
from tests.integration.dashboard.conftest import CSRF_FIELD, csrf_token
from tests.integration.paypal_app import paypal_config, route_certificates

KEY = re.compile(r'id="key" name="key" type="hidden" value="([^"]+)"')


@pytest.fixture
def fake() -> Iterator[FakePayPal]:
    with FakePayPal().running() as api:
        api.send_webhooks = False
        yield api


@pytest.fixture
def dash_app(make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path) -> Flask:
    app = make_app(**paypal_config(fake, tmp_path / "paypal-root.pem"))
    route_certificates(app, fake)
    return app


def buy_with_paypal_and_save(app: Flask, fake: FakePayPal) -> None:
    shop = app.test_client()
    page = shop.get("/products/tee-usd").get_data(as_text=True)
    token = CSRF_FIELD.search(page)
    assert token
    response = shop.post(
        "/products/tee-usd",
        data={
            "csrf_token": token.group(1),
            "email": "ann@example.com",
            "name": "Ann Lee",
            "quantity": "1",
            "gateway": "paypal",
            "save_payment_method": "y",
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    [order_id] = fake.orders
    assert fake.orders[order_id]["_vault"] is not None  # PayPal was asked to vault it
    fake.approve(order_id)
    [create] = fake.calls("POST", "/v2/checkout/orders")
    return_path = create.json["payment_source"]["paypal"]["experience_context"]["return_url"]
    back = shop.get(
        return_path.removeprefix("http://127.0.0.1:5000") + f"?token={order_id}&PayerID=P"
    )
    assert back.status_code == 200


def test_the_merchant_charges_and_removes_a_saved_paypal_wallet(
    dash_app: Flask, fake: FakePayPal, signed_in: Callable[[str], FlaskClient]
) -> None:
    buy_with_paypal_and_save(dash_app, fake)
    [token_id] = fake.payment_tokens
    client = signed_in("owner")
    listing = client.get("/dashboard/customers").get_data(as_text=True)
    found = re.search(r'href="(/dashboard/customers/cus_[A-Za-z0-9]+)"', listing)
    assert found
    path = found.group(1)
    page = client.get(path).get_data(as_text=True)
    assert "PayPal (buyer@example.com)" in page and "••••" not in page
    charge_link = re.search(r'href="(/dashboard/customers/[^"]+/charge)"', page)
    assert charge_link
    key = KEY.search(client.get(charge_link.group(1)).get_data(as_text=True))
    assert key
    fields = {
        "csrf_token": csrf_token(client, charge_link.group(1)),
        "key": key.group(1),
        "amount": "19.99",
        "currency": "USD",
        "description": "Refill",
    }
    review = client.post(charge_link.group(1), data=fields).get_data(as_text=True)
    assert "Charge <strong>$19.99</strong> to PayPal (buyer@example.com)" in review
    done = client.post(charge_link.group(1), data={**fields, "confirmed": "yes"})
    assert done.status_code == 303
    again = client.post(charge_link.group(1), data={**fields, "confirmed": "yes"})
    assert again.headers["Location"] == done.headers["Location"]  # a double submit
    vault_orders = [o for o in fake.orders.values() if o.get("_vault_id") == token_id]
    assert len(vault_orders) == 1
    assert vault_orders[0]["purchase_units"][0]["amount"] == {
        "currency_code": "USD",
        "value": "19.99",
    }
    assert "Succeeded" in client.get(done.headers["Location"]).get_data(as_text=True)

    page = client.get(path).get_data(as_text=True)
    remove = re.search(r'action="(/dashboard/customers/[^"]+/remove)"', page)
    token = CSRF_FIELD.search(page)
    assert remove and token
    assert client.post(remove.group(1), data={"csrf_token": token.group(1)}).status_code == 303
    assert [c.path for c in fake.calls("DELETE")] == [f"/v3/vault/payment-tokens/{token_id}"]
    assert fake.payment_tokens == {}
    assert "No saved methods" in client.get(path).get_data(as_text=True)
