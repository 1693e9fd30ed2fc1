"""Overview, CSV export, the webhook inbox with reprocess, API keys, sign-in throttling."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.api.keys import hash_key
from app.dashboard.queries import overview
from app.extensions import db
from app.models import ApiKey, AuditEntry, Refund, WebhookEvent
from tests.integration.dashboard.conftest import (
    HX,
    PASSWORD,
    build_app,
    csrf_token,
    dispose,
    hx_headers,
    make_payment,
    sandbox_payment,
)


def test_overview_counts_volume_and_success_per_day(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    now = datetime.now(UTC)
    with dash_app.app_context():
        make_payment(amount=1000, created_at=now)
        make_payment(amount=2000, created_at=now - timedelta(days=1))
        make_payment(amount=500, status="failed", created_at=now - timedelta(days=1))
        make_payment(
            amount=700, currency="EUR", created_at=now - timedelta(days=5), gateway="stripe"
        )
        make_payment(amount=9999, created_at=now - timedelta(days=40))  # outside 30 days
        week = overview(7)
        assert week.total_count == 4 and week.total_succeeded == 3
        assert week.chart_currency == "USD"
        assert [p.volume for p in week.series][-2:] == [2000, 1000]
        assert [p.count for p in week.series][-2:] == [2, 1]
        assert {c["currency"]: c["volume"] for c in week.by_currency} == {"USD": 3000, "EUR": 700}
        assert {g["gateway"]: g["count"] for g in week.by_gateway} == {"sandbox": 3, "stripe": 1}
        assert overview(90).total_count == 5
    html = client.get("/dashboard/?days=7").get_data(as_text=True)
    assert "75.0%" in html  # 3 of 4 succeeded
    assert "<svg" in html and 'role="img"' in html and "<rect" in html
    assert "$30.00" in html and "€7.00" in html
    fragment = client.get("/dashboard/?days=90&currency=EUR", headers=HX).get_data(as_text=True)
    assert "<html" not in fragment and "Last 90 days" in fragment
    assert "Captured volume per day in EUR" in fragment
    assert client.get("/dashboard/?days=13").status_code == 200  # falls back to 30


def test_csv_export_streams_the_filtered_payments(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    with dash_app.app_context():
        for i in range(1203):  # more than one streamed chunk
            make_payment(amount=100 + i, currency="EUR" if i % 3 == 0 else "USD", commit=False)
        make_payment(
            email='=HYPERLINK("http://evil")@x.test', currency="JPY", amount=1800, commit=False
        )
        db.session.commit()
    response = client.get("/dashboard/payments/export.csv?currency=EUR")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 401 and {r["currency"] for r in rows} == {"EUR"}
    assert len({r["payment_id"] for r in rows}) == 401
    assert rows[0]["amount"].count(".") == 1 and rows[0]["order_id"].startswith("ord_")
    everything = client.get("/dashboard/payments/export.csv").get_data(as_text=True)
    all_rows = list(csv.DictReader(io.StringIO(everything)))
    assert len(all_rows) == 1204
    jpy = next(r for r in all_rows if r["currency"] == "JPY")
    assert jpy["amount"] == "1800"
    assert jpy["customer_email"].startswith("'=")  # never a live formula in a spreadsheet


def test_webhook_inbox_and_reprocess(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client)
    with dash_app.app_context():
        event = (
            db.session.execute(select(WebhookEvent).order_by(WebhookEvent.id.desc()))
            .scalars()
            .first()
        )
        assert event is not None
        # An event that failed for good (e.g. a bug since fixed): reprocessable by hand.
        event.status, event.attempts, event.last_error = "dead", 8, "RuntimeError: boom"
        db.session.commit()
        row_id = event.id
    page = client.get("/dashboard/webhooks").get_data(as_text=True)
    assert "RuntimeError: boom" in page and "Raw payload" in page and pid in page
    assert f'hx-post="/dashboard/webhooks/{row_id}/reprocess"' in page
    assert (
        client.get("/dashboard/webhooks?status=dead").get_data(as_text=True).count('<tr id="event-')
        == 1
    )
    response = client.post(
        f"/dashboard/webhooks/{row_id}/reprocess", headers=hx_headers(client, "/dashboard/webhooks")
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Reprocessed." in html
    assert 'data-status="processed"' in html and "<html" not in html
    with dash_app.app_context():
        refreshed = db.session.get(WebhookEvent, row_id)
        assert refreshed is not None and refreshed.status == "processed"
        assert refreshed.attempts == 9
        # The trail names the merchant who pressed the button.
        asked = db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "webhook.reprocess_requested")
        ).all()
        assert [(e.actor_type, e.from_state, e.object_id) for e in asked] == [
            ("user", "dead", str(row_id))
        ]
    assert (
        client.post(
            "/dashboard/webhooks/999999/reprocess",
            headers=hx_headers(client, "/dashboard/webhooks"),
        ).status_code
        == 404
    )


def test_api_keys_create_shown_once_then_revoke(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    headers = hx_headers(client, "/dashboard/api-keys")
    response = client.post(
        "/dashboard/api-keys", data={"name": "shop backend", "scope": "write"}, headers=headers
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 201
    secret = re.search(r'id="new-secret" type="text" readonly value="([^"]+)"', html)
    assert secret and re.fullmatch(r"kassa_[0-9a-f]{12}_[A-Za-z0-9_-]{40,64}", secret.group(1))
    assert response.headers["Cache-Control"] == "no-store"
    with dash_app.app_context():
        key = db.session.execute(select(ApiKey)).scalar_one()
        assert key.key_hash == hash_key(secret.group(1)) and secret.group(1) not in key.key_hash
        assert secret.group(1).startswith(key.prefix)
        prefix = key.prefix
    listing = client.get("/dashboard/api-keys").get_data(as_text=True)
    assert "shop backend" in listing and secret.group(1) not in listing  # shown once
    empty = client.post(
        "/dashboard/api-keys", data={"name": "", "scope": "write"}, headers=headers
    ).get_data(as_text=True)
    assert "Give the key a name." in empty
    revoked = client.post(f"/dashboard/api-keys/{prefix}/revoke", headers=headers)
    assert "revoked" in revoked.get_data(as_text=True)
    with dash_app.app_context():
        key = db.session.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one()
        assert key.revoked_at is not None


def test_sign_in_is_throttled_per_account_and_per_address(tmp_path: object) -> None:
    app = build_app(
        tmp_path,
        RATELIMIT_ENABLED=True,
        LOGIN_LIMIT_ACCOUNT="3 per 15 minutes",
        LOGIN_LIMIT_ADDRESS="5 per 15 minutes",
    )
    try:
        client = app.test_client()

        def attempt(email: str, password: str, addr: str = "10.0.0.1") -> int:
            token = csrf_token(client)
            return client.post(
                "/auth/login",
                data={"email": email, "password": password, "csrf_token": token},
                environ_base={"REMOTE_ADDR": addr},
            ).status_code

        assert [attempt("owner@shop.test", "wrong") for _ in range(3)] == [401, 401, 401]
        # This address pauses for the account, even with the right password...
        assert attempt("OWNER@shop.test ", PASSWORD) == 429
        # ...but the owner elsewhere still signs in, and so do other accounts from here.
        assert attempt("owner@shop.test", PASSWORD, addr="10.0.0.9") == 303
        client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/dashboard/")})
        assert attempt("admin@shop.test", PASSWORD) == 303
        # Per address: spraying many accounts from one address stops too.
        client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/dashboard/")})
        codes = [attempt(f"nobody{i}@shop.test", "wrong", addr="10.0.0.2") for i in range(6)]
        assert codes == [401] * 5 + [429]
        assert attempt("viewer@shop.test", PASSWORD, addr="10.0.0.2") == 429
        assert attempt("viewer@shop.test", PASSWORD, addr="10.0.0.3") == 303
    finally:
        dispose(app)


def test_refund_rows_keep_who_asked(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    pid = sandbox_payment(dash_app, client)
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    token = re.search(r'<input[^>]*name="token"[^>]*value="([^"]+)"', page)
    assert token
    client.post(
        f"/dashboard/payments/{pid}/refund",
        data={"amount": "5", "reason": "other", "token": token.group(1), "confirm": "yes"},
        headers=hx_headers(client, f"/dashboard/payments/{pid}"),
    )
    with dash_app.app_context():
        refund = db.session.execute(select(Refund)).scalar_one()
        admin_id = db.session.execute(
            db.text("SELECT id FROM users WHERE email='admin@shop.test'")
        ).scalar_one()
        assert refund.requested_by == f"user:{admin_id}"
        assert refund.idempotency_key.startswith(f"dash-{pid}-")
