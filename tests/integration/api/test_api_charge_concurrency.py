"""Charging saved methods under concurrency on PostgreSQL, over HTTP: twenty charges with
twenty keys make twenty payments, each audited; twenty with one key make one."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Payment, SandboxSession, SavedPaymentMethod
from tests.integration.api.conftest import checkout_body, new_key
from tests.integration.conftest import wait_for


def _saved_method(server: Any, token: str) -> str:
    """Buy with "save" ticked over HTTP, pay at the sandbox; the saved method's id."""
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created = requests.post(
        f"{server.url}/api/v1/checkout-sessions",
        data=json.dumps(checkout_body(save_payment_method=True)),
        headers=auth,
        timeout=30,
    ).json()["data"]
    with server.app.app_context():
        processor = server.app.extensions["kassa_gateways"]["sandbox"].processor
        processor.complete(created["payment"]["gateway_reference"], "succeed")

    def saved() -> str | None:
        with server.app.app_context():
            return db.session.execute(select(SavedPaymentMethod.public_id)).scalar_one_or_none()

    method = wait_for(saved)
    assert method
    return str(method)


def _burst(server: Any, token: str, method: str, keys: list[str]) -> list[requests.Response]:
    barrier = threading.Barrier(len(keys))
    body = json.dumps(
        {"payment_method_id": method, "amount": 1500, "currency": "USD", "description": "box"}
    )

    def send(key: str) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        with requests.Session() as http:
            barrier.wait(10)
            return http.post(
                f"{server.url}/api/v1/payments/charge", data=body, headers=headers, timeout=60
            )

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(send, keys))


def _charges(server: Any) -> list[Payment]:
    with server.app.app_context():
        rows = db.session.execute(
            select(Payment).where(Payment.saved_method_id.is_not(None))
        ).scalars()
        return list(rows)


@pytest.mark.postgres
def test_twenty_keys_make_twenty_audited_payments(serve: Callable[..., Any], pg_url: str) -> None:
    server = serve(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 20, "max_overflow": 20},
    )
    token = new_key(server.app)
    method = _saved_method(server, token)
    responses = _burst(server, token, method, [f"many-{i}" for i in range(20)])
    assert [r.status_code for r in responses] == [201] * 20, [r.text[:200] for r in responses]
    ids = {r.json()["data"]["id"] for r in responses}
    assert len(ids) == 20
    assert {r.json()["data"]["status"] for r in responses} == {"succeeded"}
    payments = _charges(server)
    assert {p.public_id for p in payments} == ids
    with server.app.app_context():
        for payment_id in (p.id for p in payments):
            actions = db.session.execute(
                select(AuditEntry.action, AuditEntry.to_state).where(
                    AuditEntry.payment_id == payment_id
                )
            ).all()
            assert ("payment.created", "created") in actions
            assert ("payment.status_changed", "succeeded") in actions
        # Twenty charges at the gateway, each with its own key.
        assert (
            db.session.scalar(
                select(func.count(func.distinct(SandboxSession.idempotency_key))).where(
                    SandboxSession.idempotency_key.like("kassa-charge-%")
                )
            )
            == 20
        )


@pytest.mark.postgres
def test_twenty_with_one_key_make_one_payment(serve: Callable[..., Any], pg_url: str) -> None:
    server = serve(
        SQLALCHEMY_DATABASE_URI=pg_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 20, "max_overflow": 20},
    )
    token = new_key(server.app)
    method = _saved_method(server, token)
    responses = _burst(server, token, method, ["one-key"] * 20)
    statuses = {r.status_code for r in responses}
    assert statuses <= {201, 409}, [r.text[:200] for r in responses]
    created = {r.json()["data"]["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_progress"
    assert len(_charges(server)) == 1
    with server.app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(SandboxSession)
                .where(SandboxSession.idempotency_key.like("kassa-charge-%"))
            )
            == 1
        )
