"""Encryption at rest: the keys, the `EncryptedString` column type, the email blind index.

Keys come from two settings (app/config.py):

- ENCRYPTION_KEYS: comma-separated Fernet keys (`flask generate-encryption-key` makes
  one). The first encrypts; every one listed decrypts (cryptography's MultiFernet). To
  rotate: put a new key first, keep the old ones after it, run `flask
  rotate-encryption-key` (re-encrypts every encrypted column with the first key), then
  drop the old keys.
- BLIND_INDEX_KEY: the HMAC-SHA256 key of the blind index (`customer_email_hash`
  columns), which keeps exact-match search by email working on encrypted emails. It is a
  separate setting on purpose: rotating ENCRYPTION_KEYS must not change the hashes, or
  every search would miss until every row was rewritten. Changing BLIND_INDEX_KEY itself
  is possible (the rotate command recomputes every hash), but searches by email miss the
  rows not yet recomputed while it runs.

In development and tests, when a setting is empty, its key is derived from SECRET_KEY
(HKDF-SHA256 with a label per key), so it is as stable as SECRET_KEY (generated once into
instance/secret_key in development). Production refuses to start without both settings
(app/config.check_production).

A value that no listed key decrypts raises DecryptionError naming ENCRYPTION_KEYS: a
wrong key never yields garbage or None.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app, has_app_context
from sqlalchemy import Text, TypeDecorator
from sqlalchemy.sql import operators

EXTENSION = "kassa_crypto"
# Fernet tokens are url-safe base64 of a version byte 0x80 and a timestamp: "gAAAAA...".
TOKEN_PREFIX = "gAAAAA"
BLIND_INDEX_MIN_LENGTH = 32


class DecryptionError(RuntimeError):
    """A stored value that no key in ENCRYPTION_KEYS decrypts (or that is not encrypted)."""


def normalize_email(email: str) -> str:
    """The form every email is hashed (and stored) in: trimmed, lower-cased."""
    return email.strip().lower()


def _derive(secret: str, label: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label.encode()).derive(
        secret.encode()
    )


def split_keys(value: Any) -> list[str]:
    """ENCRYPTION_KEYS as a list: a comma-separated string (the environment) or a list."""
    if value in (None, ""):
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(k).strip() for k in items if str(k).strip()]


def check_keys(value: Any) -> list[str]:
    """Problems with ENCRYPTION_KEYS / BLIND_INDEX_KEY as given (empty when fine)."""
    problems = []
    for i, key in enumerate(split_keys(value), start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            problems.append(
                f"ENCRYPTION_KEYS: key {i} is not a Fernet key (32 url-safe base64-encoded "
                "bytes; make one with `flask generate-encryption-key`)"
            )
    return problems


@dataclass(frozen=True)
class Keyring:
    """The app's keys: Fernet keys (first encrypts) and the blind-index HMAC key."""

    fernets: tuple[Fernet, ...]
    blind_index_key: bytes

    def __post_init__(self) -> None:
        if not self.fernets:
            raise RuntimeError("ENCRYPTION_KEYS: at least one key is needed")
        object.__setattr__(self, "_multi", MultiFernet(list(self.fernets)))
        # One checkout hashes its email several times (the order, the payment, the
        # customer lookup): the last few addresses' hashes are kept, per keyring.
        object.__setattr__(self, "_hashes", lru_cache(maxsize=256)(self._email_hash))

    @classmethod
    def from_settings(
        cls, encryption_keys: Any, blind_index_key: str | None, secret_key: str | None = None
    ) -> Keyring:
        """From the settings' values; empty ones derived from `secret_key` (development)."""
        problems = check_keys(encryption_keys)
        if problems:
            raise RuntimeError("; ".join(problems))
        keys = split_keys(encryption_keys)
        if (not keys or not blind_index_key) and not secret_key:
            raise RuntimeError(
                "ENCRYPTION_KEYS and BLIND_INDEX_KEY must be set (or SECRET_KEY, to derive "
                "development keys from)"
            )
        if not keys:
            keys = [
                base64.urlsafe_b64encode(_derive(str(secret_key), "kassa encryption key")).decode()
            ]
        if blind_index_key:
            if len(blind_index_key) < BLIND_INDEX_MIN_LENGTH:
                raise RuntimeError(
                    f"BLIND_INDEX_KEY must be at least {BLIND_INDEX_MIN_LENGTH} characters"
                )
            index_key = blind_index_key.encode()
        else:
            index_key = _derive(str(secret_key), "kassa blind index key")
        return cls(tuple(Fernet(k) for k in keys), index_key)

    @property
    def multi(self) -> MultiFernet:
        multi: MultiFernet = self.__dict__["_multi"]
        return multi

    def encrypt(self, plaintext: str) -> str:
        return self.fernets[0].encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self.multi.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError) as exc:
            if not token.startswith(TOKEN_PREFIX):
                raise DecryptionError(
                    "A value in the database is not encrypted (run `flask db upgrade`, whose "
                    "migration encrypts existing rows); refusing to read it as ciphertext"
                ) from exc
            raise DecryptionError(
                "A value in the database could not be decrypted with any key in "
                "ENCRYPTION_KEYS: the key that encrypted it is not listed (dropped before "
                "`flask rotate-encryption-key` finished, or the wrong keys for this database)"
            ) from exc

    def is_current(self, token: str) -> bool:
        """Whether the first key already encrypts `token` (rotation skips it then)."""
        try:
            self.fernets[0].decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def reencrypt(self, token: str) -> str:
        """`token` encrypted with the first key (DecryptionError if no key opens it)."""
        return self.encrypt(self.decrypt(token))

    def email_hash(self, email: str) -> str:
        """The blind index of an email: hex HMAC-SHA256 of its normalized form."""
        memo: Callable[[str], str] = self.__dict__["_hashes"]
        return memo(email)

    def _email_hash(self, email: str) -> str:
        return hmac.new(
            self.blind_index_key, normalize_email(email).encode(), hashlib.sha256
        ).hexdigest()


def keyring_for(config: Mapping[str, Any]) -> Keyring:
    """The keyring a configuration describes (production never derives keys)."""
    production = config.get("KASSA_ENV") == "production" and not config.get("TESTING")
    if production and not (
        split_keys(config.get("ENCRYPTION_KEYS")) and config.get("BLIND_INDEX_KEY")
    ):
        raise RuntimeError(
            "Refusing to start in production: ENCRYPTION_KEYS and BLIND_INDEX_KEY must be set"
        )
    return Keyring.from_settings(
        config.get("ENCRYPTION_KEYS"), config.get("BLIND_INDEX_KEY"), config.get("SECRET_KEY")
    )


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = keyring_for(app.config)


def keyring() -> Keyring:
    """The current app's keyring."""
    if not has_app_context():
        raise RuntimeError(
            "Encrypted columns need an app context (their keys come from ENCRYPTION_KEYS)"
        )
    found: Keyring = current_app.extensions[EXTENSION]
    return found


def encrypt(plaintext: str) -> str:
    return keyring().encrypt(plaintext)


def decrypt(token: str) -> str:
    return keyring().decrypt(token)


def email_hash(email: str) -> str:
    """The blind index of `email` with the current app's BLIND_INDEX_KEY."""
    return keyring().email_hash(email)


class EncryptedString(TypeDecorator[str]):
    """A str in Python, a Fernet token (text) in the database.

    Comparing such a column with a value in SQL never matches (every encryption is
    different): search through a blind-index column instead (`email_hash`).
    Statements that bypass column types (hand-made SQL, COPY, json_populate_record)
    must encrypt the values themselves: `seal_row` below.
    """

    impl = Text
    cache_ok = True

    class Comparator(TypeDecorator.Comparator[str]):
        """Only IS [NOT] NULL: any other comparison or ordering of ciphertext is a bug
        that would silently match nothing, so it raises instead."""

        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            if op in (operators.is_, operators.is_not):
                return super().operate(op, *other, **kwargs)
            raise TypeError(
                f"{self.expr} is encrypted: SQL cannot compare or sort it (every encryption "
                "differs); search through its blind index (<column>_hash == email_hash(...))"
            )

        def reverse_operate(self, op: Any, other: Any, **kwargs: Any) -> Any:
            return self.operate(op, other, **kwargs)

    comparator_factory = Comparator

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return encrypt(str(value))

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return decrypt(value)


def encrypted_columns(table: Any) -> list[str]:
    """The names of a table's EncryptedString columns."""
    return [c.name for c in table.columns if isinstance(c.type, EncryptedString)]


def seal_row(table: Any, row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with the values of the table's encrypted columns encrypted, for statements
    that bypass column types."""
    sealed = dict(row)
    for name in encrypted_columns(table):
        if sealed.get(name) is not None:
            sealed[name] = encrypt(str(sealed[name]))
    return sealed


# --- key rotation (`flask rotate-encryption-key`) -------------------------------------


@dataclass
class RotationStats:
    rows: int = 0  # rows read
    reencrypted: int = 0  # values re-encrypted with the first key
    rehashed: int = 0  # blind-index values recomputed (BLIND_INDEX_KEY changed)
    changed_meanwhile: int = 0  # rows the app rewrote between our read and our write


def encrypted_tables(metadata: Any) -> list[tuple[Any, list[str], dict[str, str]]]:
    """(table, encrypted columns, {blind-index column: its encrypted column}) of every
    table with EncryptedString columns. A blind index is the column named
    `<encrypted column>_hash` (customer_email_hash for customer_email)."""
    found = []
    for table in metadata.sorted_tables:
        columns = encrypted_columns(table)
        if not columns:
            continue
        hashes = {f"{c}_hash": c for c in columns if f"{c}_hash" in table.columns}
        if len(table.primary_key.columns) != 1:
            raise RuntimeError(f"{table.name}: encrypted tables need a one-column primary key")
        found.append((table, columns, hashes))
    return found


def rotate_all(
    engine: Any,
    metadata: Any,
    ring: Keyring,
    *,
    batch_size: int = 500,
    progress: Any = None,
) -> RotationStats:
    """Re-encrypt every encrypted value that the first key did not encrypt, and recompute
    every blind index that BLIND_INDEX_KEY did not make, BATCH rows per transaction in
    primary-key order.

    Idempotent (a value already under the first key is left alone) and so resumable:
    interrupted, it is run again and picks up what is left. Each row is written with a
    compare-and-set on the values it read, so a row the app rewrote meanwhile (already
    with the first key) is never overwritten with older data. `progress(n)` is called
    after each batch of n rows."""
    from sqlalchemy import and_, column, select, table, update

    stats = RotationStats()
    for real, columns, indexes in encrypted_tables(metadata):
        key = real.primary_key.columns.values()[0].name
        # Plain-text view of the table: the raw tokens, no EncryptedString processing.
        raw = table(real.name, column(key), *(column(c, Text()) for c in [*columns, *indexes]))
        pk = raw.c[key]
        query = select(pk, *(raw.c[c] for c in [*columns, *indexes])).order_by(pk)
        last = None
        while True:
            with engine.begin() as conn:
                stmt = query if last is None else query.where(pk > last)
                rows = conn.execute(stmt.limit(batch_size)).mappings().all()
                if not rows:
                    break
                for row in rows:
                    values: dict[str, str] = {}
                    plain: dict[str, str] = {}
                    for c in columns:
                        token = row[c]
                        if token is None:
                            continue
                        if not ring.is_current(token):
                            plain[c] = ring.decrypt(token)
                            values[c] = ring.encrypt(plain[c])
                            stats.reencrypted += 1
                    for h, c in indexes.items():
                        if row[c] is None:
                            continue
                        text = plain.get(c) or ring.decrypt(row[c])
                        digest = ring.email_hash(text)
                        if row[h] != digest:
                            values[h] = digest
                            stats.rehashed += 1
                    if values:
                        written = conn.execute(
                            update(raw)
                            .where(and_(pk == row[key], *(raw.c[c] == row[c] for c in values)))
                            .values(values)
                        )
                        if written.rowcount != 1:
                            stats.changed_meanwhile += 1
                stats.rows += len(rows)
                last = rows[-1][key]
            if progress is not None:
                progress(len(rows))
    return stats


def count_encrypted_rows(engine: Any, metadata: Any) -> int:
    from sqlalchemy import func, select

    with engine.connect() as conn:
        return sum(
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t, _, _ in encrypted_tables(metadata)
        )
