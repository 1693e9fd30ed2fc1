"""Saved methods on PayPal (issue 18), over real HTTP against the fake PayPal API: the
checkout's order asks PayPal to vault the wallet on success (Orders v2
`payment_source.paypal.attributes.vault`), the vault id PayPal answers after the capture (or
in VAULT.PAYMENT-TOKEN.CREATED) is kept as the saved method's token, a later charge is an
order with `payment_source.paypal.vault_id` and the attempt's PayPal-Request-Id, and removing
the method deletes the payment token (Payment Method Tokens v3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select, text

from app.extensions import db
from app.gateways.base import ChargeRequest
from app.models import GatewayCustomer, Order, Payment, SavedPaymentMethod
from tests.fakes.paypal_api import FakePayPal, Recorded
from tests.fakes.paypal_certs import SigningBundle, make_bundle
from tests.integration.api.conftest import Api, checkout_body, error_code, new_key
from tests.integration.paypal_app import paypal_config, route_certificates

BASE = "http://127.0.0.1:5000"
VAULT = {
    "store_in_vault": "ON_SUCCESS",
    "usage_type": "MERCHANT",
    "customer_type": "CONSUMER",
    "permit_multiple_payment_tokens": False,
}


@pytest.fixture(scope="module")
def bundle() -> SigningBundle:
    return make_bundle()


@pytest.fixture
def fake(bundle: SigningBundle) -> Iterator[FakePayPal]:
    with FakePayPal(bundle=bundle).running() as api:
        api.send_webhooks = False  # tests deliver the events they want, in their order
        yield api


@pytest.fixture
def app(make_app: Callable[..., Flask], fake: FakePayPal, tmp_path: Path) -> Flask:
    app = make_app(**paypal_config(fake, tmp_path / "paypal-root.pem"))
    route_certificates(app, fake)
    return app


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app, new_key(app))


def buy_and_save(api: Api, fake: FakePayPal) -> tuple[dict[str, Any], str]:
    """Buy with "save" ticked, approve at PayPal, come back (the return page captures)."""
    created = api.post(
        "/checkout-sessions", checkout_body(gateway="paypal", save_payment_method=True)
    )
    assert created.status_code == 201, created.get_json()
    payment = created.get_json()["data"]["payment"]
    order_id = payment["gateway_reference"]
    fake.approve(order_id)
    back = api.app.test_client().get(
        f"/checkout/return/{payment['id']}?token={order_id}&PayerID=FAKEPAYER01"
    )
    assert back.status_code == 200
    return payment, order_id


def customer_of(api: Api, payment: dict[str, Any]) -> dict[str, Any]:
    return dict(api.get(f"/customers/{payment['customer_id']}").get_json()["data"])


def charge(api: Api, method_id: str, key: str, **body: Any) -> Any:
    payload = {"payment_method_id": method_id, "amount": 1250, "currency": "USD", **body}
    return api.post("/payments/charge", payload, headers={"Idempotency-Key": key})


def row(app: Flask, public_id: str) -> Payment:
    return db.session.execute(select(Payment).where(Payment.public_id == public_id)).scalar_one()


def creates(fake: FakePayPal) -> list[Recorded]:
    """The create-order calls (not captures)."""
    return [c for c in fake.calls("POST") if c.path == "/v2/checkout/orders"]


def vault_orders(fake: FakePayPal) -> list[dict[str, Any]]:
    return [o for o in fake.orders.values() if o.get("_vault_id")]


def test_save_at_checkout_then_charge_later_by_vault_id(api: Api, fake: FakePayPal) -> None:
    payment, order_id = buy_and_save(api, fake)
    # The checkout's order asked PayPal to vault the wallet on success, nothing more.
    [create] = creates(fake)
    assert create.json["payment_source"]["paypal"] == {
        "experience_context": {
            "shipping_preference": "NO_SHIPPING",
            "user_action": "PAY_NOW",
            "return_url": f"{BASE}/checkout/return/{payment['id']}",
            "cancel_url": f"{BASE}/checkout/cancel/{payment['id']}",
            "brand_name": api.app.config["STORE_NAME"],
        },
        "email_address": "ada@example.com",
        "attributes": {"vault": VAULT},
    }
    # After the capture PayPal answered the vault id (VAULTED) and its customer id.
    vault = fake.orders[order_id]["payment_source"]["paypal"]["attributes"]["vault"]
    assert vault["status"] == "VAULTED"
    token_id, paypal_customer = vault["id"], vault["customer"]["id"]
    customer = customer_of(api, payment)
    [method] = customer["payment_methods"]
    assert (method["gateway"], method["wallet"], method["status"]) == ("paypal", "paypal", "active")
    assert (method["brand"], method["last4"], method["exp_month"]) == (None, None, None)
    with api.app.app_context():
        saved = db.session.execute(select(SavedPaymentMethod)).scalar_one()
        assert saved.gateway_token == token_id
        assert saved.account_email == "buyer@example.com"  # the PayPal payer's, not ours
        assert saved.label == "PayPal (buyer@example.com)"
        # Encrypted at rest like the token: the raw row holds neither.
        raw = db.session.execute(
            text("SELECT gateway_token, account_email FROM saved_payment_methods")
        ).one()
        assert token_id not in raw[0] and "buyer@example.com" not in raw[1]
        ids = db.session.execute(select(GatewayCustomer)).scalars().all()
        assert [(g.gateway, g.gateway_customer_id) for g in ids] == [("paypal", paypal_customer)]

    response = charge(api, method["id"], "pp-charge-1", description="Refill")
    assert response.status_code == 201, response.get_json()
    charged = response.get_json()["data"]
    assert charged["status"] == "succeeded"
    [vault_order] = vault_orders(fake)
    assert charged["gateway_reference"] == vault_order["id"]
    assert charged["gateway_payment_id"] in fake.captures
    with api.app.app_context():
        stored = row(api.app, charged["id"])
        key, kassa_order = stored.idempotency_key, stored.order.public_id
        assert stored.saved_method_id == saved.id
    [_, call] = creates(fake)
    assert call.json == {
        "intent": "CAPTURE",
        "purchase_units": [
            {
                "reference_id": charged["id"],
                "custom_id": charged["id"],
                "invoice_id": kassa_order,
                "description": "Refill",
                "amount": {"currency_code": "USD", "value": "12.50"},
            }
        ],
        "payment_source": {
            "paypal": {
                "vault_id": token_id,
                "experience_context": {
                    "shipping_preference": "NO_SHIPPING",
                    "user_action": "PAY_NOW",
                    "return_url": f"{BASE}/checkout/return/{charged['id']}",
                    "cancel_url": f"{BASE}/checkout/return/{charged['id']}",
                    "brand_name": api.app.config["STORE_NAME"],
                },
            }
        },
    }
    assert call.request_id == key and key.startswith("kassa-charge-")

    # The same Idempotency-Key again: the first payment, never a second PayPal order.
    again = charge(api, method["id"], "pp-charge-1", description="Refill")
    assert again.status_code == 201 and again.get_json()["data"]["id"] == charged["id"]
    assert len(vault_orders(fake)) == 1
    assert len(creates(fake)) == 2

    # The next checkout with "save" names PayPal's customer for this customer.
    second = api.post(
        "/checkout-sessions", checkout_body(gateway="paypal", save_payment_method=True)
    )
    assert second.status_code == 201
    latest = creates(fake)[-1]
    assert latest.json["payment_source"]["paypal"]["attributes"] == {
        "vault": VAULT,
        "customer": {"id": paypal_customer},
    }


def test_paypal_request_id_makes_a_repeated_charge_one_order(api: Api, fake: FakePayPal) -> None:
    buy_and_save(api, fake)
    [token_id] = fake.payment_tokens
    gateway = api.app.extensions["kassa_gateways"]["paypal"].inner
    request = ChargeRequest(
        payment_id="pay_retry",
        order_id="ord_retry",
        amount=1000,
        currency="USD",
        token=token_id,
        gateway_customer_id=None,
        description="Retry",
        idempotency_key="kassa-charge-retry",
        return_url=f"{BASE}/checkout/return/pay_retry",
    )
    first = gateway.charge_saved_method(request)
    second = gateway.charge_saved_method(request)  # a retry after a lost answer
    assert first.reference == second.reference
    assert len(vault_orders(fake)) == 1 and len(fake.captures) == 2  # checkout + this one
    calls = creates(fake)[-2:]
    assert [c.request_id for c in calls] == ["kassa-charge-retry", "kassa-charge-retry"]


def test_payer_action_required_waits_then_the_customers_link_settles_it(
    api: Api, fake: FakePayPal
) -> None:
    payment, _ = buy_and_save(api, fake)
    [method] = customer_of(api, payment)["payment_methods"]
    fake.next_vault_charge.append("PAYER_ACTION_REQUIRED")
    response = charge(api, method["id"], "pp-action-1")
    assert response.status_code == 201, response.get_json()
    charged = response.get_json()["data"]
    assert charged["status"] == "requires_action"
    assert re.search(r"/pay/action/[\w.-]+$", charged["action_url"])
    [order] = vault_orders(fake)
    assert order["status"] == "PAYER_ACTION_REQUIRED"
    assert not [c for c in fake.captures.values() if c["custom_id"] == charged["id"]]
    # The customer's Kassa link sends them on to PayPal's payer-action page...
    browser = api.app.test_client()
    path = charged["action_url"].removeprefix(api.app.config["PUBLIC_BASE_URL"])
    hop = browser.get(path)
    assert hop.status_code == 303
    assert hop.headers["Location"] == f"{fake.url}/checkoutnow?token={order['id']}"
    # ...where they approve; PayPal sends them back to Kassa's return page, which captures.
    approved = requests.post(
        f"{fake.url}/checkoutnow/approve",
        data={"token": order["id"]},
        allow_redirects=False,
        timeout=10,
    )
    assert approved.status_code == 302
    back = urlsplit(approved.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{BASE}/checkout/return/{charged['id']}"
    assert browser.get(f"{back.path}?{back.query}").status_code == 200
    settled = api.get(f"/payments/{charged['id']}").get_json()["data"]
    assert settled["status"] == "succeeded" and settled["action_url"] is None
    with api.app.app_context():
        assert row(api.app, charged["id"]).failure_code is None  # nothing failed on the way
    [capture_call] = fake.calls("POST", f"/v2/checkout/orders/{order['id']}/capture")
    assert capture_call.request_id == f"kassa-capture-{charged['id']}"
    # The link now says it is done instead of sending them to PayPal again.
    assert browser.get(path).status_code == 200


def test_a_decline_is_402_with_paypals_reason_and_changes_nothing_else(
    api: Api, fake: FakePayPal
) -> None:
    payment, _ = buy_and_save(api, fake)
    customer = customer_of(api, payment)
    [method] = customer["payment_methods"]
    captures = dict(fake.captures)
    fake.next_vault_charge.append("INSTRUMENT_DECLINED")
    response = charge(api, method["id"], "pp-decline-1")
    assert response.status_code == 402
    assert error_code(response) == "payment_failed"
    assert "declined by the processor or bank" in response.get_json()["error"]["message"]
    # No PayPal order was made, no money moved; the method and the customer are as they were.
    assert vault_orders(fake) == [] and fake.captures == captures
    assert customer_of(api, payment) == customer
    with api.app.app_context():
        failed = db.session.execute(
            select(Payment).where(Payment.saved_method_id.is_not(None))
        ).scalar_one()
        assert (failed.status, failed.failure_code) == ("failed", "payment_failed")
        assert failed.order.status == "failed"
    # The same key answers the same 402, and never asks PayPal again.
    calls = len(creates(fake))
    assert charge(api, method["id"], "pp-decline-1").status_code == 402
    assert len(creates(fake)) == calls


def test_removing_the_method_deletes_the_payment_token(api: Api, fake: FakePayPal) -> None:
    payment, _ = buy_and_save(api, fake)
    customer = customer_of(api, payment)
    [method] = customer["payment_methods"]
    [token_id] = fake.payment_tokens
    removed = api.client.delete(
        f"/api/v1/customers/{customer['id']}/payment-methods/{method['id']}",
        headers=api.headers(),
    )
    assert removed.status_code == 200 and removed.get_json()["data"]["status"] == "detached"
    [call] = fake.calls("DELETE", "/v3/vault/payment-tokens/")
    assert call.path == f"/v3/vault/payment-tokens/{token_id}"
    assert fake.payment_tokens == {}
    assert fake.events_of("VAULT.PAYMENT-TOKEN.DELETED")
    assert charge(api, method["id"], "after-removal").status_code == 409
    assert vault_orders(fake) == []


def test_the_customers_own_page_removes_a_paypal_wallet(api: Api, fake: FakePayPal) -> None:
    payment, _ = buy_and_save(api, fake)
    [method] = customer_of(api, payment)["payment_methods"]
    [token_id] = fake.payment_tokens
    with api.app.test_request_context():
        from app.payments import customers

        link = customers.methods_link(customers.get_customer(payment["customer_id"]))
    path = link.removeprefix(api.app.config["PUBLIC_BASE_URL"])
    browser = api.app.test_client()
    page = browser.get(path).get_data(as_text=True)
    assert "<strong>PayPal (buyer@example.com)</strong>" in page and "••••" not in page
    assert browser.post(f"{path}/{method['id']}/remove").status_code == 303
    assert [c.path for c in fake.calls("DELETE")] == [f"/v3/vault/payment-tokens/{token_id}"]
    assert customer_of(api, payment)["payment_methods"] == []


def test_a_wallet_vaulted_after_the_capture_is_saved_from_the_webhook(
    api: Api, fake: FakePayPal
) -> None:
    fake.vault_on_capture = False
    payment, order_id = buy_and_save(api, fake)
    assert customer_of(api, payment)["payment_methods"] == []  # not VAULTED yet
    token_id = fake.finish_vaulting(order_id)
    [event] = fake.events_of("VAULT.PAYMENT-TOKEN.CREATED")
    assert event["resource"]["metadata"] == {"order_id": order_id}
    client = api.app.test_client()
    for _ in range(2):  # delivered twice: one saved method
        body, headers = fake.signed(event)
        assert client.post("/webhooks/paypal", data=body, headers=headers).status_code == 200
    [method] = customer_of(api, payment)["payment_methods"]
    assert method["wallet"] == "paypal"
    assert fake.calls("GET", f"/v3/vault/payment-tokens/{token_id}")
    with api.app.app_context():
        saved = db.session.execute(select(SavedPaymentMethod)).scalar_one()
        assert (saved.gateway_token, saved.account_email) == (token_id, "buyer@example.com")
        [paypal_customer] = db.session.execute(
            select(GatewayCustomer.gateway_customer_id)
        ).scalars()
        assert paypal_customer == fake.payment_tokens[token_id]["customer"]["id"]
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1
