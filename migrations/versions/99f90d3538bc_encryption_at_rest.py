"""encryption at rest: customer emails and names, webhook and TOTP secrets

Encrypts the existing values with the first key of ENCRYPTION_KEYS (app/crypto.py; in
development a key derived from SECRET_KEY), in batches of BATCH rows, and adds the blind
index `customer_email_hash` (HMAC-SHA256 with BLIND_INDEX_KEY) to orders and payments,
which replaces the plain email indexes: searching by email is exact match only.

Columns: orders.customer_email, orders.customer_name, payments.customer_email,
sandbox_sessions.customer_email, users.totp_secret, webhook_endpoints.secret and
previous_secret. On PostgreSQL the VARCHAR columns become TEXT (a Fernet token is about
1.4 times the value plus 76 characters); SQLite does not enforce VARCHAR lengths, so its
tables are left as they are rather than rebuilt (rebuilding orders with foreign keys on
would cascade deletes into order_items).

Run it with the keys the app will run with: it needs the app context (flask db upgrade).
Values that already decrypt are left alone, so a rerun after a failure is harmless.

Revision ID: 99f90d3538bc
Revises: d5a7c3e1f9b2
Create Date: 2026-12-07 09:30:00
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "99f90d3538bc"
down_revision = "d5a7c3e1f9b2"
branch_labels = None
depends_on = None

BATCH = 500

# table -> (primary key, encrypted columns, whether it gets customer_email_hash)
COLUMNS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "orders": ("id", ("customer_email", "customer_name"), True),
    "payments": ("id", ("customer_email",), True),
    "sandbox_sessions": ("id", ("customer_email",), False),
    "users": ("id", ("totp_secret",), False),
    "webhook_endpoints": ("id", ("secret", "previous_secret"), False),
}
# Widened on PostgreSQL (webhook_endpoints' are TEXT already), with their old types.
WIDENED: dict[str, dict[str, sa.types.TypeEngine]] = {
    "orders": {"customer_email": sa.String(254), "customer_name": sa.String(200)},
    "payments": {"customer_email": sa.String(254)},
    "sandbox_sessions": {"customer_email": sa.String(254)},
    "users": {"totp_secret": sa.String(64)},
}


def _keyring():
    from app.crypto import keyring

    return keyring()


def _rewrite(
    table: str,
    key: str,
    columns: Sequence[str],
    change: Callable[[dict], dict | None],
) -> None:
    """Every row of `table`, BATCH at a time in key order; `change` returns the new
    values of a row (or None to leave it)."""
    conn = op.get_bind()
    t = sa.table(
        table,
        sa.column(key),
        *(sa.column(c, sa.Text()) for c in columns),
        sa.column("customer_email_hash", sa.String(64)),
    )
    pk = t.c[key]
    select = sa.select(pk, *(t.c[c] for c in columns)).order_by(pk).limit(BATCH)
    # Parameter names must differ from column names in an UPDATE's SET.
    update = sa.update(t).where(pk == sa.bindparam("_key"))
    last = None
    while True:
        stmt = select if last is None else select.where(pk > last)
        rows = conn.execute(stmt).mappings().all()
        if not rows:
            return
        changes = []
        for row in rows:
            values = change(dict(row))
            if values is not None:
                changes.append(
                    {"_key": row[key], **{f"v_{c}": row[c] for c in columns}}
                    | {f"v_{c}": v for c, v in values.items()}
                )
        if changes:
            names = sorted(n[2:] for n in changes[0] if n != "_key")
            conn.execute(update.values({n: sa.bindparam(f"v_{n}") for n in names}), changes)
        last = rows[-1][key]


def _already_encrypted(ring, value: str) -> bool:
    from app.crypto import DecryptionError

    try:
        ring.decrypt(value)
    except DecryptionError:
        return False
    return True


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in ("orders", "payments"):
        # Filled below, then NOT NULL. SQLite adds a NOT NULL column only with a default
        # (and cannot change it later without a rebuild); every writer sets the hash.
        op.add_column(
            table,
            sa.Column("customer_email_hash", sa.String(length=64), nullable=True)
            if postgres
            else sa.Column(
                "customer_email_hash", sa.String(length=64), nullable=False, server_default=""
            ),
        )
        op.drop_index(f"ix_{table}_customer_email", table_name=table)
    if postgres:
        for table, columns in WIDENED.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Text(), existing_nullable=True)

    ring = _keyring()
    for table, (key, columns, hashed) in COLUMNS.items():

        def encrypt_row(row: dict, columns=columns, hashed=hashed) -> dict | None:
            values = {}
            for c in columns:
                value = row[c]
                if value is None or _already_encrypted(ring, value):
                    continue
                values[c] = ring.encrypt(value)
            if hashed:
                email = row["customer_email"]
                if email is not None and _already_encrypted(ring, email):
                    email = ring.decrypt(email)
                values["customer_email_hash"] = ring.email_hash(email)
            return values or None

        _rewrite(table, key, columns, encrypt_row)

    for table in ("orders", "payments"):
        if postgres:
            op.alter_column(table, "customer_email_hash", nullable=False)
        op.create_index(
            f"ix_{table}_customer_email_hash", table, ["customer_email_hash"], unique=False
        )


def downgrade():
    """Decrypts everything back (needs the keys that encrypted it) and drops the hashes."""
    postgres = op.get_bind().dialect.name == "postgresql"
    ring = _keyring()
    for table, (key, columns, _hashed) in COLUMNS.items():

        def decrypt_row(row: dict, columns=columns) -> dict | None:
            values = {c: ring.decrypt(row[c]) for c in columns if row[c] is not None}
            return values or None

        _rewrite(table, key, columns, decrypt_row)
    for table in ("orders", "payments"):
        op.drop_index(f"ix_{table}_customer_email_hash", table_name=table)
        op.drop_column(table, "customer_email_hash")  # SQLite 3.35+: ALTER TABLE DROP COLUMN
        op.create_index(f"ix_{table}_customer_email", table, ["customer_email"], unique=False)
    if postgres:
        for table, columns in WIDENED.items():
            for column, old in columns.items():
                op.alter_column(table, column, type_=old, existing_nullable=True)
