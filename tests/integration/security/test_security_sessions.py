"""Sessions, passwords, sign-in throttling and production start-up checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD, csrf_from, login

from app.auth.passwords import password_problem
from app.config import check_production, load_settings


def _signed_in(client: Any) -> bool:
    return client.get("/auth/2fa/setup").status_code == 200


def _cookie(client: Any) -> str:
    cookie = client.get_cookie("kassa_session")
    assert cookie is not None
    return str(cookie.value)


# --------------------------------------------------------------------------- cookies


def test_production_session_cookie_is_host_prefixed_secure_httponly_lax(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_app: Any
) -> None:
    monkeypatch.setenv("KASSA_ENV", "production")
    settings = load_settings(tmp_path)
    assert settings["SESSION_COOKIE_NAME"] == "__Host-kassa_session"
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_HTTPONLY"] is True
    assert settings["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert settings["SESSION_COOKIE_PATH"] == "/" and settings["SESSION_COOKIE_DOMAIN"] is None
    assert settings["HSTS_ENABLED"] is True and settings["REQUIRE_2FA_FOR_OWNERS"] is True

    app = make_app(
        **{
            k: settings[k]
            for k in (
                "SESSION_COOKIE_NAME",
                "SESSION_COOKIE_SECURE",
                "SESSION_COOKIE_PATH",
                "SESSION_COOKIE_DOMAIN",
            )
        }
    )
    client = app.test_client()
    response = client.get("/auth/login", base_url="https://localhost")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-kassa_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in header
    assert "Domain=" not in header


# --------------------------------------------------------------------------- lifetimes


def test_idle_timeout_ends_the_session(app: Any, client: Any) -> None:
    login(client)
    assert _signed_in(client)
    with client.session_transaction() as session:
        session["kassa_seen_at"] = int(time.time()) - 31 * 60
    assert not _signed_in(client)


def test_activity_keeps_the_session_but_the_absolute_limit_ends_it(app: Any, client: Any) -> None:
    login(client)
    with client.session_transaction() as session:
        session["kassa_seen_at"] = int(time.time()) - 20 * 60
        session["kassa_login_at"] = int(time.time()) - 11 * 3600
    assert _signed_in(client)  # 20 minutes idle is fine, and refreshes last-seen
    with client.session_transaction() as session:
        assert time.time() - session["kassa_seen_at"] < 5
        session["kassa_login_at"] = int(time.time()) - 12 * 3600 - 1
    assert not _signed_in(client)


def test_self_polling_htmx_requests_do_not_keep_an_idle_session_alive(
    app: Any, client: Any
) -> None:
    login(client)
    with client.session_transaction() as session:
        session["kassa_seen_at"] = int(time.time()) - 29 * 60
    for _ in range(3):
        client.get("/", headers={"HX-Request": "true"})
    with client.session_transaction() as session:
        assert time.time() - session["kassa_seen_at"] > 28 * 60
    client.get("/")  # a real page view is activity
    with client.session_transaction() as session:
        assert time.time() - session["kassa_seen_at"] < 5


def test_a_session_without_login_time_is_not_trusted(app: Any, client: Any) -> None:
    login(client)
    with client.session_transaction() as session:
        del session["kassa_login_at"]
    assert not _signed_in(client)


# --------------------------------------------------------------------------- rotation


def test_login_rotates_the_session_and_drops_anonymous_data(app: Any, client: Any) -> None:
    client.get("/auth/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    before = _cookie(client)
    login(client)
    assert _cookie(client) != before
    with client.session_transaction() as session:
        assert "planted" not in session


def test_logout_invalidates_the_session_on_the_server(app: Any, client: Any) -> None:
    login(client)
    stolen = _cookie(client)
    page = client.get("/auth/2fa/setup").get_data(as_text=True)
    assert client.post("/auth/logout", data={"csrf_token": csrf_from(page)}).status_code == 303
    assert not _signed_in(client)
    replay = app.test_client()
    replay.set_cookie("kassa_session", stolen)
    assert not _signed_in(replay), "a copied cookie must not outlive the logout"


def test_role_change_through_the_cli_ends_existing_sessions(
    app: Any, client: Any, runner: Any
) -> None:
    login(client)
    assert _signed_in(client)
    result = runner.invoke(
        args=["create-merchant", OWNER_EMAIL, "--role", "viewer", "--password", OWNER_PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert not _signed_in(client)


def test_role_change_function_rotates_the_token(app: Any, client: Any) -> None:
    from app.auth.service import change_role
    from app.extensions import db
    from app.models import AuditEntry, User
    from app.payments.audit import SYSTEM

    login(client)
    with app.app_context():
        user = db.session.query(User).filter_by(email=OWNER_EMAIL).one()
        change_role(user.id, "admin", SYSTEM)
        entry = db.session.query(AuditEntry).filter_by(action="user.role_changed").one()
        assert (entry.from_state, entry.to_state) == ("owner", "admin")
    assert not _signed_in(client)


# --------------------------------------------------------------------------- passwords


@pytest.mark.parametrize(
    "password",
    [
        "short-pass1",
        "password1234",
        "iloveyou2024!",
        "qwertyuiop1234",
        "1q2w3e4r5t6y",
        "passwordpassword",
        "aaaaaaaaaaaaaaaa",
        "Sunshine!!1234",
    ],
)
def test_short_and_common_passwords_are_refused(password: str) -> None:
    assert password_problem(password) is not None


def test_a_long_uncommon_password_is_accepted() -> None:
    assert password_problem("plum orchard tractor 1987") is None
    assert password_problem("owner.person-2024", email="owner.person@x.example") is not None


def test_cli_refuses_a_common_password(runner: Any) -> None:
    result = runner.invoke(
        args=["create-merchant", "new@x.example", "--password", "password123456"]
    )
    assert result.exit_code != 0
    assert "too common" in result.output


# --------------------------------------------------------------------------- throttling


def _attempt(client: Any, email: str, password: str) -> Any:
    page = client.get("/auth/login").get_data(as_text=True)
    return client.post(
        "/auth/login", data={"email": email, "password": password, "csrf_token": csrf_from(page)}
    )


def test_failed_sign_ins_pause_the_guesser_not_the_owner(app: Any, client: Any) -> None:
    texts = [
        _attempt(client, OWNER_EMAIL, "wrong password here").get_data(as_text=True)
        for _ in range(5)
    ]
    assert "4 more tries before signing in pauses for 30 seconds" in texts[0]
    assert "1 more try before signing in pauses" in texts[3]
    assert "paused for 30 seconds" in texts[4]
    blocked = _attempt(client, OWNER_EMAIL, OWNER_PASSWORD)  # even the right one, from here
    assert blocked.status_code == 429
    text = blocked.get_data(as_text=True)
    assert "Too many failed sign-in attempts" in text and "30 seconds" in text
    assert "reset your password" in text
    assert not _signed_in(client)
    # Another account from the same address is not paused by this one's failures.
    assert _attempt(client, "someone@else.example", "whatever long pw").status_code == 401
    # The owner, at another address, signs in: a guesser cannot lock them out.
    owner = app.test_client()
    page = owner.get("/auth/login", environ_base={"REMOTE_ADDR": "10.7.7.7"})
    response = owner.post(
        "/auth/login",
        environ_base={"REMOTE_ADDR": "10.7.7.7"},
        data={
            "email": OWNER_EMAIL,
            "password": OWNER_PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 303


def test_failed_sign_ins_are_throttled_per_address(make_app: Any) -> None:
    app = make_app(LOGIN_LIMIT_ADDRESS="3 per 15 minutes", LOGIN_LIMIT_ACCOUNT="100 per hour")
    client = app.test_client()
    for n in range(3):
        assert _attempt(client, f"user{n}@spray.example", "Winter2024!!!").status_code == 401
    assert _attempt(client, OWNER_EMAIL, OWNER_PASSWORD).status_code == 429
    other_address = app.test_client()
    page = other_address.get("/auth/login", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    response = other_address.post(
        "/auth/login",
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
        data={
            "email": OWNER_EMAIL,
            "password": OWNER_PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 303


def test_success_clears_the_account_count(app: Any, client: Any) -> None:
    for _ in range(4):
        _attempt(client, OWNER_EMAIL, "wrong password here")
    assert login(client).status_code == 303
    other = app.test_client()
    for _ in range(4):
        assert _attempt(other, OWNER_EMAIL, "wrong password here").status_code == 401


# --------------------------------------------------------------------------- production


def _production(**overrides: Any) -> dict[str, Any]:
    config = {
        "KASSA_ENV": "production",
        "SECRET_KEY": "Zq8v" * 12,
        "SANDBOX_ENABLED": False,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_NAME": "__Host-kassa_session",
        "PUBLIC_BASE_URL": "https://shop.example.com",
        "METRICS_TOKEN": "mt_" + "R4nd0mScr4pe" * 2,
    }
    config.update(overrides)
    return config


def test_production_starts_with_real_secrets() -> None:
    check_production(_production())
    check_production(
        _production(
            STRIPE_SECRET_KEY="sk_live_" + "k3Yq9" * 8, STRIPE_WEBHOOK_SECRET="whsec_" + "Hq2p8" * 6
        )
    )
    check_production(
        _production(
            PAYPAL_CLIENT_ID="AbC123",
            PAYPAL_CLIENT_SECRET="EJq7" * 10,
            PAYPAL_WEBHOOK_ID="8PT597110X687430LKGECATA",
            PAYPAL_API_BASE="https://api-m.paypal.com",
        )
    )


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"SECRET_KEY": "change-me-change-me-change-me-change-me"}, "SECRET_KEY"),
        ({"SECRET_KEY": "test-secret-key-not-for-production-0123456789abcdef"}, "SECRET_KEY"),
        ({"SECRET_KEY": "a" * 64}, "SECRET_KEY"),
        ({"STRIPE_SECRET_KEY": "sk_live_" + "x" * 30}, "STRIPE_WEBHOOK_SECRET"),
        ({"STRIPE_SECRET_KEY": "sk_live_...", "STRIPE_WEBHOOK_SECRET": "whsec_..."}, "placeholder"),
        ({"SANDBOX_ENABLED": True}, "SANDBOX_WEBHOOK_SECRET"),
        ({"SANDBOX_ENABLED": True, "SANDBOX_WEBHOOK_SECRET": "changeme"}, "SANDBOX_WEBHOOK_SECRET"),
        ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE"),
        ({"SESSION_COOKIE_NAME": "session"}, "__Host-"),
        ({"PUBLIC_BASE_URL": "http://shop.example.com"}, "https"),
        ({"METRICS_TOKEN": None}, "METRICS_TOKEN"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
        ({"METRICS_TOKEN": "change-this-metrics-token"}, "METRICS_TOKEN"),
        ({"PAYPAL_CLIENT_ID": "AbC123"}, "PAYPAL_CLIENT_SECRET and PAYPAL_WEBHOOK_ID"),
        (
            {
                "PAYPAL_CLIENT_ID": "AbC123",
                "PAYPAL_CLIENT_SECRET": "changeme",
                "PAYPAL_WEBHOOK_ID": "WH1",
                "PAYPAL_API_BASE": "https://api-m.paypal.com",
            },
            "PAYPAL_CLIENT_SECRET",
        ),
        (
            {
                "PAYPAL_CLIENT_ID": "AbC123",
                "PAYPAL_CLIENT_SECRET": "EJq7" * 10,
                "PAYPAL_WEBHOOK_ID": "WH1",
                "PAYPAL_API_BASE": "http://127.0.0.1:8766",
            },
            "PAYPAL_API_BASE",
        ),
        (
            {
                "PAYPAL_CLIENT_ID": "AbC123",
                "PAYPAL_CLIENT_SECRET": "EJq7" * 10,
                "PAYPAL_WEBHOOK_ID": "WH1",
                "PAYPAL_API_BASE": "https://api-m.paypal.com",
                "PAYPAL_WEBHOOK_CA_FILE": "/tmp/root.pem",
            },
            "PAYPAL_WEBHOOK_CA_FILE",
        ),
    ],
)
def test_production_refuses_default_or_missing_secrets(
    overrides: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(RuntimeError, match="Refusing to start") as info:
        check_production(_production(**overrides))
    assert complaint in str(info.value)


def test_create_app_refuses_production_without_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app import create_app

    monkeypatch.setenv("KASSA_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite'}")
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app()


def test_create_app_refuses_production_without_a_metrics_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app import create_app

    for name, value in _production(SANDBOX_ENABLED="false").items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite'}")
    with pytest.raises(RuntimeError, match="METRICS_TOKEN must be set") as info:
        create_app()
    assert "SECRET_KEY" not in str(info.value)  # only the missing token stands in the way
