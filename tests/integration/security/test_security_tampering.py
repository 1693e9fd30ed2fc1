"""Open redirects, tampered checkout forms, unearned success pages, abuse limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sec_helpers import csrf_from, login, start_checkout

from app.extensions import db
from app.models import Order, Payment
from app.security import is_allowed_return_url, is_safe_next

ATTACKS = [
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "/%5Cevil.example",
    "javascript:alert(document.domain)",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "///evil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "https:evil.example",
    "\\\\evil.example",
    "http://localhost@evil.example",
    " //evil.example",
    "/%255Cevil.example",
    "data:text/html,<script>alert(1)</script>",
]


@pytest.mark.parametrize("target", ATTACKS)
def test_login_refuses_to_redirect_off_site(app: Any, client: Any, target: str) -> None:
    response = login(client, next_url=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/"


def test_login_keeps_a_same_site_next(app: Any, client: Any) -> None:
    response = login(client, next_url="/orders/ord_abc?tab=items")
    assert response.headers["Location"] == "/orders/ord_abc?tab=items"


@pytest.mark.parametrize("target", ATTACKS)
def test_is_safe_next_refuses_attacks(target: str) -> None:
    assert not is_safe_next(target)


def test_return_urls_only_on_our_host_or_allowed_hosts(make_app: Any) -> None:
    app = make_app(
        PUBLIC_BASE_URL="https://shop.example.com", ALLOWED_RETURN_HOSTS=["merchant.example.org"]
    )
    with app.app_context():
        for ok in (
            "https://shop.example.com/thanks",
            "https://merchant.example.org/done?x=1",
            "https://shop.example.com:443/x",
        ):
            assert is_allowed_return_url(ok), ok
        for bad in (
            "https://evil.example/",
            "//shop.example.com/x",
            "/relative",
            "javascript:alert(1)",
            "https://shop.example.com.evil.example/",
            "https://evil.example\\@shop.example.com/",
            "http://shop.example.com/x",
            "https://user@shop.example.com/",
            "ftp://shop.example.com/",
            "https://sub.merchant.example.org/",
            "https://shop.example.com/\nx",
            "",
            None,
        ):
            assert not is_allowed_return_url(bad), bad


# --------------------------------------------------------------------------- tampering


def _latest_payment(app: Any) -> Payment | None:
    with app.app_context():
        payment = db.session.query(Payment).order_by(Payment.id.desc()).first()
        if payment is not None:
            db.session.refresh(payment.order)
            db.session.expunge(payment.order)
            db.session.expunge(payment)
        return payment


def _orders(app: Any) -> int:
    with app.app_context():
        return db.session.query(Order).count()


def test_posted_price_amount_and_currency_are_ignored(app: Any, client: Any) -> None:
    response = start_checkout(
        client,
        "tee-usd",
        quantity=3,
        price=1,
        amount=1,
        unit_amount=1,
        currency="JPY",
        total_amount=1,
        total=1,
        line_amount=1,
        sku="print-usd",
        success_url="https://evil.example/",
    )
    assert response.status_code == 303
    payment = _latest_payment(app)
    assert payment is not None
    assert (payment.amount, payment.currency) == (7500, "USD")  # 3 × $25.00, catalog price
    assert payment.order.total_amount == 7500
    # The sandbox's hosted page asks for the same amount, and returns to us.
    sandbox = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "$75.00" in sandbox


@pytest.mark.parametrize("quantity", ["0", "-1", "100", "1000000", "abc", "1.5", "", "1e2"])
def test_out_of_range_quantities_are_refused(app: Any, client: Any, quantity: str) -> None:
    response = start_checkout(client, "tee-usd", quantity=quantity)
    assert response.status_code == 422
    assert _orders(app) == 0


@pytest.mark.parametrize("gateway", ["evil", "stripe", "razorpay", "", "sandbox "])
def test_unknown_or_unconfigured_gateways_are_refused(app: Any, client: Any, gateway: str) -> None:
    response = start_checkout(client, "tee-usd", gateway=gateway)
    assert response.status_code == 422
    assert _orders(app) == 0


def test_sandbox_page_ignores_a_posted_amount(app: Any, client: Any) -> None:
    location = start_checkout(client).headers["Location"]
    page = client.get(location).get_data(as_text=True)
    response = client.post(
        location,
        data={
            "scenario": "succeed",
            "amount": "1",
            "currency": "JPY",
            "csrf_token": csrf_from(page),
        },
    )
    assert response.status_code == 303
    sandbox = app.extensions["kassa_gateways"]["sandbox"].processor
    for body, _headers in sandbox.undelivered:
        text = body.decode()
        assert '"amount":2500' in text and '"currency":"USD"' in text


def test_success_page_without_a_real_payment_shows_nothing_paid(app: Any, client: Any) -> None:
    start_checkout(client)
    payment = _latest_payment(app)
    assert payment is not None
    forged = client.get(
        f"/checkout/return/{payment.public_id}"
        f"?session_id={payment.gateway_reference}&status=succeeded"
        f"&payment_status=paid&paid=1&redirect_status=succeeded"
    )
    assert forged.status_code == 200
    html = forged.get_data(as_text=True)
    assert 'data-status="pending"' in html
    assert "Thank you, Sam Shopper" not in html and "receipt is on its way" not in html
    after = _latest_payment(app)
    assert after is not None and after.status != "succeeded"
    assert after.order.status == "pending"
    assert client.get("/checkout/return/pay_doesnotexist").status_code == 404


# --------------------------------------------------------------------------- rate limits


def test_checkout_creation_is_limited_per_address(make_app: Any) -> None:
    app = make_app(RATELIMIT_ENABLED=True, CHECKOUT_RATE_LIMIT="3 per minute")
    client = app.test_client()
    for _ in range(3):
        assert start_checkout(client).status_code == 303
    limited = start_checkout(client)
    assert limited.status_code == 429
    assert "Too many checkouts from your network" in limited.get_data(as_text=True)
    assert client.get("/products/tee-usd").status_code == 200  # browsing is not limited
    assert _orders(app) == 3
    elsewhere = app.test_client()
    page = elsewhere.get("/products/tee-usd", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    response = elsewhere.post(
        "/products/tee-usd",
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
        data={
            "email": "b@example.com",
            "name": "B",
            "quantity": "1",
            "gateway": "sandbox",
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 303


def test_webhooks_are_never_rate_limited_but_always_verified(make_app: Any) -> None:
    app = make_app(RATELIMIT_ENABLED=True, CHECKOUT_RATE_LIMIT="1 per minute")
    client = app.test_client()
    location = start_checkout(client).headers["Location"]
    page = client.get(location).get_data(as_text=True)
    client.post(location, data={"scenario": "succeed", "csrf_token": csrf_from(page)})
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    body, headers = processor.undelivered[0]
    for _ in range(40):  # a gateway retrying hard, all from one address
        response = client.post("/webhooks/sandbox", data=body, headers=headers)
        assert response.status_code == 200
    forged_headers = dict(headers)
    forged_headers["Kassa-Signature"] = re.sub(
        r"v1=\w+", "v1=" + "0" * 64, headers["Kassa-Signature"]
    )
    tampered = body.replace(b'"amount":2500', b'"amount":1')
    for bad_body, bad_headers in (
        (body, forged_headers),
        (tampered, headers),
        (body, {"Content-Type": "application/json"}),
    ):
        response = client.post("/webhooks/sandbox", data=bad_body, headers=bad_headers)
        assert response.status_code == 400
    # The checkout limit is in force meanwhile (1 per minute, already used).
    assert start_checkout(client).status_code == 429
