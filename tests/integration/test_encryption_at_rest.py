"""Encryption at rest (app/crypto.py): what the database holds, search by email, key
rotation with `flask rotate-encryption-key`, wrong keys, and the migration that encrypts
existing rows. On SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from flask import Flask
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from app.auth.mfa import begin_enrolment
from app.crypto import DecryptionError, Keyring, email_hash, rotate_all
from app.extensions import db
from app.models import Order, Payment, Receipt, SandboxSession, User, WebhookEndpoint
from app.payments.audit import CUSTOMER
from app.payments.checkout import create_checkout
from app.payments.orders import ItemRequest
from app.payments.outgoing import secrets as endpoint_secrets
from tests.conftest import _migrations_directory, _preserve_logging
from tests.integration.api.conftest import Api, new_key

BACKENDS = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
INDEX_KEY = "blind-index-key-for-integration-tests-0123456789"
EMAIL = "Cy.Young@Example.com"
NAME = "Cy Young-Plaintext"
MIGRATION = "99f90d3538bc"  # the migration that encrypts existing rows

# Every encrypted column, read with plain SQL.
RAW = {
    "orders": ("customer_email", "customer_name"),
    "payments": ("customer_email",),
    "sandbox_sessions": ("customer_email",),
    "receipts": ("recipient",),
    "users": ("totp_secret",),
    "webhook_endpoints": ("secret", "previous_secret"),
    # The checkout's customer (issue 18); saved methods' tokens and gateway customer ids
    # are checked in tests/integration/api/test_api_saved_methods.py.
    "customers": ("email", "name"),
}


def make_data(app: Flask) -> dict[str, str]:
    """A paid purchase (order, payment, sandbox session, receipt), a webhook endpoint with
    a rotated secret and an owner's pending TOTP secret; their plaintext values."""
    with app.test_request_context():
        payment = create_checkout([ItemRequest("tee-usd", 1)], EMAIL, NAME, "sandbox", CUSTOMER)
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        processor.complete(payment.gateway_reference, "succeed")
        client = app.test_client()
        for body, headers in processor.undelivered:
            assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
        processor.undelivered.clear()
        endpoint = WebhookEndpoint(url="https://hooks.example.com/kassa", event_types=[])
        first = endpoint_secrets.set_new(endpoint)
        db.session.add(endpoint)
        db.session.commit()
        second = endpoint_secrets.rotate(endpoint, datetime.now(UTC))
        db.session.commit()
        user = db.session.execute(select(User)).scalars().first()
        assert user is not None
        totp = begin_enrolment(user)
        assert db.session.execute(select(Receipt)).scalars().first() is not None
    return {"email": EMAIL.lower(), "name": NAME, "secret": second, "previous": first, "totp": totp}


def raw_values(app: Flask) -> dict[str, list[str]]:
    """Every non-null stored value of the encrypted columns, as the database holds it."""
    found: dict[str, list[str]] = {}
    with app.app_context():
        tables = set(sa_inspect(db.engine).get_table_names())  # fewer below a later migration
        for table, columns in RAW.items():
            if table not in tables:
                continue
            for column in columns:
                found[f"{table}.{column}"] = [
                    v
                    for v in db.session.execute(text(f"SELECT {column} FROM {table}")).scalars()
                    if v is not None
                ]
    return found


def raw_rows_text(app: Flask) -> str:
    with app.app_context():
        return " ".join(
            str(tuple(row))
            for table in RAW
            for row in db.session.execute(text(f"SELECT * FROM {table}")).all()
        )


@BACKENDS
def test_the_database_holds_no_plaintext_and_the_app_reads_it_back(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    plain = make_data(app)
    stored = raw_values(app)
    for name, values in stored.items():
        assert values, f"{name} has no rows to check"
        for value in values:
            assert value.startswith("gAAAAA"), name
            Fernet(OLD).decrypt(value.encode())  # the first key made it
    everything = raw_rows_text(app).lower()
    for secret in plain.values():
        assert secret.lower() not in everything
    assert "cy.young" not in everything and "plaintext" not in everything
    with app.app_context():
        order = db.session.execute(select(Order)).scalar_one()
        assert (order.customer_email, order.customer_name) == (plain["email"], NAME)
        assert (
            order.customer_email_hash
            == email_hash(EMAIL)
            == Keyring.from_settings(NEW, INDEX_KEY).email_hash(" cy.young@example.COM")
        )
        assert db.session.execute(select(Payment.customer_email)).scalar_one() == plain["email"]
        assert (
            db.session.execute(select(SandboxSession.customer_email)).scalar_one()
            == (plain["email"])
        )
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        assert endpoint_secrets.signing_secrets(endpoint, datetime.now(UTC)) == [
            plain["secret"],
            plain["previous"],
        ]
        assert db.session.execute(select(User.totp_secret)).scalars().first() == plain["totp"]


@BACKENDS
def test_search_by_email_is_exact_and_ignores_case(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    make_data(app)
    api = Api(app, new_key(app, "read"))
    for query in ("cy.young@example.com", "CY.Young@example.COM"):
        orders = api.get(f"/orders?email={query}").get_json()["data"]
        payments = api.get(f"/payments?email={query}").get_json()["data"]
        assert [o["customer"]["email"] for o in orders] == ["cy.young@example.com"]
        assert [p["id"] for p in payments] and len(payments) == 1
    # Exact match only: a part of the address finds nothing (no substring search).
    assert api.get("/orders?email=cy.young@example").get_json()["data"] == []
    assert api.get("/payments?email=young@example.com").get_json()["data"] == []


def _endpoint_secrets(app: Flask) -> list[str]:
    with app.app_context():
        endpoint = db.session.execute(select(WebhookEndpoint)).scalar_one()
        return endpoint_secrets.signing_secrets(endpoint, datetime.now(UTC))


@BACKENDS
def test_rotation_re_encrypts_everything_then_the_old_key_can_go(
    make_app: Callable[..., Flask],
) -> None:
    before = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    plain = make_data(before)
    tokens_before = raw_values(before)

    both = make_app(ENCRYPTION_KEYS=f"{NEW},{OLD}", BLIND_INDEX_KEY=INDEX_KEY)
    result = both.test_cli_runner().invoke(args=["rotate-encryption-key", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypting" in result.output  # the progress bar
    assert "0 email hash(es) recomputed" in result.output  # BLIND_INDEX_KEY unchanged
    assert "the other keys can be removed" in result.output
    count = sum(len(v) for v in tokens_before.values())
    assert f"{count} value(s) re-encrypted" in result.output

    for name, values in raw_values(both).items():
        assert len(values) == len(tokens_before[name])
        for value in values:
            Fernet(NEW).decrypt(value.encode())
            with pytest.raises(InvalidToken):
                Fernet(OLD).decrypt(value.encode())

    # Idempotent: a second run finds nothing to do.
    again = both.test_cli_runner().invoke(args=["rotate-encryption-key"])
    assert again.exit_code == 0 and "0 value(s) re-encrypted" in again.output

    # The old key dropped: everything still reads, search still finds.
    after = make_app(ENCRYPTION_KEYS=NEW, BLIND_INDEX_KEY=INDEX_KEY)
    assert _endpoint_secrets(after) == [plain["secret"], plain["previous"]]
    with after.app_context():
        order = db.session.execute(
            select(Order).where(Order.customer_email_hash == email_hash(EMAIL))
        ).scalar_one()
        assert (order.customer_email, order.customer_name) == (plain["email"], NAME)
        assert db.session.execute(select(User.totp_secret)).scalars().first() == plain["totp"]
        assert db.session.execute(select(Receipt.recipient)).scalar_one() == plain["email"]


@BACKENDS
def test_an_interrupted_rotation_resumes_where_it_stopped(
    make_app: Callable[..., Flask],
) -> None:
    before = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    make_data(before)
    total = sum(len(v) for v in raw_values(before).values())
    both = make_app(ENCRYPTION_KEYS=f"{NEW},{OLD}", BLIND_INDEX_KEY=INDEX_KEY)

    class Stop(Exception):
        pass

    def stop_after_first_batch(_n: int) -> None:
        raise Stop

    with both.app_context():
        ring = both.extensions["kassa_crypto"]
        with pytest.raises(Stop):
            rotate_all(db.engine, db.metadata, ring, batch_size=1, progress=stop_after_first_batch)
        first = sum(1 for values in raw_values(both).values() for v in values if ring.is_current(v))
        assert 1 <= first < total  # one batch committed, the rest left
        rest = rotate_all(db.engine, db.metadata, ring, batch_size=2)
        assert rest.reencrypted == total - first and rest.changed_meanwhile == 0
    assert all(
        Keyring.from_settings(NEW, INDEX_KEY).is_current(v)
        for values in raw_values(both).values()
        for v in values
    )


@BACKENDS
def test_a_new_blind_index_key_is_applied_by_the_rotation(make_app: Callable[..., Flask]) -> None:
    before = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    make_data(before)
    changed = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY + "-new")
    api = Api(changed, new_key(changed, "read"))
    assert api.get(f"/orders?email={EMAIL}").get_json()["data"] == []  # old hashes
    result = changed.test_cli_runner().invoke(args=["rotate-encryption-key"])
    assert result.exit_code == 0, result.output
    # orders, payments and the checkout's customer (customers.email_hash)
    assert "0 value(s) re-encrypted with the first key, 3 email hash(es) recomputed" in (
        result.output
    )
    assert len(api.get(f"/orders?email={EMAIL}").get_json()["data"]) == 1
    assert len(api.get(f"/payments?email={EMAIL}").get_json()["data"]) == 1


@BACKENDS
def test_a_wrong_key_fails_loudly(make_app: Callable[..., Flask]) -> None:
    app = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    plain = make_data(app)
    wrong = make_app(ENCRYPTION_KEYS=NEW, BLIND_INDEX_KEY=INDEX_KEY)
    with wrong.app_context():
        with pytest.raises(DecryptionError, match="ENCRYPTION_KEYS"):
            db.session.execute(select(Order)).scalar_one()
        db.session.rollback()
        with pytest.raises(DecryptionError, match="ENCRYPTION_KEYS"):
            db.session.execute(select(WebhookEndpoint.secret)).scalar_one()
        db.session.rollback()
    # The rotation refuses too, and changes nothing.
    stored = raw_values(app)
    result = wrong.test_cli_runner().invoke(args=["rotate-encryption-key"])
    assert result.exit_code != 0 and isinstance(result.exception, DecryptionError)
    assert raw_values(app) == stored
    # Over HTTP: an error, never another customer's or an empty value.
    api = Api(wrong, new_key(wrong, "read"))
    wrong.config["PROPAGATE_EXCEPTIONS"] = False
    response = api.get("/orders")
    assert response.status_code == 500
    assert plain["email"] not in response.get_data(as_text=True)


@BACKENDS
def test_the_migration_encrypts_existing_rows(make_app: Callable[..., Flask]) -> None:
    """Upgrade from the previous head with rows present (more than one batch of them)."""
    import flask_migrate

    app = make_app(ENCRYPTION_KEYS=OLD, BLIND_INDEX_KEY=INDEX_KEY)
    plain = make_data(app)
    from alembic.script import ScriptDirectory

    directory = _migrations_directory(app)
    previous = ScriptDirectory(directory).get_revision(MIGRATION).down_revision
    assert isinstance(previous, str)
    with app.app_context(), _preserve_logging(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'get_engine' is deprecated")
        # Down to the revision before it: the downgrade decrypts what the app wrote.
        flask_migrate.downgrade(directory=directory, revision=previous)
        db.session.remove()
        stored = raw_values(app)
        assert stored["orders.customer_email"] == [plain["email"]]
        assert stored["webhook_endpoints.secret"] == [plain["secret"]]
        assert stored["users.totp_secret"] == [plain["totp"]]
        # 1,100 more plaintext orders and payments: the migration works in batches of 500.
        now = datetime.now(UTC)
        with db.engine.begin() as conn:
            order_ids = []
            for i in range(1100):
                order_ids.append(
                    conn.execute(
                        text(
                            "INSERT INTO orders (public_id, status, currency, total_amount, "
                            "customer_email, customer_name, stock_reserved, fulfillment_status, "
                            "expires_at, created_at, updated_at) VALUES (:p, 'pending', 'USD', "
                            "100, :e, :n, false, 'unfulfilled', :t, :t, :t) RETURNING id"
                        ),
                        {
                            "p": f"ord_m{i}",
                            "e": f"buyer{i}@example.com",
                            "n": f"Buyer {i}",
                            "t": now,
                        },
                    ).scalar_one()
                )
            conn.execute(
                text(
                    "INSERT INTO payments (public_id, order_id, gateway, status, amount, "
                    "currency, amount_refunded, capture_method, idempotency_key, "
                    "customer_email, created_at, updated_at) VALUES (:p, :o, 'sandbox', "
                    "'created', 100, 'USD', 0, 'automatic', :k, :e, :t, :t)"
                ),
                [
                    {
                        "p": f"pay_m{i}",
                        "o": oid,
                        "k": f"k-m{i}",
                        "e": f"buyer{i}@example.com",
                        "t": now,
                    }
                    for i, oid in enumerate(order_ids)
                ],
            )
        flask_migrate.upgrade(directory=directory)
        db.session.remove()
    stored = raw_values(app)
    assert len(stored["orders.customer_email"]) == 1101
    for name, values in stored.items():
        for value in values:
            assert Fernet(OLD).decrypt(value.encode()), name
    assert "buyer1099@example.com" not in raw_rows_text(app)
    with app.app_context():
        order = db.session.execute(
            select(Order).where(Order.customer_email_hash == email_hash("Buyer1099@Example.com"))
        ).scalar_one()
        assert (order.customer_email, order.customer_name) == (
            "buyer1099@example.com",
            "Buyer 1099",
        )
        assert (
            db.session.execute(
                select(Payment.customer_email).where(
                    Payment.customer_email_hash == email_hash("buyer7@example.com")
                )
            ).scalar_one()
            == "buyer7@example.com"
        )
        nulls = db.session.execute(
            text(
                "SELECT count(*) FROM payments WHERE customer_email_hash IS NULL OR customer_email_hash = ''"
            )
        ).scalar_one()
        assert nulls == 0
    assert _endpoint_secrets(app) == [plain["secret"], plain["previous"]]
    api = Api(app, new_key(app, "read"))
    assert len(api.get(f"/orders?email={EMAIL}").get_json()["data"]) == 1


def test_production_refuses_to_start_without_encryption_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from app import create_app

    for name, value in {
        "KASSA_ENV": "production",
        "SECRET_KEY": "Zq8v" * 12,
        "SANDBOX_ENABLED": "false",
        "PUBLIC_BASE_URL": "https://shop.example.com",
        "METRICS_TOKEN": "mt_" + "R4nd0mScr4pe" * 2,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.sqlite'}",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("BLIND_INDEX_KEY", raising=False)
    with pytest.raises(RuntimeError, match="ENCRYPTION_KEYS must be set") as info:
        create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    assert "BLIND_INDEX_KEY must be set" in str(info.value)
    monkeypatch.setenv("ENCRYPTION_KEYS", NEW)
    monkeypatch.setenv("BLIND_INDEX_KEY", INDEX_KEY)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    token = app.extensions["kassa_crypto"].encrypt("x")
    assert Fernet(NEW).decrypt(token.encode()) == b"x"  # the setting's key, not a derived one
