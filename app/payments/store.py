"""The fast paths: the only hand-made SQL in the core, and the only place that asks which
database it is on. The rest of the core reads as the domain and calls these functions.

Why they exist: the checkout benchmark is bound by CPU, and every statement costs it three
times: in SQLAlchemy, in psycopg and in the server. So on PostgreSQL a checkout's first
transaction is ONE statement (data-modifying CTEs whose rows arrive as one JSON parameter
each and are typed by the table itself, json_populate_record), opening the checkout is one
compare-and-set UPDATE with its audit row, and webhook intake inserts a whole group of
deliveries with one fixed statement. SQLite takes one plain statement per row. Both paths
of every function write the same rows: tests/integration/test_store.py runs each on SQLite
and PostgreSQL and compares.

- write_checkout: a new order, its items, its first attempt and their audit rows
- write_attempt: another attempt (and its audit row) for an existing order
- move_payment: a payment's status compare-and-set, with its audit row (the payment
  transition's hot path, app/payments/state.py)
- insert_or_ignore: INSERT ... ON CONFLICT DO NOTHING RETURNING, on either database
- event_inserter: the webhook inbox's grouped insert (app/payments/inbox_writer.py)
- mark_dispatched: the outbox relay's batch given its stream numbers, in one UPDATE
- utc_day: a timestamp's UTC day in SQL (the dashboard's charts)

Rows are plain dicts of column values; audit rows are made by app/payments/audit.row().
Everything runs in the caller's unit of work, except event_inserter's, which commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Row, Table, bindparam, func, insert, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Insert

from app.crypto import seal_row
from app.extensions import db
from app.models import AuditEntry, Order, OrderItem, OutboxEvent, Payment, WebhookEvent
from app.models.base import utcnow

# Core statements built once: a statement object reused with new parameters skips
# rebuilding and re-keying it for SQLAlchemy's compiled cache on every call.
_ORDERS = Order.__table__
_ITEMS = OrderItem.__table__
_PAYMENTS = Payment.__table__
_AUDIT = AuditEntry.__table__
_EVENTS = WebhookEvent.__table__
_OUTBOX = OutboxEvent.__table__
_INSERT_ORDER = insert(_ORDERS).returning(_ORDERS.c.id)
_INSERT_ITEM = insert(_ITEMS)
_INSERT_PAYMENT = insert(_PAYMENTS).returning(_PAYMENTS.c.id)
_INSERT_AUDIT = insert(_AUDIT)


def _connection() -> Connection:
    return db.session.connection()


def _on_postgresql(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def _insert_from_json(table: Table, source: str, links: Mapping[str, str]) -> str:
    """INSERT INTO table (every column but id) SELECT them from `source`, a JSON row or
    recordset aliased r; `links` takes columns from earlier statements instead."""
    columns = [c.name for c in table.columns if c.name != "id"]
    picks = ", ".join(links.get(c, f"r.{c}") for c in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {picks} FROM {source}"


def _to_json(value: Any) -> str:
    return json.dumps(
        value,
        separators=(",", ":"),
        default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v),
    )


# --- the checkout's first transaction ------------------------------------------------


def write_checkout(
    order: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    payment: Mapping[str, Any],
    audit: Sequence[Mapping[str, Any]],
) -> tuple[int, int]:
    """Insert a new order, its items, its first payment attempt and their audit rows in
    the caller's unit of work; returns (order id, payment id).

    The rows' links are filled in here: every item and audit row gets the order's id, the
    payment its order's, and the audit rows about the payment (object_type "payment")
    the payment's id."""
    conn = _connection()
    if _on_postgresql(conn):
        return _write_checkout_in_one_statement(conn, order, items, payment, audit)
    return _write_checkout_row_by_row(conn, order, items, payment, audit)


def _write_checkout_row_by_row(
    conn: Connection,
    order: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    payment: Mapping[str, Any],
    audit: Sequence[Mapping[str, Any]],
) -> tuple[int, int]:
    order_id = conn.execute(_INSERT_ORDER, dict(order)).scalar_one()
    conn.execute(_INSERT_ITEM, [dict(item, order_id=order_id) for item in items])
    payment_id = conn.execute(_INSERT_PAYMENT, dict(payment, order_id=order_id)).scalar_one()
    conn.execute(
        _INSERT_AUDIT,
        [
            dict(
                row,
                order_id=order_id,
                payment_id=payment_id if row["object_type"] == "payment" else None,
            )
            for row in audit
        ],
    )
    return order_id, payment_id


# Four round trips fewer than one INSERT each.
_WRITE_CHECKOUT = (
    "WITH o AS ("
    + _insert_from_json(_ORDERS, "json_populate_record(NULL::orders, %(order)s::json) r", {})
    + " RETURNING id), i AS ("
    + _insert_from_json(
        _ITEMS,
        "o, json_populate_recordset(NULL::order_items, %(items)s::json) r",
        {"order_id": "o.id"},
    )
    + "), p AS ("
    + _insert_from_json(
        _PAYMENTS,
        "o, json_populate_record(NULL::payments, %(payment)s::json) r",
        {"order_id": "o.id"},
    )
    + " RETURNING id), a AS ("
    + _insert_from_json(
        _AUDIT,
        "o, p, json_populate_recordset(NULL::audit_entries, %(audit)s::json) r",
        {"order_id": "o.id", "payment_id": "CASE WHEN r.object_type = 'payment' THEN p.id END"},
    )
    + ") SELECT o.id, p.id FROM o, p"
)


def _write_checkout_in_one_statement(
    conn: Connection,
    order: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    payment: Mapping[str, Any],
    audit: Sequence[Mapping[str, Any]],
) -> tuple[int, int]:
    # json_populate_record bypasses the column types: encrypt what EncryptedString would.
    order_id, payment_id = conn.exec_driver_sql(
        _WRITE_CHECKOUT,
        {
            "order": _to_json(seal_row(_ORDERS, order)),
            "items": _to_json(list(items)),
            "payment": _to_json(seal_row(_PAYMENTS, payment)),
            "audit": _to_json(list(audit)),
        },
    ).one()
    return int(order_id), int(payment_id)


def write_attempt(payment: Mapping[str, Any], audit_row: Mapping[str, Any]) -> int:
    """Insert a payment attempt for an existing order (payment["order_id"]) and its audit
    row, in the caller's unit of work; returns the payment's id."""
    conn = _connection()
    payment_id: int = conn.execute(_INSERT_PAYMENT, dict(payment)).scalar_one()
    conn.execute(
        _INSERT_AUDIT, dict(audit_row, payment_id=payment_id, order_id=payment["order_id"])
    )
    return payment_id


# --- the payment's compare-and-set ---------------------------------------------------


def move_payment(
    payment_id: int,
    expected: str,
    target: str,
    values: Mapping[str, Any],
    audit_row: Mapping[str, Any],
) -> bool:
    """Set a payment's status to `target` (and `values` with it) only if it is `expected`,
    with its audit row, as one conditional UPDATE, which is also its row lock. False when
    the payment is no longer `expected` (nothing written). The audit row's object and
    links are filled in from the payment."""
    conn = _connection()
    if _on_postgresql(conn):
        # The UPDATE and its audit entry in one statement (updated_at from `values` when
        # the caller gives it, so it knows what was stored).
        others = {k: v for k, v in values.items() if k != "updated_at"}
        moved = conn.exec_driver_sql(
            _move_and_audit_sql(tuple(sorted(others))),
            {
                "id": payment_id,
                "expected": str(expected),
                "target": str(target),
                "updated_at": values.get("updated_at") or utcnow(),
                "entry": _to_json(audit_row),
                **{f"set_{k}": v for k, v in others.items()},
            },
        ).scalar_one_or_none()
        return moved is not None
    # A Core UPDATE: the ORM's bulk UPDATE ... RETURNING an entity cost three times as
    # much CPU for the same row, and the caller's commit expires what it would load.
    row = conn.execute(
        update(_PAYMENTS)
        .where(_PAYMENTS.c.id == payment_id, _PAYMENTS.c.status == expected)
        .values(status=target, **values)
        .returning(_PAYMENTS.c.public_id, _PAYMENTS.c.order_id)
    ).one_or_none()
    if row is None:
        return False
    conn.execute(
        _INSERT_AUDIT,
        dict(audit_row, object_id=row.public_id, payment_id=payment_id, order_id=row.order_id),
    )
    return True


@cache
def _move_and_audit_sql(columns: tuple[str, ...]) -> str:
    """move_payment's UPDATE (setting `columns` as well) and its audit entry, as one
    PostgreSQL statement; one text per set of columns."""
    known = set(_PAYMENTS.columns.keys())
    if not set(columns) <= known:
        raise ValueError(f"not payments columns: {sorted(set(columns) - known)}")
    sets = "".join(f", {c} = %(set_{c})s" for c in columns)
    return (
        "WITH moved AS (UPDATE payments SET status = %(target)s, updated_at = %(updated_at)s"
        f"{sets} WHERE id = %(id)s AND status = %(expected)s"
        " RETURNING id, public_id, order_id) "
        + _insert_from_json(
            _AUDIT,
            "moved, json_populate_record(NULL::audit_entries, %(entry)s::json) r",
            {
                "object_id": "moved.public_id",
                "payment_id": "moved.id",
                "order_id": "moved.order_id",
            },
        )
        + " RETURNING payment_id"
    )


# --- reading ------------------------------------------------------------------------


def utc_day(column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as SQL (a GROUP BY key): PostgreSQL
    stores zone-aware times, SQLite UTC text."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


# --- insert-or-ignore ----------------------------------------------------------------


@lru_cache(maxsize=64)
def _insert_or_ignore_statement(
    table: Table, dialect: str, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Insert:
    """Built once per table, dialect and columns (a statement is immutable): building it
    per call cost more CPU than executing it from SQLAlchemy's compiled cache."""
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        make(table)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(*(table.c[name] for name in returning))
    )


def insert_or_ignore(
    model: Any,
    values: Mapping[str, Any],
    *,
    conflict: Sequence[str],
    returning: Sequence[str] = ("id",),
) -> Row[Any] | None:
    """INSERT one row of `model`'s table unless a row with the same `conflict` columns
    exists, in the caller's transaction; the new row's `returning` columns, or None."""
    table: Table = model.__table__
    stmt = _insert_or_ignore_statement(
        table, db.session.get_bind().dialect.name, tuple(conflict), tuple(returning)
    )
    return db.session.execute(stmt, dict(values)).one_or_none()


# --- the webhook inbox's grouped insert ----------------------------------------------

# The inbox insert for a whole batch as one fixed statement with one parameter: the rows as
# a JSON array. psycopg adapts a list per column element by element in Python (1.5 ms of
# CPU for 32 rows measured here); json.dumps does it in C (0.3 ms) and PostgreSQL parses it.
_RECORDSET_INSERT = (
    "INSERT INTO webhook_events (gateway, event_id, event_type, payload, status, attempts, "
    "received_at) SELECT gateway, event_id, event_type, payload, status, attempts, "
    "received_at FROM json_to_recordset(%s::json) AS r(gateway text, event_id text, "
    "event_type text, payload text, status text, attempts int, received_at timestamptz) "
    "ON CONFLICT (gateway, event_id) DO NOTHING RETURNING id, gateway, event_id"
)

EventKeys = list[tuple[int, str, str]]


def event_inserter(engine: Engine) -> Callable[[Sequence[Mapping[str, Any]]], EventKeys]:
    """A function that inserts inbox rows (unless their (gateway, event_id) is stored
    already) and commits them, on its own connection; it returns (id, gateway, event_id)
    of the rows it inserted.

    PostgreSQL: one statement text for any batch size (psycopg parses it once and
    prepares it), sent as one round trip in autocommit: a single statement is its own
    transaction, committed before its result is returned, so the BEGIN and COMMIT round
    trips of an explicit transaction buy nothing. Elsewhere a multi-row insert in one
    write transaction."""
    if _on_postgresql(engine):
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

        def insert_recordset(rows: Sequence[Mapping[str, Any]]) -> EventKeys:
            batch = json.dumps(
                [dict(r, received_at=r["received_at"].isoformat()) for r in rows],
                separators=(",", ":"),
            )
            with autocommit.connect() as conn:
                found = conn.exec_driver_sql(_RECORDSET_INSERT, (batch,)).all()
            return [(int(i), str(g), str(e)) for i, g, e in found]

        return insert_recordset
    statement = _insert_or_ignore_statement(
        _EVENTS, engine.dialect.name, ("gateway", "event_id"), ("id", "gateway", "event_id")
    )

    def insert_rows(rows: Sequence[Mapping[str, Any]]) -> EventKeys:
        with engine.connect() as conn:
            conn = conn.execution_options(kassa_write=True)
            with conn.begin():
                found = conn.execute(statement, [dict(r) for r in rows]).all()
        return [(int(i), str(g), str(e)) for i, g, e in found]

    return insert_rows


# --- the outbox relay ------------------------------------------------------------------

_MARK_DISPATCHED_PG = text(
    "UPDATE outbox_events SET seq = v.seq, dispatched_at = :at "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[])) AS v(id, seq) "
    "WHERE outbox_events.id = v.id"
).bindparams(bindparam("at", type_=_OUTBOX.c.dispatched_at.type))
_MARK_DISPATCHED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(seq=bindparam("row_seq"), dispatched_at=bindparam("row_at"))
)


def mark_dispatched(seqs: Sequence[tuple[int, int]], at: datetime) -> None:
    """Give outbox rows (id, stream number) their number and dispatch time. PostgreSQL: one
    UPDATE for the batch; the relay's ORM UPDATE per row also re-evaluated its WHERE
    against every object in the session (quadratic in the batch; issue 21's profile)."""
    if not seqs:
        return
    conn = _connection()
    if _on_postgresql(conn):
        conn.execute(
            _MARK_DISPATCHED_PG,
            {"ids": [i for i, _ in seqs], "seqs": [n for _, n in seqs], "at": at},
        )
        return
    conn.execute(_MARK_DISPATCHED, [{"row_id": i, "row_seq": n, "row_at": at} for i, n in seqs])
