"""Dashboard queries on a million payments (PostgreSQL): time each page and print the plan
of the slowest parts. Not part of the test run.

    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python -m bench.dashboard_pg [--rows 1000000] [--keep]

Creates its own database (kassa_dash_bench_<hex>), fills it with SQL generate_series,
and drops it afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import tempfile
import time
from typing import Any

import psycopg

# Customers' emails and names are encrypted at rest (app/crypto.py): CUSTOMERS distinct
# customers, encrypted in Python, passed as arrays; orders pick one each.
CUSTOMERS = 20000
FILL_ORDERS = """
INSERT INTO orders (public_id, status, currency, total_amount, customer_email, customer_name,
                    customer_email_hash, stock_reserved, expires_at, created_at, updated_at)
SELECT 'ord_b' || g, 'paid', (ARRAY['USD','EUR','INR','JPY'])[1 + g % 4], 1000 + g % 5000,
       (%(emails)s::text[])[1 + g % %(customers)s], (%(names)s::text[])[1 + g % %(customers)s],
       (%(hashes)s::text[])[1 + g % %(customers)s], false,
       now(), now() - make_interval(secs => (g * 31.5)::int % (365*86400)), now()
FROM generate_series(1, %(n)s) AS g
"""
FILL_PAYMENTS = """
INSERT INTO payments (public_id, order_id, gateway, status, amount, currency, amount_refunded,
                      capture_method, idempotency_key, gateway_reference, gateway_payment_id,
                      customer_email, customer_email_hash, created_at, updated_at)
SELECT 'pay_b' || o.id, o.id,
       (ARRAY['stripe','stripe','razorpay','sandbox','stripe'])[1 + o.id % 5],
       CASE WHEN o.id % 50 = 0 THEN 'processing' WHEN o.id % 10 = 1 THEN 'failed'
            WHEN o.id % 20 = 2 THEN 'expired' WHEN o.id % 40 = 3 THEN 'refunded'
            ELSE 'succeeded' END,
       o.total_amount, o.currency, CASE WHEN o.id % 40 = 3 THEN o.total_amount ELSE 0 END,
       'automatic', 'bench-' || o.id, 'cs_b' || o.id, 'pi_b' || o.id, o.customer_email,
       o.customer_email_hash, o.created_at, o.created_at
FROM orders o
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", help="SQLAlchemy URL of a database kept by --keep")
    args = parser.parse_args()
    if args.reuse:
        run(args.reuse, 0)
        return
    base = os.environ["TEST_DATABASE_URL"]
    admin = base.replace("postgresql+psycopg://", "postgresql://")
    name = f"kassa_dash_bench_{secrets.token_hex(4)}"
    url = re.sub(r"/[^/]*$", f"/{name}", base)
    if not url.startswith("postgresql+psycopg://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        run(url, args.rows)
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print("kept", url)


def timed(client: Any, path: str, repeat: int = 5) -> tuple[float, int, bytes]:
    times = []
    body = b""
    status = 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        body = response.get_data()
        times.append(time.perf_counter() - start)
        status = response.status_code
    return statistics.median(times) * 1000, status, body


def run(url: str, rows: int) -> None:
    from flask_migrate import upgrade
    from werkzeug.security import generate_password_hash

    from app import create_app
    from app.extensions import db
    from app.models import User

    tmp = tempfile.mkdtemp()
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "b" * 40,
            "INSTANCE_PATH": tmp,
            "SQLALCHEMY_DATABASE_URI": url,
            "WTF_CSRF_ENABLED": False,
            "SESSION_COOKIE_SECURE": False,
            "RATELIMIT_ENABLED": False,
            "SANDBOX_WEBHOOK_SECRET": "x",
        }
    )
    with app.app_context():
        if not rows:
            return bench(app)
        upgrade()
        start = time.perf_counter()
        raw = db.engine.raw_connection()
        try:
            from app.crypto import email_hash, encrypt

            emails = [f"buyer{c}@example.com" for c in range(CUSTOMERS)]
            cur = raw.cursor()
            cur.execute(
                FILL_ORDERS,
                {
                    "n": int(rows),
                    "customers": CUSTOMERS,
                    "emails": [encrypt(e) for e in emails],
                    "names": [encrypt(f"Buyer {c}") for c in range(CUSTOMERS)],
                    "hashes": [email_hash(e) for e in emails],
                },
            )
            cur.execute(FILL_PAYMENTS)
            cur.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
        print(f"filled {rows:,} orders and payments in {time.perf_counter() - start:.1f}s")
        db.session.add(
            User(
                email="bench@example.com",
                role="owner",
                session_token="t",
                password_hash=generate_password_hash("p", method="pbkdf2:sha256:1"),
            )
        )
        db.session.commit()
    bench(app)


def bench(app: Any) -> None:
    client = app.test_client()
    client.post("/auth/login", data={"email": "bench@example.com", "password": "p"})
    first = client.get("/dashboard/payments").get_data(as_text=True)
    cursor = re.search(r'rel="next" href="[^"]*after=([^"&]+)', first)
    deep = None
    if cursor:
        # Walk 200 pages (10,000 rows) to get a deep cursor; keyset cost should not grow.
        after = cursor.group(1)
        for _ in range(200):
            html = client.get(f"/dashboard/payments?after={after}").get_data(as_text=True)
            found = re.search(r'rel="next" href="[^"]*after=([^"&]+)', html)
            if not found:
                break
            after = found.group(1)
        deep = after
    pages = [
        ("list, first page", "/dashboard/payments"),
        ("list, page 201 (keyset)", f"/dashboard/payments?after={deep}"),
        ("list, oldest first", "/dashboard/payments?sort=oldest"),
        ("status=failed", "/dashboard/payments?status=failed"),
        ("status=processing", "/dashboard/payments?status=processing"),
        ("gateway=razorpay", "/dashboard/payments?gateway=razorpay"),
        ("currency=JPY", "/dashboard/payments?currency=JPY"),
        (
            "date range (one week, 6 months ago)",
            "/dashboard/payments?from=2026-05-01&to=2026-05-07",
        ),
        (
            "status+gateway+date",
            ("/dashboard/payments?status=succeeded&gateway=stripe&from=2026-03-01&to=2026-03-31"),
        ),
        ("search payment id", "/dashboard/payments?q=pay_b777777"),
        ("search gateway id", "/dashboard/payments?q=pi_b777777"),
        ("search order id", "/dashboard/payments?q=ord_b777777"),
        ("search email", "/dashboard/payments?q=buyer4242@example.com"),
        ("overview 7 days", "/dashboard/?days=7"),
        ("overview 30 days", "/dashboard/?days=30"),
        ("overview 90 days", "/dashboard/?days=90"),
        ("payment page", "/dashboard/payments/pay_b777777"),
        ("webhooks", "/dashboard/webhooks"),
    ]
    print(f"{'page':45} {'ms (median of 5)':>16}  status")
    for label, path in pages:
        ms, status, _ = timed(client, path)
        print(f"{label:45} {ms:16.1f}  {status}")
    for label, path in [
        ("export status=failed (~100k rows)", "/dashboard/payments/export.csv?status=failed"),
        ("export everything (1M rows)", "/dashboard/payments/export.csv"),
    ]:
        ms, status, body = timed(client, path, repeat=1)
        lines = body.count(b"\n") - 1
        print(f"{label:45} {ms:16.1f}  {status}  {lines:,} rows, {len(body) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
