"""Two-factor sign-in: enrolment with a server-drawn QR code, codes, recovery codes."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from sec_helpers import OWNER_EMAIL, csrf_from, login

from app.extensions import db
from app.models import User


def _user(app: Any) -> User:
    with app.app_context():
        user = db.session.query(User).filter_by(email=OWNER_EMAIL).one()
        db.session.expunge(user)
        return user


def _step_code(secret: str, offset: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(time.time()) + offset)  # type: ignore[arg-type]


def enrol(client: Any, app: Any) -> tuple[str, list[str]]:
    """Sign in, scan (read) the secret from the setup page, confirm; returns secret, codes."""
    assert login(client).status_code == 303
    page = client.get("/auth/2fa/setup")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # The QR code is inline SVG drawn by us: no image from another host.
    assert re.search(r"<svg[^>]*>.*<path", html, re.DOTALL)
    assert "<img" not in html
    secret = re.search(r'<code class="totp-secret">([A-Z2-7]+)</code>', html).group(1)  # type: ignore[union-attr]
    assert _user(app).totp_enabled is False
    response = client.post(
        "/auth/2fa/setup", data={"code": _step_code(secret), "csrf_token": csrf_from(html)}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert "shown only now" in body
    codes = re.findall(r"<code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>", body)
    assert len(codes) == 10
    user = _user(app)
    assert user.totp_enabled is True
    # Only hashes are stored.
    assert user.recovery_codes and not set(codes) & set(user.recovery_codes)
    return secret, codes


def _second_step(client: Any, code: str) -> Any:
    page = client.get("/auth/2fa")
    assert page.status_code == 200
    return client.post(
        "/auth/2fa", data={"code": code, "csrf_token": csrf_from(page.get_data(as_text=True))}
    )


def _signed_in(client: Any) -> bool:
    return client.get("/auth/2fa/setup").status_code == 200


def test_enrol_then_sign_in_with_a_code_and_a_reused_code_is_refused(app: Any) -> None:
    setup_client = app.test_client()
    secret, _ = enrol(setup_client, app)

    client = app.test_client()
    response = login(client, next_url="/orders/ord_somewhere")
    assert response.status_code == 303 and response.headers["Location"] == "/auth/2fa"
    assert not _signed_in(client), "a password alone must not sign in"

    # A wrong code is refused and says so.
    wrong = _second_step(client, "000000" if _step_code(secret) != "000000" else "111111")
    assert wrong.status_code == 401
    assert "not right" in wrong.get_data(as_text=True)

    # The enrolment used this time step already: the same code is refused as reused.
    reused = _second_step(client, _step_code(secret))
    assert reused.status_code == 401
    assert "already used" in reused.get_data(as_text=True)

    # The next step's code (within the drift window) signs in and goes to `next`.
    ok = _second_step(client, _step_code(secret, +1))
    assert ok.status_code == 303 and ok.headers["Location"] == "/orders/ord_somewhere"
    assert _signed_in(client)

    # Replaying that code in another browser fails even with the right password.
    other = app.test_client()
    login(other)
    assert _second_step(other, _step_code(secret, +1)).status_code == 401


def test_recovery_code_signs_in_once(app: Any) -> None:
    _, codes = enrol(app.test_client(), app)
    client = app.test_client()
    login(client)
    response = _second_step(client, codes[0].upper().replace("-", " "))
    assert response.status_code == 303
    assert _signed_in(client)
    assert len(_user(app).recovery_codes or []) == 9

    again = app.test_client()
    login(again)
    refused = _second_step(again, codes[0])
    assert refused.status_code == 401
    assert not _signed_in(again)
    assert _second_step(again, codes[1]).status_code == 303


def test_second_step_needs_a_fresh_password_step(app: Any) -> None:
    enrol(app.test_client(), app)
    client = app.test_client()
    assert client.get("/auth/2fa").status_code == 303  # nothing pending
    login(client)
    with client.session_transaction() as session:
        pending = dict(session["kassa_2fa"])
        pending["at"] -= 3600
        session["kassa_2fa"] = pending
    assert client.get("/auth/2fa").headers["Location"] == "/auth/login"


def test_enrolment_rotates_the_session_token_ending_other_sessions(app: Any) -> None:
    other = app.test_client()
    login(other)
    assert _signed_in(other)
    enrol(app.test_client(), app)
    assert not _signed_in(other)


def test_owners_must_enrol_when_required(make_app: Any) -> None:
    app = make_app(REQUIRE_2FA_FOR_OWNERS=True)

    @app.get("/_test/merchant-page")
    def merchant_page() -> str:
        """Stand-in for a merchant page outside the exempt blueprints."""
        return "merchant page"

    merchant_urls = ["/_test/merchant-page"]
    if any(rule.endpoint.startswith("dashboard.") for rule in app.url_map.iter_rules()):
        merchant_urls.append("/dashboard/")
    client = app.test_client()
    response = login(client)
    assert response.headers["Location"] == "/auth/2fa/setup"
    for url in merchant_urls:
        blocked = client.get(url)
        assert blocked.status_code == 303 and blocked.headers["Location"] == "/auth/2fa/setup"
        htmx = client.get(url, headers={"HX-Request": "true"})
        assert htmx.headers["HX-Redirect"] == "/auth/2fa/setup"
    assert client.get("/").status_code == 200  # the shop stays reachable
    page = client.get("/auth/2fa/setup").get_data(as_text=True)
    assert "must use two-factor" in page
    secret = re.search(r'<code class="totp-secret">([A-Z2-7]+)</code>', page).group(1)  # type: ignore[union-attr]
    client.post("/auth/2fa/setup", data={"code": _step_code(secret), "csrf_token": csrf_from(page)})
    assert client.get("/_test/merchant-page").get_data(as_text=True) == "merchant page"
    for url in merchant_urls:
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("which", ["disable", "recovery-codes"])
def test_managing_2fa_needs_a_current_code(app: Any, which: str) -> None:
    client = app.test_client()
    _secret, codes = enrol(client, app)
    page = client.get("/auth/2fa/setup").get_data(as_text=True)
    token = csrf_from(page)
    bad = client.post(f"/auth/2fa/{which}", data={"code": "123456", "csrf_token": token})
    assert bad.status_code == 422
    good = client.post(f"/auth/2fa/{which}", data={"code": codes[3], "csrf_token": token})
    assert good.status_code in (200, 303)
    user = _user(app)
    if which == "disable":
        assert user.totp_enabled is False and user.recovery_codes is None
    else:
        assert user.totp_enabled is True and len(user.recovery_codes or []) == 10
