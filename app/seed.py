"""Bulk, realistic data for benchmarks: `flask --app wsgi seed-bench 1000000`.

Orders (1-2 line items), one payment each, spread over the last two years with the mix
of gateways, currencies and outcomes a real shop sees. PostgreSQL gets COPY (a million
payments in about a minute); other databases get batched executemany. Nothing here runs
in production paths; it only appends rows (ids continue after the existing ones).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text

from app.crypto import email_hash, encrypt, encrypted_columns
from app.extensions import db
from app.models import Order, OrderItem, Payment, Product

STATUSES = [  # payment status, order status, weight
    ("succeeded", "paid", 70),
    ("failed", "failed", 8),
    ("expired", "expired", 10),
    ("canceled", "canceled", 3),
    ("refunded", "refunded", 3),
    ("partially_refunded", "partially_refunded", 2),
    ("processing", "pending", 2),
    ("created", "pending", 1),
    ("authorized", "pending", 1),
]
GATEWAYS = [("stripe", 55), ("razorpay", 25), ("sandbox", 20)]
FIRST = [
    "anna",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "gus",
    "hana",
    "ivan",
    "jane",
    "kofi",
    "lena",
    "mateo",
    "nia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sami",
    "tara",
    "uma",
    "vik",
    "wen",
    "xavi",
    "yuki",
    "zoe",
]
LAST = [
    "smith",
    "garcia",
    "kumar",
    "ito",
    "muller",
    "rossi",
    "novak",
    "silva",
    "okafor",
    "kim",
    "haddad",
    "jensen",
    "dubois",
    "costa",
    "nguyen",
    "sato",
    "ivanova",
    "fischer",
]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "shop.example"]
CARDS = [("visa", "4242"), ("mastercard", "4444"), ("amex", "8431"), ("visa", "1881")]

ORDER_COLS = [
    "id",
    "public_id",
    "status",
    "currency",
    "total_amount",
    "customer_email",
    "customer_name",
    "customer_email_hash",
    "stock_reserved",
    "expires_at",
    "created_at",
    "updated_at",
]
ITEM_COLS = ["id", "order_id", "product_id", "sku", "name", "unit_amount", "quantity"]
PAYMENT_COLS = [
    "id",
    "public_id",
    "order_id",
    "gateway",
    "status",
    "amount",
    "currency",
    "amount_refunded",
    "capture_method",
    "idempotency_key",
    "gateway_reference",
    "gateway_payment_id",
    "checkout_url",
    "failure_code",
    "failure_message",
    "payment_method",
    "customer_email",
    "customer_email_hash",
    "authorized_at",
    "capture_deadline",
    "captured_at",
    "expires_at",
    "created_at",
    "updated_at",
]


def _weighted(rng: random.Random, choices: list[tuple[Any, ...]]) -> Any:
    total = sum(c[-1] for c in choices)
    pick = rng.uniform(0, total)
    for choice in choices:
        pick -= choice[-1]
        if pick <= 0:
            return choice
    return choices[-1]


def _rows(
    n: int,
    first_order_id: int,
    first_item_id: int,
    first_payment_id: int,
    products: list[dict[str, Any]],
    days: int,
    seed: int,
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]], tuple[Any, ...]]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    step = timedelta(days=days) / max(n, 1)
    by_currency: dict[str, list[dict[str, Any]]] = {}
    for p in products:
        by_currency.setdefault(p["currency"], []).append(p)
    currency_weights = [("USD", 45), ("EUR", 25), ("INR", 20), ("JPY", 10)]
    currency_weights = [c for c in currency_weights if c[0] in by_currency] or [
        (c, 1) for c in by_currency
    ]
    item_id = first_item_id
    for i in range(n):
        created = start + step * i + timedelta(seconds=rng.random() * 30)
        currency = _weighted(rng, currency_weights)[0]
        catalog = by_currency[currency]
        lines = []
        for product in rng.sample(catalog, k=min(len(catalog), 1 + (rng.random() < 0.2))):
            qty = 1 if rng.random() < 0.8 else rng.randint(2, 3)
            lines.append((product, qty))
        total = sum(p["unit_amount"] * q for p, q in lines)
        pay_status, order_status, _ = _weighted(rng, STATUSES)
        gateway = (
            "razorpay" if currency == "INR" and rng.random() < 0.7 else _weighted(rng, GATEWAYS)[0]
        )
        customer = rng.randrange(200_000)
        first, last = FIRST[customer % len(FIRST)], LAST[(customer // 26) % len(LAST)]
        email = f"{first}.{last}{customer}@{DOMAINS[customer % len(DOMAINS)]}"
        name = f"{first.title()} {last.title()}"
        hashed = email_hash(email)
        order_id = first_order_id + i
        payment_id = first_payment_id + i
        expires = created + timedelta(minutes=30)
        order = (
            order_id,
            f"ord_{rng.getrandbits(128):032x}",
            order_status,
            currency,
            total,
            email,
            name,
            hashed,
            order_status == "pending",
            expires,
            created,
            created,
        )
        items = []
        for product, qty in lines:
            items.append(
                (
                    item_id,
                    order_id,
                    product["id"],
                    product["sku"],
                    product["name"],
                    product["unit_amount"],
                    qty,
                )
            )
            item_id += 1
        prefix = {"stripe": "cs", "razorpay": "order", "sandbox": "sbx_cs"}[gateway]
        reached = pay_status not in ("created", "expired", "canceled")
        card = CARDS[rng.randrange(len(CARDS))]
        refunded = (
            total
            if pay_status == "refunded"
            else total // 2
            if pay_status == "partially_refunded"
            else 0
        )
        pid = f"pay_{rng.getrandbits(128):032x}"
        payment = (
            payment_id,
            pid,
            order_id,
            gateway,
            pay_status,
            total,
            currency,
            refunded,
            "manual" if pay_status == "authorized" else "automatic",
            f"kassa-checkout-{pid}",
            f"{prefix}_{rng.getrandbits(96):024x}",
            f"pi_{rng.getrandbits(96):024x}" if reached else None,
            None,
            "card_declined" if pay_status == "failed" else None,
            "Your card was declined." if pay_status == "failed" else None,
            {"brand": card[0], "last4": card[1]} if reached else None,
            email,
            hashed,
            created + timedelta(seconds=40) if pay_status == "authorized" else None,
            created + timedelta(days=7) if pay_status == "authorized" else None,
            created + timedelta(seconds=40)
            if pay_status in ("succeeded", "refunded", "partially_refunded")
            else None,
            expires,
            created,
            created + timedelta(seconds=45),
        )
        yield order, items, payment


def seed_bench(
    n: int,
    *,
    batch: int = 20_000,
    days: int = 730,
    seed: int = 8,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append n orders with their items and one payment each. Returns n."""
    products = [
        {
            "id": p.id,
            "sku": p.sku,
            "name": p.name,
            "unit_amount": p.unit_amount,
            "currency": p.currency,
        }
        for p in db.session.execute(select(Product).where(Product.active.is_(True))).scalars()
    ]
    if not products:
        raise RuntimeError("no products: run `flask --app wsgi seed-demo` first")
    order_base = (db.session.execute(select(func.max(Order.id))).scalar() or 0) + 1
    item_base = (db.session.execute(select(func.max(OrderItem.id))).scalar() or 0) + 1
    payment_base = (db.session.execute(select(func.max(Payment.id))).scalar() or 0) + 1
    db.session.commit()
    postgres = db.engine.dialect.name == "postgresql"
    done = 0
    # The seed moves with the first id, so a second run appends different public ids.
    rows = _rows(n, order_base, item_base, payment_base, products, days, seed + order_base)
    while done < n:
        size = min(batch, n - done)
        orders, items, payments = [], [], []
        for _ in range(size):
            order, lines, payment = next(rows)
            orders.append(order)
            items.extend(lines)
            payments.append(payment)
        if postgres:
            _copy(orders, items, payments)
        else:
            _executemany(orders, items, payments)
        done += size
        if progress:
            progress(size)
    if postgres:
        with db.engine.connect() as conn:
            for table in ("orders", "order_items", "payments"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
            conn.commit()
        # Fresh statistics and visibility map: the planner and index-only scans need them.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) orders, order_items, payments"))
    return n


def _copy(
    orders: list[tuple[Any, ...]], items: list[tuple[Any, ...]], payments: list[tuple[Any, ...]]
) -> None:
    import json

    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for model, cols, data in (
            (Order, ORDER_COLS, orders),
            (OrderItem, ITEM_COLS, items),
            (Payment, PAYMENT_COLS, payments),
        ):
            table = model.__tablename__
            json_at = cols.index("payment_method") if "payment_method" in cols else -1
            # COPY bypasses the column types: encrypt here what EncryptedString would.
            sealed = [cols.index(c) for c in encrypted_columns(model.__table__)]
            with cursor.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in data:
                    if json_at >= 0 and row[json_at] is not None:
                        row = (*row[:json_at], json.dumps(row[json_at]), *row[json_at + 1 :])
                    if sealed:
                        values = list(row)
                        for at in sealed:
                            values[at] = encrypt(values[at])
                        row = tuple(values)
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _executemany(
    orders: list[tuple[Any, ...]], items: list[tuple[Any, ...]], payments: list[tuple[Any, ...]]
) -> None:
    for model, cols, data in (
        (Order, ORDER_COLS, orders),
        (OrderItem, ITEM_COLS, items),
        (Payment, PAYMENT_COLS, payments),
    ):
        db.session.execute(insert(model), [dict(zip(cols, row, strict=True)) for row in data])
    db.session.commit()
