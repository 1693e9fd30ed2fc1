"""Customer pages through the test client: form errors, CSRF, tampering, status widget."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Order, Payment, Product

GOOD = {"email": "ann@example.com", "name": "Ann", "quantity": "1", "gateway": "sandbox"}


def test_storefront_lists_the_demo_catalog(make_app: Callable[..., Flask]) -> None:
    page = make_app().test_client().get("/").get_data(as_text=True)
    for name, price in [
        ("Kassa T-shirt", "$25.00"),
        ("Enamel mug", "€14.50"),
        ("Dot-grid notebook", "₹499.00"),
        ("Tenugui towel", "¥1,800"),
    ]:
        assert name in page and price in page
    assert "5 left" in page


def test_checkout_redirects_303_to_the_hosted_page(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().post("/products/tee-usd", data=GOOD)
    assert response.status_code == 303
    assert re.match(r"http://127.0.0.1:5000/sandbox/pay/sbx_cs_", response.headers["Location"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "Enter a valid email address."),
        ("email", "", "Enter your email address."),
        ("name", "", "Enter your name."),
        ("quantity", "0", "between 1 and 99"),
        ("quantity", "100", "between 1 and 99"),
        ("quantity", "two", "Not a valid integer value"),
        ("gateway", "paypal", "Not a valid choice"),
    ],
)
def test_field_errors_are_shown_and_nothing_is_created(
    make_app: Callable[..., Flask], field: str, value: str, message: str
) -> None:
    app = make_app()
    response = app.test_client().post("/products/tee-usd", data={**GOOD, field: value})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert 'aria-invalid="true"' in page
    with app.app_context():
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_posted_prices_and_currencies_are_ignored(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    tampered = {
        **GOOD,
        "quantity": "2",
        "price": "1",
        "unit_amount": "1",
        "amount": "1",
        "currency": "JPY",
        "total": "0",
    }
    assert app.test_client().post("/products/tee-usd", data=tampered).status_code == 303
    with app.app_context():
        payment = db.session.execute(select(Payment)).scalar_one()
        assert (payment.amount, payment.currency) == (5000, "USD")


def test_sold_out_is_a_form_message(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    response = app.test_client().post("/products/print-usd", data={**GOOD, "quantity": "6"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    # The message agrees with the stock shown ("5 left"), and the field stops at 5.
    assert "Only 5 left of Signed print (limited): choose 5 or fewer." in page
    assert "5 left" in page and re.search(r'<input[^>]*id="quantity"[^>]*max="5"', page)
    with app.app_context():
        assert (
            db.session.execute(select(Product.stock).where(Product.sku == "print-usd")).scalar_one()
            == 5
        )


def test_csrf_is_required(make_app: Callable[..., Flask]) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    refused = client.post("/products/tee-usd", data=GOOD)
    assert refused.status_code == 400
    assert "nothing was done" in refused.get_data(as_text=True)
    page = client.get("/products/tee-usd").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token
    ok = client.post("/products/tee-usd", data={**GOOD, "csrf_token": token.group(1)})
    assert ok.status_code == 303
    with app.app_context():
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 1


def test_unknown_pages_are_404(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    assert client.get("/products/nope").status_code == 404
    assert client.get("/orders/ord_guess").status_code == 404
    assert client.get("/checkout/return/pay_guess").status_code == 404


@pytest.mark.parametrize("live", [True, False])
def test_status_widget_refreshes_itself_and_works_without_htmx(
    make_app: Callable[..., Flask], live: bool
) -> None:
    app = make_app(LIVE_UPDATES=live)
    client = app.test_client()
    client.post("/products/tee-usd", data=GOOD)
    with app.app_context():
        order_id = db.session.execute(select(Order.public_id)).scalar_one()
    partial = client.get(f"/orders/{order_id}/status", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    html = partial.get_data(as_text=True)
    assert html.lstrip().startswith("<section") and "<html" not in html
    # On the page's event stream, or polling when streams are off.
    trigger = 'hx-trigger="sse:order"' if live else 'hx-trigger="every 1s"'
    assert trigger in html and 'hx-swap="outerHTML"' in html
    page = client.get(f"/orders/{order_id}").get_data(as_text=True)
    assert ("sse-connect=" in page) is live
    full = client.get(f"/orders/{order_id}/status")  # no htmx: a whole page
    assert "<html" in full.get_data(as_text=True)


def test_return_page_without_a_payment_shows_nothing_paid(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    location = client.post("/products/tee-usd", data=GOOD).headers["Location"]
    session_id = location.rsplit("/", 1)[1]
    with app.app_context():
        payment_id = db.session.execute(select(Payment.public_id)).scalar_one()
    page = client.get(f"/checkout/return/{payment_id}?session_id={session_id}")
    text = page.get_data(as_text=True)
    assert "Confirming your payment" in text and 'data-status="pending"' in text
