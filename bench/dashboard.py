"""c. The dashboard's core queries at a million payments (PostgreSQL).

Seeds with `flask seed-bench N` (the real command, progress bar and all), then times the
queries a payments list and an overview page run, directly through SQLAlchemy:
- the list: keyset pagination on (created_at, id) newest first, 50 rows, joined to the
  order, with each filter (status, gateway, currency, date range, combinations) and the
  search box (exact payment/order id or gateway reference, e-mail prefix);
- the 90-day overview: payments and captured/refunded sums per day and currency;
- the CSV export of every row, streamed with a server-side cursor, in a child process
  whose resident memory is sampled as rows go by (constant memory = flat RSS).
Times are wall-clock in this process around execute+fetch (driver and loopback
included, so a little above the server's own time).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection

from bench.harness import OUT, ROOT, SECRET_KEY, Database

PAYMENTS_OVERRIDE: int | None = None
PAGE = 50
CAPTURED = ("succeeded", "partially_refunded", "refunded")

meta = MetaData()
payments = Table("payments", meta, Column("id", Integer), Column("public_id", String),
                 Column("order_id", Integer), Column("gateway", String),
                 Column("status", String), Column("amount", Integer),
                 Column("amount_refunded", Integer), Column("currency", String),
                 Column("customer_email", String), Column("gateway_reference", String),
                 Column("created_at", DateTime(timezone=True)))
orders = Table("orders", meta, Column("id", Integer), Column("public_id", String),
               Column("customer_name", String))
GATEWAY_NAMES = ("stripe", "razorpay", "sandbox")


def list_query(*, status: str | None = None, gateway: str | None = None,
               currency: str | None = None, since: datetime | None = None,
               until: datetime | None = None, q: str | None = None,
               after: tuple[datetime, int] | None = None, limit: int = PAGE) -> Any:
    """The payments list: filters + search, newest first, keyset after (created_at, id)."""
    stmt = (select(payments.c.id, payments.c.public_id, payments.c.status, payments.c.gateway,
                   payments.c.amount, payments.c.currency, payments.c.customer_email,
                   payments.c.created_at, orders.c.public_id.label("order_public_id"),
                   orders.c.customer_name)
            .join(orders, orders.c.id == payments.c.order_id))
    if status:
        stmt = stmt.where(payments.c.status == status)
    if gateway:
        stmt = stmt.where(payments.c.gateway == gateway)
    if currency:
        stmt = stmt.where(payments.c.currency == currency)
    if since:
        stmt = stmt.where(payments.c.created_at >= since)
    if until:
        stmt = stmt.where(payments.c.created_at < until)
    if q:
        q = q.strip()
        if q.startswith("pay_"):
            stmt = stmt.where(payments.c.public_id == q)
        elif q.startswith("ord_"):
            stmt = stmt.where(orders.c.public_id == q)
        elif "@" in q or not re.match(r"^(cs|pi|order|pay|sbx)_", q):
            # E-mail prefix: served by ix_payments_email_pattern (varchar_pattern_ops).
            escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(payments.c.customer_email.like(escaped + "%", escape="\\"))
        else:
            # Gateway ids: the (gateway, gateway_reference) unique index, every gateway.
            stmt = stmt.where(payments.c.gateway.in_(GATEWAY_NAMES),
                              or_(payments.c.gateway_reference == q))
    if after:
        stmt = stmt.where(tuple_(payments.c.created_at, payments.c.id) < tuple_(*after))
    return stmt.order_by(payments.c.created_at.desc(), payments.c.id.desc()).limit(limit)


def overview_query(days: int = 90, now: datetime | None = None) -> Any:
    """Per day and currency: payments, captured count and amounts, refunds."""
    now = now or datetime.now(UTC)
    # UTC days, spelled as a literal so it matches the expression statistics
    # (st_payments_created_day, migration b8e1f2a9c7d4) that make the planner hash-aggregate.
    day = literal_column("date_trunc('day', payments.created_at AT TIME ZONE 'UTC')").label("day")
    captured = payments.c.status.in_(CAPTURED)
    return (select(day, payments.c.currency, func.count().label("payments"),
                   func.count().filter(captured).label("captured"),
                   func.coalesce(func.sum(payments.c.amount).filter(captured), 0)
                   .label("captured_amount"),
                   func.coalesce(func.sum(payments.c.amount_refunded), 0).label("refunded"),
                   func.count().filter(payments.c.status == "failed").label("failed"))
            .where(payments.c.created_at >= now - timedelta(days=days))
            .group_by(day, payments.c.currency).order_by(day))


def _timed(conn: Connection, stmt: Any, repeat: int) -> tuple[list[float], int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = len(conn.execute(stmt).all())
        times.append(time.perf_counter() - start)
    return times, rows


def _p(times: list[float], pct: float) -> float:
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1000, 2)


def seed(db: Database, count: int) -> float:
    env = dict(os.environ, DATABASE_URL=db.url, SECRET_KEY=SECRET_KEY,
               BENCH_INSTANCE_PATH=str(OUT / "instance"), LOG_LEVEL="WARNING")
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "flask", "--app", "bench.wsgi_kassa", "seed-bench",
                    str(count)], cwd=ROOT, env=env, check=True)
    return time.monotonic() - start


def run(app_db: Database, sizes: Any) -> dict[str, Any]:
    count = PAYMENTS_OVERRIDE or sizes.pick(1_000_000, 1_000)
    repeat = sizes.pick(40, 2)
    # Full runs measure a database of their own; quick runs append to the app's.
    own = sizes.full
    db = Database.create("dash") if own else app_db
    try:
        if own:
            db.migrate_and_seed_demo()
        seed_seconds = seed(db, count)
        engine = create_engine(db.url, pool_size=2)
        results: list[dict[str, Any]] = []
        with engine.connect() as conn:
            sample = conn.execute(
                select(payments.c.public_id, orders.c.public_id, payments.c.customer_email,
                       payments.c.gateway_reference)
                .join(orders, orders.c.id == payments.c.order_id)
                .where(payments.c.id == select(func.max(payments.c.id)).scalar_subquery()
                       - count // 3)).one()
            newest = conn.execute(select(func.max(payments.c.created_at))).scalar_one()
            deep = conn.execute(list_query(limit=PAGE * 20)).all()[-1]
            old = newest - timedelta(days=365)
            cases = {
                "no filter, first page": {},
                "no filter, page 21 (keyset)": {"after": (deep.created_at, deep.id)},
                "status=succeeded": {"status": "succeeded"},
                "status=failed": {"status": "failed"},
                "status=authorized (1%)": {"status": "authorized"},
                "gateway=razorpay": {"gateway": "razorpay"},
                "currency=JPY": {"currency": "JPY"},
                "status=failed & gateway=sandbox": {"status": "failed", "gateway": "sandbox"},
                "status=refunded & currency=EUR": {"status": "refunded", "currency": "EUR"},
                "last 7 days": {"since": newest - timedelta(days=7)},
                "a 30-day window a year ago": {"since": old - timedelta(days=30), "until": old},
                "window a year ago & status=failed": {"since": old - timedelta(days=30),
                                                      "until": old, "status": "failed"},
                "search: payment id": {"q": sample[0]},
                "search: order id": {"q": sample[1]},
                "search: full e-mail": {"q": sample[2]},
                "search: e-mail prefix": {"q": sample[2].split("@")[0][:8]},
                "search: gateway reference": {"q": sample[3]},
                "search: no match": {"q": "nobody.at.all@"},
            }
            for label, kwargs in cases.items():
                times, rows = _timed(conn, list_query(**kwargs), repeat)
                results.append({"query": label, "rows": rows, "p50_ms": _p(times, 50),
                                "p95_ms": _p(times, 95)})
            ov_times, ov_rows = _timed(conn, overview_query(90, newest), repeat)
        engine.dispose()
        csv_result = export_in_child(db.url)
        worst = max(r["p95_ms"] for r in results)
        return {"name": "dashboard", "payments": count, "seed_seconds": round(seed_seconds, 1),
                "list_queries": results,
                "overview": {"days": 90, "rows": ov_rows, "p50_ms": _p(ov_times, 50),
                             "p95_ms": _p(ov_times, 95)},
                "csv": csv_result, "ratio": round(worst / 50.0, 3)}
    finally:
        if own:
            db.drop()


def export_in_child(url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.dashboard", "csv", url], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def export_csv(url: str) -> dict[str, Any]:
    """Stream every payment as CSV to a sink, sampling RSS (what a streamed response does)."""
    engine = create_engine(url)
    sink_bytes = 0
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    rows = 0
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(payments)).scalar_one()
        # A server-side cursor: rows arrive in chunks; nothing holds the whole result.
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(
            select(payments.c.public_id, orders.c.public_id, payments.c.created_at,
                   payments.c.status, payments.c.gateway, payments.c.amount,
                   payments.c.currency, payments.c.amount_refunded, payments.c.customer_email)
            .join(orders, orders.c.id == payments.c.order_id)
            .order_by(payments.c.created_at, payments.c.id))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["payment", "order", "created_at", "status", "gateway", "amount",
                         "currency", "refunded", "email"])
        step = max(1, total // 20)
        for row in result:
            writer.writerow(row)
            rows += 1
            if rows % 500 == 0:   # one streamed response chunk
                sink_bytes += len(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
            if rows % step == 0:
                samples.append((rows, _rss_mb()))
        sink_bytes += len(buffer.getvalue())
    engine.dispose()
    seconds = time.perf_counter() - start
    first = samples[0][1] if samples else _rss_mb()
    peak = max((s[1] for s in samples), default=first)
    return {"rows": rows, "seconds": round(seconds, 1), "mb_written": round(sink_bytes / 1e6, 1),
            "rss_mb_at_5pct": round(first, 1), "rss_mb_peak": round(peak, 1),
            "rss_growth_mb": round(peak - first, 1)}


if __name__ == "__main__":
    if sys.argv[1] == "csv":
        print(json.dumps(export_csv(sys.argv[2])))
