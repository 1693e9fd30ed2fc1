"""Twenty refund submissions of the full amount at the same moment, on PostgreSQL
(row locks, real concurrency): exactly one refund is made."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import Payment, Refund, User
from tests.integration.dashboard.conftest import (
    PASSWORD_HASH,
    deliver_webhooks,
    hx_headers,
    login,
    sandbox_payment,
)

pytestmark = pytest.mark.postgres
N = 20


def _token(client: FlaskClient, pid: str) -> str:
    html = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    match = re.search(r'<input[^>]*name="token"[^>]*value="([^"]+)"', html)
    assert match
    return match.group(1)


def _storm(app: Flask, pid: str, same_form: bool) -> list[tuple[int, str]]:
    """N signed-in merchants press "Confirm refund" for the full amount together."""
    # One user each: signing in rotates the user's session token, ending older sessions.
    with app.app_context():
        for i in range(N):
            db.session.add(
                User(
                    email=f"staff{i}@shop.test",
                    password_hash=PASSWORD_HASH,
                    role="owner" if i % 2 else "admin",
                    session_token=secrets.token_hex(16),
                )
            )
        db.session.commit()
    clients = [login(app.test_client(), f"staff{i}") for i in range(N)]
    shared = _token(clients[0], pid)
    prepared = []
    for client in clients:
        headers = hx_headers(client, f"/dashboard/payments/{pid}")
        token = shared if same_form else _token(client, pid)
        prepared.append((client, headers, token))
    barrier = threading.Barrier(N)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def submit(client: FlaskClient, headers: dict[str, str], token: str) -> None:
        barrier.wait()
        response = client.post(
            f"/dashboard/payments/{pid}/refund",
            data={"amount": "25.00", "reason": "duplicate", "token": token, "confirm": "yes"},
            headers=headers,
        )
        with lock:
            results.append((response.status_code, response.get_data(as_text=True)))

    threads = [threading.Thread(target=submit, args=args) for args in prepared]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == N
    return results


@pytest.mark.parametrize("same_form", [False, True], ids=["twenty-forms", "one-form-twenty-times"])
def test_twenty_concurrent_full_refunds_make_one(
    make_app: Callable[..., Flask], pg_url: str, same_form: bool
) -> None:
    app = make_app(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": N + 5, "max_overflow": 5},
    )
    client = login(app.test_client(), "owner")
    pid = sandbox_payment(app, client)
    results = _storm(app, pid, same_form)
    assert all(code == 200 for code, _ in results), [c for c, _ in results]
    refused = [body for _, body in results if "can still be refunded" in body]
    # A refused answer shows the timeline too, and so the one refund that was made.
    made = [
        body
        for _, body in results
        if "Refund of $25.00 requested" in body and "can still be refunded" not in body
    ]
    if same_form:
        assert len(made) == N  # every submission answers with the same refund
    else:
        assert len(made) == 1 and len(refused) == N - 1
    deliver_webhooks(app, client)
    with app.app_context():
        refunds = db.session.execute(select(Refund)).scalars().all()
        assert len(refunds) == 1 and refunds[0].amount == 2500
        payment = db.session.execute(select(Payment).where(Payment.public_id == pid)).scalar_one()
        assert payment.status == "refunded" and payment.amount_refunded == 2500
