"""Text no database here can store (NUL, lone surrogates) and control characters in names
and emails are refused with a clear 4xx at every door, the same on SQLite and PostgreSQL
(PostgreSQL raised DataError -> 500; SQLite stored the NUL). Issue 23, item 1."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import Order
from tests.integration.api.conftest import Api, checkout_body, new_key

BOTH = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
CUSTOMER = {"email": "ann@example.com", "name": "Ann", "gateway": "sandbox", "quantity": "1"}


def orders(app: Flask) -> int:
    with app.app_context():
        return int(db.session.execute(select(func.count(Order.id))).scalar_one())


def envelope(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]  # type: ignore[attr-defined]
    assert response.mimetype == "application/json"  # type: ignore[attr-defined]
    body = response.get_json()  # type: ignore[attr-defined]
    assert body["success"] is False and body["error"]["code"] == code, body
    return body  # type: ignore[no-any-return]


@BOTH
@pytest.mark.parametrize(
    "path",
    [
        "/orders/ord%00x",
        "/orders/ord%00x/receipt",
        "/checkout/return/pay%00",
        "/checkout/cancel/pay%00",
        "/products/tee%00",
        "/sandbox/pay/sbx%00",
        "/pay/plink%00",
    ],
)
def test_a_nul_in_a_page_path_is_a_404_page(app: Flask, db_backend: str, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Page not found" in response.get_data(as_text=True)


@BOTH
def test_a_nul_in_a_query_is_a_400_page_and_an_htmx_fragment(app: Flask, db_backend: str) -> None:
    client = app.test_client()
    page = client.get("/products/tee-usd?ref=a%00b")
    assert page.status_code == 400 and "cannot be stored" in page.get_data(as_text=True)
    assert "<html" in page.get_data(as_text=True).lower()
    fragment = client.get("/orders/ord_x/status?x=%00", headers={"HX-Request": "true"})
    assert fragment.status_code == 400
    html = fragment.get_data(as_text=True)
    assert "cannot be stored" in html and "<html" not in html.lower()


@BOTH
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ann\x00Lee"),
        ("email", "ann\x00@example.com"),
    ],
)
def test_a_nul_in_the_checkout_form_is_refused_and_nothing_is_stored(
    app: Flask, db_backend: str, field: str, value: str
) -> None:
    before = orders(app)
    response = app.test_client().post("/products/tee-usd", data={**CUSTOMER, field: value})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "cannot be stored" in response.get_data(as_text=True)
    assert orders(app) == before


@BOTH
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ann\x1b[31mLee"),
        ("name", "Ann\nLee"),
        ("name", "Ann\x7fLee"),
        ("email", "ann\x08@example.com"),
    ],
)
def test_control_characters_in_a_checkout_name_or_email_are_a_form_message(
    app: Flask, db_backend: str, field: str, value: str
) -> None:
    before = orders(app)
    response = app.test_client().post("/products/tee-usd", data={**CUSTOMER, field: value})
    assert response.status_code == 422
    assert "Remove the control characters" in response.get_data(as_text=True)
    assert orders(app) == before


@BOTH
def test_a_nul_in_the_sign_in_email_is_refused(
    make_app: Callable[..., Flask], db_backend: str
) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    response = client.post("/auth/login", data={"email": "a\x00b@shop.test", "password": "x"})
    assert response.status_code == 400 and "cannot be stored" in response.get_data(as_text=True)
    forgot = client.post("/auth/forgot", data={"email": "a\x00b@shop.test"})
    assert forgot.status_code == 400


@BOTH
@pytest.mark.parametrize(
    "query",
    [
        "/orders?email=a%00b",
        "/payments?email=a%00b",
        "/payments?gateway=%00",
        "/orders?cursor=%00",
        "/payments?a%00=1",
    ],
)
def test_a_nul_in_an_api_query_is_a_400_envelope(app: Flask, db_backend: str, query: str) -> None:
    api = Api(app, new_key(app, "read"))
    body = envelope(api.get(query), 400, "validation_error")
    assert body["error"]["details"][0]["in"] == "query"  # type: ignore[index]


@BOTH
@pytest.mark.parametrize(
    "path",
    [
        "/payments/pay_%00",
        "/payments/pay_%00/events",
        "/payments/pay_%00/refunds",
        "/orders/ord_%00",
        "/refunds/re_%00",
    ],
)
def test_a_nul_in_an_api_path_is_a_404_envelope(app: Flask, db_backend: str, path: str) -> None:
    api = Api(app, new_key(app, "read"))
    envelope(api.get(path), 404, "not_found")


@BOTH
@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"email": "ada@example.com", "name": "Ada\u0000"}, "customer.name"),
        ({"email": "a\u0000@example.com", "name": "Ada"}, "customer.email"),
        ({"email": "ada@example.com", "name": "Ada\u001b[0m"}, "customer.name"),
        ({"email": "ada@example.com", "name": "Ada\u0085"}, "customer.name"),
        ({"email": "a\u0009b@example.com", "name": "Ada"}, "customer.email"),
    ],
)
def test_unstorable_or_control_text_in_a_json_body_is_a_400(
    app: Flask, db_backend: str, customer: dict[str, str], field: str
) -> None:
    api = Api(app, new_key(app))
    before = orders(app)
    body = envelope(
        api.post("/checkout-sessions", checkout_body(customer=customer)), 400, "validation_error"
    )
    assert field in [d["field"] for d in body["error"]["details"]]  # type: ignore[index]
    assert orders(app) == before


@BOTH
@pytest.mark.parametrize(
    "raw",
    [
        # Escapes are how JSON carries these; a raw NUL in a string is invalid JSON anyway.
        '{"amount": 100, "reason": "dup\\u0000"}',
        '{"amount": 100, "reason": "dup\\ud800"}',
        '{"amount": 100, "reason": "\\udfff dup"}',
    ],
)
def test_nul_and_lone_surrogates_anywhere_in_a_body_are_a_400(
    app: Flask, db_backend: str, raw: str
) -> None:
    api = Api(app, new_key(app))
    created = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    response = api.post(
        f"/payments/{created['payment']['id']}/refunds",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    envelope(response, 400, "validation_error")
    assert json.loads(raw)  # the body is JSON Python would read (the old code's route)
