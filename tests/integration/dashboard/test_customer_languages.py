"""The merchant's sign-in and a customer's dashboard page (with its charge form and the
customer's own saved-methods page) in German and Hindi when the browser asks for them:
words, amounts and errors in the language, nothing left in English."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import Customer
from app.payments.customers import methods_link
from tests.integration.dashboard.conftest import csrf_token
from tests.integration.dashboard.test_customers_pages import buy_and_save, customer_path

LANGUAGES = {
    "de": {
        "accept": "de-DE,de;q=0.9,en;q=0.5",
        "sign_in": ["Händler-Anmeldung", "Passwort", "Anmelden", "Passwort vergessen?"],
        "wrong": "E-Mail-Adresse oder Passwort ist falsch.",
        "customer": [
            "Gespeicherte Zahlungsmethoden",
            "Diese Zahlungsmethode belasten",
            "Bezahlvorgang",
            "Kunden-ID",
        ],
        "not_an_amount": "ist kein Betrag: Verwenden Sie Ziffern",
        "own_page": ["Ihre gespeicherten Zahlungsmethoden", "Entfernen"],
    },
    "hi": {
        "accept": "hi-IN,hi;q=0.9",
        "sign_in": ["व्यापारी साइन इन", "पासवर्ड", "साइन इन करें", "पासवर्ड भूल गए?"],
        "wrong": "ईमेल या पासवर्ड गलत है।",
        "customer": ["सहेजे गए भुगतान तरीके", "इस तरीके से शुल्क लें", "ग्राहक आईडी", "चेकआउट"],
        "not_an_amount": "कोई राशि नहीं है: अंक लिखें",
        "own_page": ["सहेजे गए", "हटाएँ"],
    },
}
ENGLISH = ["Merchant sign in", "Forgot your password?", "Charge this method", "Saved payment"]


@pytest.mark.parametrize("lang", ["de", "hi"])
def test_sign_in_page_speaks_the_browsers_language(
    make_app: Callable[..., Flask], lang: str
) -> None:
    words = LANGUAGES[lang]
    client = make_app().test_client()
    headers = {"Accept-Language": words["accept"]}
    page = client.get("/auth/login", headers=headers).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    for word in words["sign_in"]:
        assert word in page, word
    assert "Merchant sign in" not in page and "Forgot your password?" not in page
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token
    refused = client.post(
        "/auth/login",
        data={"csrf_token": token.group(1), "email": "nobody@example.com", "password": "x" * 12},
        headers=headers,
    )
    assert refused.status_code in (400, 401)
    assert words["wrong"] in refused.get_data(as_text=True)


@pytest.mark.parametrize("lang", ["de", "hi"])
def test_a_customers_pages_speak_the_browsers_language(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient], lang: str
) -> None:
    words = LANGUAGES[lang]
    headers = {"Accept-Language": words["accept"]}
    buy_and_save(dash_app)
    client = signed_in("owner")
    path = customer_path(client)
    page = client.get(path, headers=headers).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    for word in words["customer"]:
        assert word in page, word
    for english in ENGLISH:
        assert english not in page, english
    charge = re.search(r'href="(/dashboard/customers/[^"]+/charge)"', page)
    assert charge
    refused = client.post(
        charge.group(1),
        data={
            "csrf_token": csrf_token(client, charge.group(1)),
            "amount": "zwölf",
            "currency": "USD",
            "description": "Refill",
        },
        headers=headers,
    )
    assert refused.status_code == 422
    assert words["not_an_amount"] in refused.get_data(as_text=True)

    with dash_app.test_request_context():
        customer = db.session.query(Customer).one()
        link = methods_link(customer)
    own = dash_app.test_client().get(
        "/" + link.split("://", 1)[1].split("/", 1)[1], headers=headers
    )
    assert own.status_code == 200
    for word in words["own_page"]:
        assert word in own.get_data(as_text=True), word
