"""The customer's side of issue 20: the cart, stock-aware quantities, forms that keep what
was typed (also past the rate limit) and say what to fix, pages that say what happened."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import Order, Product

CUSTOMER = {"email": "ann@example.com", "name": "Ann", "gateway": "sandbox"}


def _add(client: FlaskClient, sku: str, quantity: int) -> object:
    return client.post("/cart/add", data={"sku": sku, "quantity": str(quantity)})


def _orders(app: Flask) -> int:
    with app.app_context():
        return db.session.execute(select(func.count(Order.id))).scalar_one()


def test_a_cart_of_several_products_becomes_one_order(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    assert _add(client, "tee-usd", 2).status_code == 303  # type: ignore[attr-defined]
    assert _add(client, "print-usd", 1).status_code == 303  # type: ignore[attr-defined]
    assert _add(client, "tee-usd", 1).status_code == 303  # type: ignore[attr-defined]
    page = client.get("/cart").get_data(as_text=True)
    assert "Kassa T-shirt" in page and "Signed print (limited)" in page
    assert re.search(r'id="qty-tee-usd"[^>]*value="3"', page)
    assert "$75.00" in page and "$60.00" in page  # line totals
    assert "Total (4 items)" in page and 'id="cart-total">$135.00<' in page
    assert "Pay $135.00" in page
    assert "/static/products/tee-usd.svg" in page  # the demo catalog's pictures
    assert 'Cart <span class="cart-count">(4' in page

    # Another currency cannot join (one order, one currency): said, nothing changes.
    refused = _add(client, "mug-eur", 1)
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert "Your cart is in USD" in refused.get_data(as_text=True)  # type: ignore[attr-defined]

    # Quantities change and lines go; more than the stock is cut to it, with a message.
    client.post("/cart/update", data={"qty-tee-usd": "1", "qty-print-usd": "9"})
    page = client.get("/cart").get_data(as_text=True)
    assert "Only 5 left of Signed print (limited): choose 5 or fewer." in page
    assert re.search(r'id="qty-print-usd"[^>]*value="5"[^>]*max="5"', page)
    assert 'id="cart-total">$325.00<' in page

    response = client.post("/cart", data=CUSTOMER)
    assert response.status_code == 303 and "/sandbox/pay/" in response.headers["Location"]
    with app.app_context():
        order = db.session.execute(select(Order)).scalar_one()
        assert order.total_amount == 32500 and order.currency == "USD"
        assert sorted((i.sku, i.quantity) for i in order.items) == [
            ("print-usd", 5),
            ("tee-usd", 1),
        ]
        stock = db.session.execute(select(Product.stock).where(Product.sku == "print-usd"))
        assert stock.scalar_one() == 0
    assert "Your cart is empty" in client.get("/cart").get_data(as_text=True)


def test_cart_errors_keep_the_cart_and_list_what_to_fix(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    _add(client, "tee-usd", 1)
    response = client.post("/cart", data={"email": "nope", "name": "", "gateway": "sandbox"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    summary = re.search(
        r'<div class="alert alert-error error-summary"[^>]*>(.*?)</div>', page, re.DOTALL
    )
    assert summary and "data-focus-on-load" in page
    assert '<a href="#email">Email: Enter a valid email address.</a>' in summary.group(1)
    assert '<a href="#name">Full name: Enter your name.</a>' in summary.group(1)
    assert "Kassa T-shirt" in page and _orders(app) == 0


def test_sold_out_products_offer_no_form(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    with app.app_context():
        db.session.execute(
            Product.__table__.update().where(Product.sku == "print-usd").values(stock=0)
        )
        db.session.commit()
    page = app.test_client().get("/products/print-usd").get_data(as_text=True)
    assert "Sold out" in page and "Continue to payment" not in page
    assert "Add to cart" not in page


def test_only_checkouts_that_go_ahead_count_and_429_keeps_the_input(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RATELIMIT_ENABLED=True, CHECKOUT_RATE_LIMIT="2 per minute")
    client = app.test_client()
    good = {**CUSTOMER, "quantity": "1", "email": "typed.by.hand@example.com"}
    for _ in range(4):  # a customer fixing their form is not "too many checkouts"
        assert client.post("/products/tee-usd", data={**good, "email": "bad"}).status_code == 422
    assert client.post("/products/tee-usd", data=good).status_code == 303
    assert client.post("/products/tee-usd", data=good).status_code == 303
    limited = client.post("/products/tee-usd", data={**good, "name": "Ann Typed"})
    assert limited.status_code == 429
    page = limited.get_data(as_text=True)
    assert "Too many checkouts from your network" in page and "what you entered is kept" in page
    assert 'value="typed.by.hand@example.com"' in page and 'value="Ann Typed"' in page
    assert _orders(app) == 2


def _deliver(app: Flask, client: FlaskClient) -> None:
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    while processor.undelivered:
        body, headers = processor.undelivered.pop(0)
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200


def test_pages_say_what_happened(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    response = client.post("/products/mug-eur", data={**CUSTOMER, "quantity": "1"})
    session_id = response.headers["Location"].rsplit("/", 1)[-1]
    paid = client.post(f"/sandbox/pay/{session_id}", data={"scenario": "decline"})
    _deliver(app, client)
    return_page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert "<h1>Payment not completed</h1>" in return_page
    assert "Thank you for your order" not in return_page
    # Back to the sandbox page after it is done: what happened and the way on, no "Pay".
    back = client.get(f"/sandbox/pay/{session_id}")
    html = back.get_data(as_text=True)
    assert back.headers["Cache-Control"] == "no-store"
    assert "<h1>Payment declined</h1>" in html and "Back to your order to try again" in html
    assert "<h1>Pay " not in html and "This checkout is failed" not in html
    # A 404 in plain words, not Werkzeug's stock sentence.
    missing = client.get("/no/such/page").get_data(as_text=True)
    assert "Page not found" in missing and "requested URL was not found" not in missing


def test_a_paid_order_thanks_the_customer(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    response = client.post("/products/mug-eur", data={**CUSTOMER, "quantity": "1"})
    session_id = response.headers["Location"].rsplit("/", 1)[-1]
    paid = client.post(f"/sandbox/pay/{session_id}", data={"scenario": "succeed"})
    _deliver(app, client)
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    assert "<h1>Thank you for your order</h1>" in page
    back = client.get(f"/sandbox/pay/{session_id}").get_data(as_text=True)
    assert "<h1>Payment made</h1>" in back and "Back to your order" in back
