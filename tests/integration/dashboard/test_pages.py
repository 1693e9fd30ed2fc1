"""Every dashboard page and partial through the test client: who may see and do what,
CSRF on every form (htmx ones too), and full pages vs fragments."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import ApiKey, Refund
from tests.integration.dashboard.conftest import (
    HX,
    csrf_token,
    make_payment,
    sandbox_payment,
)

PAGES = [
    "/dashboard/",
    "/dashboard/payments",
    "/dashboard/webhooks",
    "/dashboard/api-keys",
    "/dashboard/payments/export.csv",
]


@pytest.mark.parametrize(
    "path", PAGES + ["/dashboard/payments/pay_x", "/dashboard/payments/pay_x/status"]
)
def test_signed_out_is_sent_to_sign_in(dash_app: Flask, path: str) -> None:
    response = dash_app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


def test_signed_out_htmx_request_redirects_the_whole_page(dash_app: Flask) -> None:
    response = dash_app.test_client().get("/dashboard/payments", headers=HX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/auth/login?next=")


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
@pytest.mark.parametrize("path", PAGES)
def test_every_role_reads_every_page(
    signed_in: Callable[[str], FlaskClient], role: str, path: str
) -> None:
    response = signed_in(role).get(path)
    assert response.status_code == 200
    if path.endswith(".csv"):
        assert response.mimetype == "text/csv"
    else:
        html = response.get_data(as_text=True)
        assert "<html" in html and 'action="/auth/logout"' in html
        assert response.headers["Cache-Control"] == "no-store"


def test_pages_answer_fragments_to_htmx_and_full_pages_otherwise(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    with dash_app.app_context():
        make_payment()
    for path, marker in [
        ("/dashboard/payments", 'id="payments-results"'),
        ("/dashboard/", 'id="overview"'),
        ("/dashboard/webhooks", 'id="webhooks-results"'),
        ("/dashboard/api-keys", 'id="api-keys"'),
    ]:
        fragment = client.get(path, headers=HX).get_data(as_text=True)
        assert marker in fragment and "<html" not in fragment
        # Boosted navigation and history restores need whole pages.
        for extra in ({"HX-Boosted": "true"}, {"HX-History-Restore-Request": "true"}):
            page = client.get(path, headers={**HX, **extra}).get_data(as_text=True)
            assert "<html" in page and marker in page


def test_sign_out_button_is_a_csrf_form_that_ends_the_session(
    signed_in: Callable[[str], FlaskClient],
) -> None:
    client = signed_in("owner")
    assert client.post("/auth/logout").status_code == 400  # no token: refused
    assert client.get("/dashboard/").status_code == 200
    token = csrf_token(client, "/dashboard/")
    response = client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/dashboard/").status_code == 302


def test_session_cookie_is_httponly_and_samesite(dash_app: Flask) -> None:
    client = dash_app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/auth/login",
        data={
            "email": "owner@shop.test",
            "password": "correct horse battery staple",
            "csrf_token": token,
        },
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_cookies_are_secure_outside_debug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from app.config import load_settings

    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("FLASK_DEBUG", "0")
    assert load_settings(tmp_path)["SESSION_COOKIE_SECURE"] is True  # type: ignore[arg-type]
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert load_settings(tmp_path)["SESSION_COOKIE_SECURE"] is False  # type: ignore[arg-type]


# --- writes: roles and CSRF -------------------------------------------------------------


def _write_requests(pid: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/dashboard/payments/{pid}/refund", {"amount": "1.00", "reason": "duplicate"}),
        (f"/dashboard/payments/{pid}/capture", {}),
        (f"/dashboard/payments/{pid}/sync", {}),
        ("/dashboard/webhooks/1/reprocess", {}),
        ("/dashboard/api-keys", {"name": "shop", "scope": "write"}),
        ("/dashboard/api-keys/kassa_000000000000/revoke", {}),
    ]


def test_viewer_cannot_refund_or_change_anything(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    pid = sandbox_payment(dash_app, client)
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    # Nothing to press: the buttons are not there for a viewer.
    for absent in (
        "Review refund",
        "Sync with gateway",
        f"/payments/{pid}/capture",
        f'/payments/{pid}/refund"',  # the refunds list (a GET, .../refunds) may be there
    ):
        assert absent not in page
    assert "Create key" not in client.get("/dashboard/api-keys").get_data(as_text=True)
    token = csrf_token(client, "/dashboard/")
    for path, data in _write_requests(pid):
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
        response = client.post(path, data=data, headers={**HX, "X-CSRFToken": token})
        assert response.status_code == 403, path
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 0
        assert db.session.query(ApiKey).count() == 0


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_every_form_needs_its_csrf_token(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient], role: str
) -> None:
    client = signed_in(role)
    pid = sandbox_payment(dash_app, client)
    for path, data in _write_requests(pid):
        assert client.post(path, data=data).status_code == 400, path
        # htmx requests too: without the header htmx adds from hx-headers, refused.
        assert client.post(path, data=data, headers=HX).status_code == 400, path
        assert (
            client.post(path, data=data, headers={**HX, "X-CSRFToken": "forged"}).status_code == 400
        ), path
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 0
        assert db.session.query(ApiKey).count() == 0


def test_pages_work_without_javascript(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    """Reading pages are plain links and GET forms; no inline script anywhere."""
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client)
    for path in (
        "/dashboard/",
        "/dashboard/payments",
        f"/dashboard/payments/{pid}",
        "/dashboard/webhooks",
        "/dashboard/api-keys",
        "/dashboard/links",
    ):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and " hx-on" not in html and "onclick" not in html
        # htmx, app.js (focus) and dashboard.js, all from static/, and on the live pages (payments) the
        # htmx SSE extension for their event stream.
        live = path.startswith("/dashboard/payments")
        assert html.count("<script ") == (4 if live else 3)
        assert ("htmx-ext-sse.min.js" in html) is live
    listing = client.get("/dashboard/payments").get_data(as_text=True)
    assert 'method="get" action="/dashboard/payments"' in listing
    assert f'href="/dashboard/payments/{pid}"' in listing
