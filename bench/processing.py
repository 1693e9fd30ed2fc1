"""Webhook processing of real events (issue 21, item 2).

Open sandbox payments are made through the API (real checkouts, so each has its order,
items, attempt and audit rows); then signed sandbox events that match them are posted to
`/webhooks/sandbox` by the load generator, in five patterns by payment (n % 5):

- paid: payment.processing, then payment.succeeded
- failed: payment.failed
- refunded: payment.succeeded, then refund.succeeded (the whole amount)
- duplicated: payment.succeeded twice with the same event id (the second is a duplicate)
- out of order: refund.succeeded before payment.succeeded, then a late payment.processing

Each applied event moves a state machine in one transaction with its audit row and outbox
event; a succeeded payment also gets its receipt job. The figure is acknowledged -> applied:
every stored event processed, from the first send to the last `processed` row, with the
in-process drainer (the default deployment) and with real Celery workers (`celery -A
app.jobs.worker worker`, two workers with a prefork pool of one child each: one per CPU)
over Redis and over RabbitMQ.
Afterwards every payment's status is checked against its pattern.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from app.gateways.sandbox import sign
from bench.cpu import CpuMeter, children, per_op, postgres_backends, postgres_shared
from bench.harness import (
    OUT,
    ROOT,
    WEBHOOK_SECRET,
    Database,
    Server,
    app_env,
    loadgen,
)
from bench.serving import Sizes

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PATTERNS = ("paid", "failed", "refunded", "duplicated", "out of order")
EXPECTED = {
    "paid": "succeeded",
    "failed": "failed",
    "refunded": "refunded",
    "duplicated": "succeeded",
    "out of order": "refunded",
}


def broker_up(url: str) -> bool:
    try:
        if url.startswith("redis"):
            import redis

            return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
        from kombu import Connection

        with Connection(url, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - not running here
        return False


class CeleryWorker:
    """A real `celery -A app.jobs.worker worker` process with the default (prefork) pool of
    one child, as `make worker` runs it. Not the solo pool: over RabbitMQ, with late acks and
    a prefetch of one, a solo worker waited about 40 ms between tasks (300 empty tasks took
    13.2 s solo against 2.8 s prefork; over Redis 2.4 s solo), which made the RabbitMQ mode
    measure that wait instead of the work."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.log_path = OUT / f"celery-{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app.jobs.worker",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--loglevel=INFO",  # as deployed; it prints the "ready." line
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{name}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("celery worker exited: " + self.log_path.read_text()[-2000:])
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError("celery worker not ready: " + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def make_payments(url: str, count: int, label: str) -> list[str]:
    """Open sandbox payments through the API; their public ids."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=8)
    session.mount("http://", adapter)

    def one(n: int) -> str:
        reply = session.post(
            f"{url}/api/v1/checkout-sessions",
            json={
                "items": [{"sku": "tee-usd", "quantity": 1}],
                "customer": {"email": f"p{label}{n}@example.com", "name": "Bench"},
                "gateway": "sandbox",
            },
            timeout=60,
        )
        reply.raise_for_status()
        return str(reply.json()["data"]["payment"]["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _payment_event(kind: str, eid: str, p: dict[str, Any], stamp: int) -> dict[str, Any]:
    status = kind.split(".", 1)[1]
    return {
        "id": eid,
        "type": kind,
        "created": stamp,
        "data": {
            "object": {
                "id": p["session"],
                "object": "checkout.session",
                "status": status,
                "amount": p["amount"],
                "currency": p["currency"],
                "payment_id": "sbx_pay_" + p["id"],
                "metadata": {"payment_id": p["id"]},
                "failure_code": "card_declined" if status == "failed" else None,
                "failure_message": "Your card was declined." if status == "failed" else None,
                "card": {"brand": "visa", "last4": "4242"},
            }
        },
    }


def _refund_event(eid: str, p: dict[str, Any], stamp: int) -> dict[str, Any]:
    return {
        "id": eid,
        "type": "refund.succeeded",
        "created": stamp,
        "data": {
            "object": {
                "id": "sbx_re_" + p["id"],
                "object": "refund",
                "status": "succeeded",
                "amount": p["amount"],
                "currency": p["currency"],
                "session": p["session"],
                "payment_id": "sbx_pay_" + p["id"],
                "metadata": {},
                "session_metadata": {"payment_id": p["id"]},
            }
        },
    }


def build_events(payments: list[dict[str, Any]], label: str) -> tuple[str, int, int]:
    """Signed events for the payments, in waves (every payment's first event, then every
    second one...); returns (file, events, distinct events)."""
    stamp = int(time.time())
    waves: list[list[dict[str, Any]]] = [[], [], []]
    for n, p in enumerate(payments):
        pattern = PATTERNS[n % len(PATTERNS)]
        eid = f"evt_proc_{label}_{n}_"
        if pattern == "paid":
            seq = [
                _payment_event("payment.processing", eid + "a", p, stamp),
                _payment_event("payment.succeeded", eid + "b", p, stamp),
            ]
        elif pattern == "failed":
            seq = [_payment_event("payment.failed", eid + "a", p, stamp)]
        elif pattern == "refunded":
            seq = [
                _payment_event("payment.succeeded", eid + "a", p, stamp),
                _refund_event(eid + "b", p, stamp),
            ]
        elif pattern == "duplicated":
            first = _payment_event("payment.succeeded", eid + "a", p, stamp)
            seq = [first, first]
        else:
            seq = [
                _refund_event(eid + "a", p, stamp),
                _payment_event("payment.succeeded", eid + "b", p, stamp),
                _payment_event("payment.processing", eid + "c", p, stamp),
            ]
        for i, event in enumerate(seq):
            waves[i].append(event)
    target = OUT / f"processing-events-{label}.jsonl"
    total = 0
    distinct = set()
    with open(target, "w") as fh:
        for wave in waves:
            for event in wave:
                body = json.dumps(event, separators=(",", ":"))
                headers = {
                    "Content-Type": "application/json",
                    "Kassa-Signature": sign(WEBHOOK_SECRET, body.encode(), stamp),
                }
                fh.write(json.dumps({"body": body, "headers": headers}) + "\n")
                total += 1
                distinct.add(event["id"])
    return str(target), total, len(distinct)


def _open_payments(db: Database, ids: list[str]) -> list[dict[str, Any]]:
    quoted = ",".join(f"'{i}'" for i in ids)
    rows = db.scalar(
        "SELECT json_agg(json_build_object('id', public_id, 'session', gateway_reference, "
        f"'amount', amount, 'currency', currency)) FROM payments WHERE public_id IN ({quoted})"
    )
    by_id = {r["id"]: r for r in rows}
    return [by_id[i] for i in ids]


def _receipts_expected(count: int) -> int:
    """One order_paid receipt per payment that ends captured (every pattern but failed),
    one refund_succeeded receipt per refunded one (refunded, out of order)."""
    return sum((n % 5 != 1) + (n % 5 in (2, 4)) for n in range(count))


def _check(db: Database, payments: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Every payment ended as its pattern says; rows written for what was applied."""
    quoted = ",".join(f"'{p['id']}'" for p in payments)
    statuses = db.scalar(
        f"SELECT json_object_agg(public_id, status) FROM payments WHERE public_id IN ({quoted})"
    )
    wrong = [
        (p["id"], PATTERNS[n % 5], statuses[p["id"]])
        for n, p in enumerate(payments)
        if statuses[p["id"]] != EXPECTED[PATTERNS[n % 5]]
    ]
    ids = f"SELECT id FROM payments WHERE public_id IN ({quoted})"
    refunds = db.scalar(f"SELECT count(*) FROM refunds WHERE payment_id IN ({ids})")
    return {
        "payments": len(payments),
        "payments_as_expected": not wrong,
        "wrong_samples": wrong[:5],
        "refunds": refunds,
        "refunds_expected": sum(1 for n in range(len(payments)) if n % 5 in (2, 4)),
        "receipts_sent": db.scalar(
            "SELECT count(*) FROM receipts WHERE status = 'sent' AND order_id IN "
            f"(SELECT order_id FROM payments WHERE public_id IN ({quoted}))"
        ),
        "receipts_expected": _receipts_expected(len(payments)),
        "audit_rows_by_gateway": db.scalar(
            f"SELECT count(*) FROM audit_entries WHERE actor_type = 'gateway' AND payment_id IN "
            f"({ids})"
        ),
        "outbox_rows": db.scalar(
            f"SELECT count(*) FROM outbox_events WHERE payment_id IN ({quoted})"
        ),
        "outcomes": db.scalar(
            "SELECT json_object_agg(o, n) FROM (SELECT coalesce(outcome, status) o, count(*) n "
            f"FROM webhook_events WHERE event_id LIKE 'evt_proc_{label}_%' GROUP BY 1) t"
        ),
    }


def _work_left(db: Database, like: str, payments_in: str, receipts_expected: int) -> int:
    """What is still to do for this run: stored events not yet processed, receipts not
    yet sent, outbox rows not yet relayed (the jobs an applied event causes)."""
    orders = f"SELECT order_id FROM payments WHERE public_id IN ({payments_in})"
    return int(
        db.scalar(
            "SELECT (SELECT count(*) FROM webhook_events WHERE status <> 'processed' "
            f"AND event_id LIKE '{like}') + greatest(0, {receipts_expected} - (SELECT count(*) "
            f"FROM receipts WHERE status = 'sent' AND order_id IN ({orders}))) + (SELECT "
            "count(*) FROM outbox_events WHERE dispatched_at IS NULL AND payment_id IN "
            f"({payments_in}))"
        )
    )


def _wait_done(
    db: Database, like: str, payments_in: str, receipts_expected: int, stall_s: float
) -> tuple[float | None, int, bool]:
    """Wait until every stored event of this run is processed and the receipts and relay
    it caused are done, for as long as the backlog keeps shrinking: the wait ends early
    only when nothing moved for `stall_s` seconds (a lost job or a stuck worker), never
    because the machine is slow. Returns (when the last event was processed, in
    time.monotonic(), or None; what is left; whether a stall ended the wait)."""
    left: int | None = None
    progress_at = time.monotonic()
    applied_at: float | None = None
    while True:
        if applied_at is None and not db.scalar(
            "SELECT count(*) FROM webhook_events WHERE status <> 'processed' "
            f"AND event_id LIKE '{like}'"
        ):
            applied_at = time.monotonic()
        now_left = _work_left(db, like, payments_in, receipts_expected)
        if now_left == 0:
            # The last events may have been applied between the two queries.
            return applied_at or time.monotonic(), 0, False
        if left is None or now_left < left:
            progress_at = time.monotonic()
        left = now_left
        if time.monotonic() - progress_at > stall_s:
            return applied_at, left, True
        time.sleep(0.1)


def _log_count(server: Server, words: str) -> int:
    """How many lines of the server's log say `words` (jobs the broker refused...)."""
    if server.log_path is None or not server.log_path.exists():
        return 0
    return sum(1 for line in server.log_path.open(errors="replace") if words in line)


def _one_mode(
    db: Database, sizes: Sizes, mode: str, broker: str | None, count: int, senders: int
) -> dict[str, Any]:
    label = f"{mode.replace(' ', '')}{secrets.token_hex(2)}"
    extra: dict[str, str] = {}
    queue = f"kassa-bench-{label}"
    if broker:
        extra = {"CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue}
    server = Server("bench.wsgi_kassa:app", app_env(db, **extra)).start()
    workers: list[CeleryWorker] = []
    try:
        if broker:
            env = dict(os.environ)
            env.update(app_env(db, **extra))
            env["PUBLIC_BASE_URL"] = server.url.replace("http://", "https://", 1)
            env["KASSA_INSTANCE_PATH"] = str(OUT / "instance")
            workers = [CeleryWorker(env, f"{label}-{n}") for n in range(2)]
            for w in workers:
                w.wait_ready()
        ids = make_payments(server.url, count, label)
        payments = _open_payments(db, ids)
        events_file, total, distinct = build_events(payments, label)
        like = f"evt_proc_{label}_%"
        meter = CpuMeter(
            {
                "web workers": lambda: children(server.proc.pid) if server.proc else [],
                "celery workers": lambda: [p for w in workers for p in children(w.proc.pid)],
                "postgres backends": lambda: postgres_backends(db.name),
                "postgres shared": postgres_shared,
            }
        )
        load = os.getloadavg()[0]
        meter.start()
        started = time.monotonic()
        run = loadgen(
            "webhooks",
            {
                "host": "127.0.0.1",
                "port": server.port,
                "path": "/webhooks/sandbox",
                "clients": senders,
                "total": total,
                "max_seconds": sizes.pick(120, 30),
                "events_file": events_file,
            },
        )
        acked_s = time.monotonic() - started
        payments_in = ",".join(f"'{p['id']}'" for p in payments)
        applied_at, left, stalled = _wait_done(
            db, like, payments_in, _receipts_expected(len(payments)), sizes.pick(90, 45)
        )
        done_s = time.monotonic() - started
        # CPU counted until the receipts and relay runs the events caused are done too.
        spent = meter.stop()
        pending = db.scalar(
            "SELECT count(*) FROM webhook_events WHERE status <> 'processed' "
            f"AND event_id LIKE '{like}'"
        )
        applied_s = applied_at - started if applied_at is not None else None
        stored = db.scalar(f"SELECT count(*) FROM webhook_events WHERE event_id LIKE '{like}'")
        check = _check(db, payments, label)
        return {
            "mode": mode,
            "events_sent": total,
            "distinct_events": distinct,
            "intake": run,
            "stored": stored,
            "unprocessed_after_wait": pending,
            "wait_ended_by_stall": stalled,
            "jobs_not_sent_to_broker": _log_count(server, "could not send job"),
            "acked_after_s": round(acked_s, 2),
            "applied_after_s": round(applied_s, 2) if applied_s is not None else None,
            "applied_per_s": round(stored / applied_s, 1) if applied_s else None,
            "all_done_after_s": round(done_s, 2),
            "work_left_after_wait": left,
            "cpu_s": {k: round(v, 2) for k, v in spent.items()},
            "cpu_ms_per_applied_event": per_op(spent, stored or 0),
            "load_average_1min_at_start": round(load, 2),
            "check": check,
        }
    finally:
        for w in workers:
            w.stop()
        server.stop()


def run(db: Database, sizes: Sizes) -> dict[str, Any]:
    count = sizes.pick(2000, 25)
    senders = sizes.pick(32, 4)
    # Quick runs (CI) skip RabbitMQ: starting two more Celery workers is most of their time.
    default = "inproc,redis,rabbitmq" if sizes.full else "inproc,redis"
    only = os.environ.get("BENCH_PROCESSING_MODES", default).split(",")
    result: dict[str, Any] = {
        "name": "processing",
        "setup": {
            "payments": count,
            "senders": senders,
            "patterns (by payment)": ", ".join(PATTERNS),
            "celery workers": "2 x prefork pool of 1",
        },
    }
    modes = {"inproc": None, "redis": REDIS, "rabbitmq": AMQP}
    for mode in only:
        broker = modes[mode]
        if broker and not broker_up(broker):
            result[mode] = {"skipped": f"broker not reachable at {broker}"}
            continue
        try:
            result[mode] = _one_mode(db, sizes, mode, broker, count, senders)
        except Exception as exc:  # noqa: BLE001 - report it, run the other modes
            result[mode] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    rates = [
        result[m]["applied_per_s"]
        for m in only
        if isinstance(result.get(m), dict) and result[m].get("applied_per_s")
    ]
    best = max(rates) if rates else None
    result["best_applied_per_s"] = best
    result["target_applied_per_s"] = 1000
    result["ratio"] = round(best / 1000, 3) if best else None
    result["all_as_expected"] = all(
        result[m]["check"]["payments_as_expected"]
        for m in only
        if isinstance(result.get(m), dict) and "check" in result[m]
    )
    return result


if __name__ == "__main__":  # `python -m bench.processing`: this benchmark alone
    from bench.__main__ import main

    sys.exit(main(["--only", "processing", *sys.argv[1:]]))
