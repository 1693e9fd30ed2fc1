"""Customer pages and the dashboard in the browser's language (English, Hindi, German),
amounts and dates formatted for it (sign-in, password reset and two-factor pages too); every catalog is complete and
compiled, and covers every dashboard, sandbox and Razorpay-page string."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = {"email": "", "name": "", "gateway": "sandbox", "quantity": "1"}


@pytest.mark.parametrize(
    ("accept", "lang", "words"),
    [
        ("de-DE,de;q=0.9,en;q=0.5", "de", ["In den Warenkorb", "Weiter zur Zahlung", "Warenkorb"]),
        ("hi-IN,hi;q=0.9", "hi", ["कार्ट में डालें", "भुगतान पर जाएँ", "सभी उत्पाद"]),
        ("fr-FR,fr;q=0.9", "en", ["Add to cart", "Continue to payment", "All products"]),
    ],
)
def test_product_page_speaks_the_browsers_language(
    make_app: Callable[..., Flask], accept: str, lang: str, words: list[str]
) -> None:
    client = make_app().test_client()
    page = client.get("/products/tee-usd", headers={"Accept-Language": accept}).get_data(
        as_text=True
    )
    assert f'<html lang="{lang}">' in page
    for word in words:
        assert word in page


def test_form_errors_and_amounts_follow_the_language(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    headers = {"Accept-Language": "de"}
    empty = client.post("/products/print-usd", data=CUSTOMER, headers=headers)
    assert "Geben Sie Ihre E-Mail-Adresse ein." in empty.get_data(as_text=True)
    filled = {**CUSTOMER, "email": "d@example.com", "name": "D", "quantity": "9"}
    page = client.post("/products/print-usd", data=filled, headers=headers).get_data(as_text=True)
    assert "Nur noch 5 × Signed print (limited) verfügbar" in page
    assert "$60,00" in page  # German decimal comma
    client.post("/cart/add", data={"sku": "tee-usd", "quantity": "2"})
    hindi = client.get("/cart", headers={"Accept-Language": "hi"}).get_data(as_text=True)
    assert "कुल (2 वस्तुएँ)" in hindi and "$50.00" in hindi


def test_sign_in_follows_the_browsers_language(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    german = client.get("/auth/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="de">' in german and "Händler-Anmeldung" in german
    hindi = client.get("/auth/forgot", headers={"Accept-Language": "hi"}).get_data(as_text=True)
    assert '<html lang="hi">' in hindi and "अपना पासवर्ड रीसेट करें" in hindi


WRAPPED = re.compile(r"""_\(\s*"((?:[^"\\]|\\.)+)"|_\(\s*'([^']+)'""")


@pytest.mark.parametrize("lang", ["de", "hi"])
def test_every_dashboard_and_sandbox_message_is_translated(lang: str) -> None:
    """Each string the dashboard, sandbox and Razorpay templates wrap is in the catalog
    with a translation (so `make translations` extracted them: babel.cfg covers them)."""
    with open(ROOT / "app" / "translations" / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        po = read_po(fh)
    templates = [
        *sorted((ROOT / "templates" / "dashboard").glob("*.html")),
        *sorted((ROOT / "templates" / "auth").glob("*.html")),
        *sorted((ROOT / "templates" / "sandbox").glob("*.html")),
        ROOT / "templates" / "checkout" / "razorpay.html",
    ]
    seen = 0
    for path in templates:
        for double, single in WRAPPED.findall(path.read_text()):
            msgid = (double or single).replace('\\"', '"')
            seen += 1
            assert msgid in po and po[msgid].string, f"{lang}: {path.name}: {msgid!r}"
    assert seen > 150


def test_the_dashboard_follows_the_merchants_language(make_app: Callable[..., Flask]) -> None:
    """The sandbox page (no sign-in needed) and the dashboard's strings in German/Hindi."""
    from flask import render_template_string

    app = make_app()
    with app.test_request_context(headers={"Accept-Language": "hi"}):
        hindi = render_template_string('{{ _("Sign out") }} {{ _("Payment links") }}')
    assert hindi == "साइन आउट भुगतान लिंक"
    with app.test_request_context(headers={"Accept-Language": "de"}):
        german = render_template_string('{{ _("Export CSV") }}')
    assert german == "CSV exportieren"


@pytest.mark.parametrize("lang", ["de", "hi"])
def test_catalogs_are_complete_and_compiled(lang: str) -> None:
    folder = ROOT / "app" / "translations" / lang / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as fh:
        po = read_po(fh)
    with open(ROOT / "app" / "translations" / "messages.pot", "rb") as fh:
        pot = read_po(fh)
    missing = [m.id for m in pot if m.id and (m.id not in po or not po[m.id].string)]
    assert not missing, f"{lang}: untranslated {missing}"
    with open(folder / "messages.mo", "rb") as fh:
        mo = read_mo(fh)

    def ids(catalog: object) -> set[str]:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}  # type: ignore[attr-defined]

    assert ids(po) == ids(mo), "run make translations"


def test_timeline_sentences_follow_the_merchants_language(make_app: Callable[..., Flask]) -> None:
    from app.dashboard.timeline import audit_sentence, webhook_sentence

    app = make_app()
    details = {"amount": 1050}
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert audit_sentence("refund.requested", None, None, details, "EUR") == (
            "Refund of €10.50 requested"
        )
        assert audit_sentence("order.status_changed", None, "paid", None, "EUR") == (
            "Order is now paid"
        )
    with app.test_request_context(headers={"Accept-Language": "de"}):
        assert audit_sentence("refund.requested", None, None, details, "EUR") == (
            "Erstattung über €10,50 angefordert"
        )
        assert audit_sentence("order.status_changed", None, "paid", None, "EUR") == (
            "Bestellung jetzt: Bezahlt"
        )
        assert webhook_sentence("payment.succeeded", "sandbox", "duplicate") == (
            "Sandbox sendete „payment succeeded“: bereits bekannt, nichts geändert"
        )
    with app.test_request_context(headers={"Accept-Language": "hi"}):
        assert audit_sentence("payment.created", None, "created", None, "EUR") == (
            "भुगतान का प्रयास शुरू"
        )
