"""c. The dashboard at a million payments (PostgreSQL).

Seeds with `flask seed-bench N` (the real command, progress bar and all), then times the
dashboard's own query code, app/dashboard/queries.py, as its pages call it (ORM, cursor
decoding, the order's eager load; a fresh session per call, like a request):
- `payment_page` with each filter (status, gateway, currency, date range, combinations),
  the search box (payment/order id, e-mail, gateway reference, no match), a deep page by
  cursor and the oldest-first order;
- `overview(90)`: the 90-day overview's per-day sums;
- `export_rows`: every row of the CSV export through a server-side cursor, in a child
  process whose resident memory is sampled as rows go by (constant memory = flat RSS).
Times are wall-clock around the call in this process (Python, driver and loopback
included, so above the server's own time).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.cpu import CpuMeter, per_op, postgres_backends
from bench.harness import KEY_SETTINGS, OUT, ROOT, SECRET_KEY, Database

PAYMENTS_OVERRIDE: int | None = None


def _p(times: list[float], pct: float) -> float:
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] * 1000, 2)


def seed(db: Database, count: int) -> float:
    env = dict(
        os.environ,
        DATABASE_URL=db.url,
        SECRET_KEY=SECRET_KEY,
        BENCH_INSTANCE_PATH=str(OUT / "instance"),
        LOG_LEVEL="WARNING",
        **KEY_SETTINGS,  # the keys the bench's servers encrypted with
    )
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "bench.wsgi_kassa", "seed-bench", str(count)],
        cwd=ROOT,
        env=env,
        check=True,
    )
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
        # CPU: this process (the app's query code runs here) and the database's backends.
        meter = CpuMeter(
            {"app": lambda: [os.getpid()], "postgres": lambda: postgres_backends(db.name)}
        )
        meter.start()
        timed = _through_app(db, count, repeat)
        timed["cpu_ms_per_op"] = per_op(meter.stop(), timed["queries_run"])
        meter = CpuMeter({"postgres": lambda: postgres_backends(db.name)})
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter.start()
        csv_result = export_in_child(db.url)
        spent = meter.stop()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent["app"] = (children_after.ru_utime + children_after.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        # Per 1,000 rows exported (the export runs in a child process of its own).
        per_row = per_op(spent, csv_result["rows"])
        csv_result["cpu_ms_per_1000_rows"] = {k: round(v * 1000, 1) for k, v in per_row.items()}
        worst = max(r["p95_ms"] for r in timed["list_queries"])
        return {
            "name": "dashboard",
            "payments": count,
            "seed_seconds": round(seed_seconds, 1),
            **timed,
            "csv": csv_result,
            "ratio": round(worst / 50.0, 3),
        }
    finally:
        if own:
            db.drop()


def _app(url: str) -> Any:
    from app import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET_KEY,
            **KEY_SETTINGS,
            "INSTANCE_PATH": str(OUT / "instance"),
            "LOG_LEVEL": "WARNING",
            "ACCESS_LOG": False,
        }
    )


def _through_app(db: Database, count: int, repeat: int) -> dict[str, Any]:
    from app.dashboard import queries as q
    from app.extensions import db as fdb
    from app.models import Order, Payment

    app = _app(db.url)
    results: list[dict[str, Any]] = []
    with app.app_context():
        last_id = fdb.session.execute(select(func.max(Payment.id))).scalar_one()
        sample = fdb.session.execute(
            select(
                Payment.public_id,
                Order.public_id,
                Payment.customer_email,
                Payment.gateway_reference,
            )
            .join(Order, Order.id == Payment.order_id)
            .where(Payment.id == last_id - count // 3)
        ).one()
        newest = fdb.session.execute(select(func.max(Payment.created_at))).scalar_one()
        fdb.session.remove()
        cursor = None
        for _ in range(20):
            cursor = q.payment_page(q.PaymentFilters(), after=cursor).next_cursor
            fdb.session.remove()
        today = newest.date()
        year_ago = today - timedelta(days=365)
        window: dict[str, Any] = {"date_from": year_ago - timedelta(days=30), "date_to": year_ago}
        cases: dict[str, tuple[Any, str | None]] = {
            "no filter, first page": (q.PaymentFilters(), None),
            "no filter, page 21 (cursor)": (q.PaymentFilters(), cursor),
            "oldest first": (q.PaymentFilters(sort="oldest"), None),
            "status=succeeded": (q.PaymentFilters(status="succeeded"), None),
            "status=failed": (q.PaymentFilters(status="failed"), None),
            "status=authorized (1%)": (q.PaymentFilters(status="authorized"), None),
            "gateway=razorpay": (q.PaymentFilters(gateway="razorpay"), None),
            "currency=JPY": (q.PaymentFilters(currency="JPY"), None),
            "status=failed & gateway=sandbox": (
                q.PaymentFilters(status="failed", gateway="sandbox"),
                None,
            ),
            "status=refunded & currency=EUR": (
                q.PaymentFilters(status="refunded", currency="EUR"),
                None,
            ),
            "last 7 days": (q.PaymentFilters(date_from=today - timedelta(days=7)), None),
            "a 30-day window a year ago": (q.PaymentFilters(**window), None),
            "window a year ago & status=failed": (
                q.PaymentFilters(**window, status="failed"),
                None,
            ),
            "search: payment id": (q.PaymentFilters(q=sample[0]), None),
            "search: order id": (q.PaymentFilters(q=sample[1]), None),
            "search: e-mail": (q.PaymentFilters(q=sample[2]), None),
            "search: gateway reference": (q.PaymentFilters(q=sample[3]), None),
            "search: no match": (q.PaymentFilters(q="nobody@example.invalid"), None),
        }
        for label, (filters, after) in cases.items():
            times, rows = [], 0
            for _ in range(repeat):
                start = time.perf_counter()
                rows = len(q.payment_page(filters, after=after).payments)
                times.append(time.perf_counter() - start)
                fdb.session.remove()
            results.append(
                {"query": label, "rows": rows, "p50_ms": _p(times, 50), "p95_ms": _p(times, 95)}
            )
        ov_times = []
        for _ in range(repeat):
            start = time.perf_counter()
            q.overview(90, today=today)
            ov_times.append(time.perf_counter() - start)
            fdb.session.remove()
        fdb.engine.dispose()
    return {
        "queries_run": repeat * (len(results) + 1),
        "list_queries": results,
        "overview": {
            "days": 90,
            "rows": "per day, gateway and currency",
            "p50_ms": _p(ov_times, 50),
            "p95_ms": _p(ov_times, 95),
        },
        "measured": "app.dashboard.queries: payment_page, overview, export_rows",
    }


def export_in_child(url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.dashboard", "csv", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def export_csv(url: str) -> dict[str, Any]:
    """Write every payment as CSV to a sink through the dashboard's export_rows, sampling
    RSS (what the streamed CSV response does, minus the socket)."""
    from app.dashboard import queries as q
    from app.extensions import db as fdb
    from app.models import Payment

    app = _app(url)
    sink_bytes = 0
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    rows = 0
    with app.app_context():
        total = fdb.session.execute(select(func.count(Payment.id))).scalar_one()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        step = max(1, total // 20)
        for row in q.export_rows(q.PaymentFilters()):
            writer.writerow(row)
            rows += 1
            if rows % 500 == 0:  # one streamed response chunk
                sink_bytes += len(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
            if rows % step == 0:
                samples.append((rows, _rss_mb()))
        sink_bytes += len(buffer.getvalue())
        fdb.session.remove()
        fdb.engine.dispose()
    seconds = time.perf_counter() - start
    first = samples[0][1] if samples else _rss_mb()
    peak = max((s[1] for s in samples), default=first)
    return {
        "rows": rows,
        "seconds": round(seconds, 1),
        "mb_written": round(sink_bytes / 1e6, 1),
        "rss_mb_at_5pct": round(first, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_growth_mb": round(peak - first, 1),
    }


if __name__ == "__main__":
    if sys.argv[1] == "csv":
        print(json.dumps(export_csv(sys.argv[2])))
