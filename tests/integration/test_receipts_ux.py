"""Receipts worth keeping: HTML and text emails, and a printable receipt page."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import Order

CUSTOMER = {"email": "ann@example.com", "name": "Ann Lee", "gateway": "sandbox"}


def _deliver(app: Flask, client: FlaskClient) -> None:
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    while processor.undelivered:
        body, headers = processor.undelivered.pop(0)
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200


def _buy(app: Flask, client: FlaskClient) -> str:
    client.post("/cart/add", data={"sku": "tee-usd", "quantity": "2"})
    client.post("/cart/add", data={"sku": "print-usd", "quantity": "1"})
    started = client.post("/cart", data=CUSTOMER)
    session_id = started.headers["Location"].rsplit("/", 1)[-1]
    paid = client.post(f"/sandbox/pay/{session_id}", data={"scenario": "succeed"})
    _deliver(app, client)
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    return page.split("/orders/", 1)[1].split('"', 1)[0].split("/", 1)[0]


def test_the_receipt_email_has_html_and_text_with_everything(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(STORE_NAME="Ana's Tees")
    client = app.test_client()
    order_id = _buy(app, client)
    (path,) = (Path(app.instance_path) / "outbox").glob("*order_paid*.eml")
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    for part in (text, html):
        assert "Ana" in part and "Tees" in part  # the store's name
        assert "Kassa T-shirt" in part and "Signed print (limited)" in part
        assert "$110.00" in part  # the total
        assert "Visa" in part and "4242" in part  # how it was paid
        assert "R-0" in part  # the receipt number
        assert "UTC" in part  # the date
        assert f"http://127.0.0.1:5000/orders/{order_id}" in part
    assert "<table" in html and "<script" not in html


def test_the_printable_receipt_page(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    order_id = _buy(app, client)
    page = client.get(f"/orders/{order_id}/receipt").get_data(as_text=True)
    assert '<h1 id="receipt-title">Receipt R-0' in page
    assert "Kassa T-shirt" in page and "$110.00" in page and "Visa •••• 4242" in page
    assert "Ann Lee" in page and "ann@example.com" in page
    css = (Path(app.static_folder or "") / "css" / "app.css").read_text()
    assert "@media print" in css and ".site-header, .site-footer" in css
    # Linked from the order page once paid; an unpaid order has no receipt yet.
    assert f"/orders/{order_id}/receipt" in client.get(f"/orders/{order_id}").get_data(as_text=True)
    assert client.post("/products/mug-eur", data={**CUSTOMER, "quantity": "1"}).status_code == 303
    with app.app_context():
        unpaid = db.session.execute(select(Order).where(Order.status == "pending")).scalar_one()
        unpaid_id = unpaid.public_id
    response = client.get(f"/orders/{unpaid_id}/receipt")
    assert response.status_code == 302 and response.headers["Location"] == f"/orders/{unpaid_id}"
    assert client.get("/orders/ord_doesnotexist/receipt").status_code == 404


def test_receipts_are_mailed_in_the_stores_language(make_app: Callable[..., Flask]) -> None:
    app = make_app(DEFAULT_LOCALE="de")
    _buy(app, app.test_client())
    (path,) = (Path(app.instance_path) / "outbox").glob("*order_paid*.eml")
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Hallo Ann Lee," in text and "Beleg-Nr." in text and "$110,00" in text
    assert '<html lang="de">' in html and "Bezahlt insgesamt" in html


def test_receipts_are_mailed_in_the_language_the_customer_ordered_in(
    make_app: Callable[..., Flask],
) -> None:
    """The customer shops in Hindi; the webhook that sends the receipt (no browser, the
    store's default English) still writes it in Hindi: the order keeps the language."""
    app = make_app(DEFAULT_LOCALE="en")
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "hi-IN,hi;q=0.9"
    client.post("/cart/add", data={"sku": "tee-usd", "quantity": "2"})
    started = client.post("/cart", data=CUSTOMER)
    session_id = started.headers["Location"].rsplit("/", 1)[-1]
    del client.environ_base["HTTP_ACCEPT_LANGUAGE"]
    client.post(f"/sandbox/pay/{session_id}", data={"scenario": "succeed"})
    _deliver(app, client)
    with app.app_context():
        order = db.session.execute(select(Order)).scalar_one()
        assert order.locale == "hi"
    (path,) = (Path(app.instance_path) / "outbox").glob("*order_paid*.eml")
    mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "से आपकी रसीद" in str(mail["Subject"])
    assert "Hello" not in text and '<html lang="hi">' in html
