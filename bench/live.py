"""Benchmarks of the outbox's two outputs (issue 19):

- `streams`: 1,000 idle SSE streams held open against gunicorn (gevent workers, Redis
  fan-out): checkout throughput with them against without them (ratio, should be >= 0.95),
  and publish-to-receive latency during a webhook burst (p95, should be < 100 ms): one
  stream per order, the time from the webhook's 200 to the order's event on its stream.
- `deliveries`: outgoing webhooks to a local receiver (bench/receiver.py): 20,000 outbox
  events relayed and delivered by two sweeper processes; deliveries per second (should be
  >= 500) and none lost (every event id received, every delivery marked delivered).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from typing import Any

import requests

from app.crypto import keyring_for
from app.gateways.sandbox import sign
from bench.cpu import (
    CpuMeter,
    app_meter,
    children,
    combined_cpu,
    measure,
    per_op,
    postgres_backends,
)
from bench.harness import (
    BLIND_INDEX_KEY,
    ENCRYPTION_KEYS,
    KEY_SETTINGS,
    OUT,
    WEBHOOK_SECRET,
    Database,
    Process,
    Server,
    app_env,
    free_port,
    loadgen,
    wait_http,
)
from bench.serving import Sizes, _gateway_target, _redis_url, stop_shared


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 1)


class Streams:
    """Many SSE connections on one asyncio loop in a thread. A stream counts as open once
    the app has answered 200 with text/event-stream and sent the stream's first line
    (`retry:`), i.e. once a worker really holds it; records the wall-clock time at which
    each stream receives its first `order` event (by order id)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.opened = 0
        self.alive = 0  # open now: not closed by the server, not failed
        self.failed: list[str] = []
        self.received: dict[str, float] = {}
        self.tasks: list[Any] = []

    def open(self, paths: list[str]) -> None:
        async def one(path: str) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            counted = False
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
                    "\r\n".encode()
                )
                await writer.drain()
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                if not head.startswith("http/1.1 200") or "text/event-stream" not in head:
                    self.failed.append(head.split("\r\n", 1)[0])
                    return
                order = path.split("/")[2]
                while True:
                    line = await reader.readline()
                    if not line:
                        return
                    if not counted and line.startswith(b"retry:"):
                        counted = True
                        self.opened += 1
                        self.alive += 1
                    elif line.startswith(b"event: order") and order not in self.received:
                        self.received[order] = time.time()
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.failed.append(f"{type(exc).__name__}: {exc}")
            finally:
                if counted:
                    self.alive -= 1
                writer.close()

        for path in paths:
            self.tasks.append(asyncio.run_coroutine_threadsafe(one(path), self.loop))

    def wait_open(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.opened < count and time.monotonic() < deadline and not self.failed:
            time.sleep(0.05)
        if self.opened < count:
            raise RuntimeError(
                f"only {self.opened} of {count} streams opened; failures: {self.failed[:5]}"
            )

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _sockets(pid: int) -> int:
    """Open sockets of a process (a worker's connections, its pool's included)."""
    base = f"/proc/{pid}/fd"
    count = 0
    try:
        for fd in os.listdir(base):
            try:
                count += os.readlink(f"{base}/{fd}").startswith("socket:")
            except OSError:
                continue
    except OSError:
        return 0
    return count


def _sandbox_orders(url: str, count: int) -> list[dict[str, str]]:
    """Checkout sessions through the API with the sandbox gateway."""
    made = []
    for n in range(count):
        reply = requests.post(
            f"{url}/api/v1/checkout-sessions",
            json={
                "items": [{"sku": "tee-usd", "quantity": 1}],
                "customer": {"email": f"live{n}@example.com", "name": "Live"},
                "gateway": "sandbox",
            },
            timeout=30,
        )
        reply.raise_for_status()
        data = reply.json()["data"]
        made.append(
            {
                "order": data["order"]["id"],
                "payment": data["payment"]["id"],
                "session": data["payment"]["gateway_reference"],
            }
        )
    return made


def _success_event(o: dict[str, str], n: int) -> tuple[bytes, dict[str, str]]:
    stamp = int(time.time())
    body = json.dumps(
        {
            "id": f"evt_live_{stamp}_{n}",
            "type": "payment.succeeded",
            "created": stamp,
            "data": {
                "object": {
                    "id": o["session"],
                    "object": "checkout.session",
                    "status": "succeeded",
                    "amount": 2500,
                    "currency": "USD",
                    "payment_id": f"sbx_pay_live_{n}",
                    "metadata": {"payment_id": o["payment"]},
                }
            },
        },
        separators=(",", ":"),
    ).encode()
    return body, {
        "Content-Type": "application/json",
        "Kassa-Signature": sign(WEBHOOK_SECRET, body, stamp),
    }


def _burst(
    db: Database, url: str, held: Streams, burst_orders: list[dict[str, str]], first: int
) -> dict[str, list[float]]:
    """Every order's payment webhook at once; for each order whose stream got its event:
    milliseconds from the state change's commit (its outbox row: written in that
    transaction, so an upper bound of the commit time) and from the relay's dispatch to the
    event's arrival at the client, and from the webhook's 200 (end to end, the queueing
    of the webhook's processing behind the burst's intake included)."""
    acked: dict[str, float] = {}
    events = [_success_event(o, first + n) for n, o in enumerate(burst_orders)]

    def post(i: int) -> None:
        body, headers = events[i]
        reply = requests.post(f"{url}/webhooks/sandbox", data=body, headers=headers, timeout=30)
        if reply.status_code == 200:
            acked[burst_orders[i]["order"]] = time.time()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 30
    wanted = {o["order"] for o in burst_orders}
    while not wanted <= held.received.keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    ids = ",".join(f"'{o}'" for o in wanted)
    rows = db.rows(
        "SELECT order_id, extract(epoch from created_at), extract(epoch from dispatched_at)"
        f" FROM outbox_events WHERE type = 'order.paid' AND order_id IN ({ids})"
    )
    found: dict[str, list[float]] = {"commit": [], "dispatch": [], "ack": [], "missing": []}
    for order, created, dispatched in rows:
        at = held.received.get(order)
        if at is None:
            found["missing"].append(1)
            continue
        found["commit"].append((at - float(created)) * 1000)
        if dispatched is not None:
            found["dispatch"].append((at - float(dispatched)) * 1000)
        if order in acked:
            found["ack"].append((at - acked[order]) * 1000)
    found["paid"] = [float(len(rows))]
    found["acked"] = [float(len(acked))]
    return found


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": _pct(values, 0.5),
        "p95_ms": _pct(values, 0.95),
        "max_ms": round(max(values), 1) if values else None,
        "mean_ms": round(statistics.fmean(values), 1) if values else None,
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several checkout runs as one: the mean rate, the worst p99, every error and ok."""
    return {
        "rate": round(statistics.fmean(r["rate"] for r in runs), 1),
        "rates": [r["rate"] for r in runs],
        "p99_ms": max(r["p99_ms"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "cpu_ms_per_op": combined_cpu(runs),
    }


def _cpu_ratio(with_: list[dict[str, Any]], without: list[dict[str, Any]]) -> float | None:
    a = combined_cpu(with_).get("total_ms")
    b = combined_cpu(without).get("total_ms")
    return round(a / b, 3) if a and b else None


def streams(db: Database, sizes: Sizes) -> dict[str, Any]:
    """Checkout throughput with `idle` SSE streams held open against without them, in
    interleaved rounds (without/with, with/without, ...: drift of a shared machine falls
    on both sides), then webhook bursts with the streams held: one more stream per order,
    every order's webhook at once, publish-to-receive per order."""
    idle = sizes.pick(1000, 20)
    burst = sizes.pick(200, 5)
    rounds = sizes.pick(3, 1)
    bursts = sizes.pick(3, 1)
    clients = sizes.pick(200, 8)
    total = sizes.pick(8000, 30)
    max_seconds = sizes.pick(20, 3)
    gateway_port = free_port()
    target = _gateway_target(gateway_port)
    fake = Process(target["args"])
    redis_url = _redis_url()
    extra = dict(target["env"])
    if redis_url:
        extra["REDIS_URL"] = redis_url
    extra["LIVE_HEARTBEAT_SECONDS"] = "15"
    server: Server | None = None
    held: Streams | None = None
    try:
        wait_http(target["health"])
        server = Server("bench.wsgi_kassa:app", app_env(db, **extra)).start()
        cfg = {
            "host": "127.0.0.1",
            "port": server.port,
            "sku": "tee-usd",
            "gateway": target["gateway"],
            "expect_location": f"127.0.0.1:{gateway_port}/pay/",
            "clients": clients,
            "total": total,
            "max_seconds": max_seconds,
        }
        loadgen("checkout", dict(cfg, total=sizes.pick(1000, 5), max_seconds=sizes.pick(5, 2)))
        orders = _sandbox_orders(server.url, bursts * burst + 1)
        idle_path = f"/orders/{orders[0]['order']}/events"

        def hold() -> Streams:
            streams = Streams(server.port)
            streams.open([idle_path] * idle)
            streams.wait_open(idle)
            time.sleep(2)
            return streams

        runs: list[dict[str, Any]] = []
        held_per_worker: list[list[int]] = []
        load: list[float] = []
        for n in range(rounds):
            for with_streams in (False, True) if n % 2 == 0 else (True, False):
                if with_streams:
                    held = hold()
                    held_per_worker.append([_sockets(p) for p in server.worker_pids()])
                load.append(os.getloadavg()[0])
                run = measure(app_meter(server, db.name), lambda: loadgen("checkout", cfg))
                load.append(os.getloadavg()[0])
                run["round"] = n + 1
                run["idle_streams"] = 0
                if held is not None:
                    run["idle_streams"] = held.alive
                    if held.alive < idle:
                        raise RuntimeError(f"only {held.alive} of {idle} streams held the run")
                    held.close()
                    held = None
                runs.append(run)
        without = [r for r in runs if not r["idle_streams"]]
        with_ = [r for r in runs if r["idle_streams"]]
        mean_without = statistics.fmean(r["rate"] for r in without)
        mean_with = statistics.fmean(r["rate"] for r in with_)
        pairs = [
            round(w["rate"] / o["rate"], 3) if o["rate"] else None
            for w, o in zip(with_, without, strict=True)
        ]

        # The bursts: the idle streams held, one stream per burst order, its webhooks at once.
        held = hold()
        latencies: dict[str, list[float]] = {}
        per_burst = []
        for b in range(bursts):
            burst_orders = orders[1 + b * burst : 1 + (b + 1) * burst]
            before = held.opened
            held.open([f"/orders/{o['order']}/events" for o in burst_orders])
            held.wait_open(before + burst)
            time.sleep(1)
            load.append(os.getloadavg()[0])
            found = _burst(db, server.url, held, burst_orders, b * burst)
            load.append(os.getloadavg()[0])
            for key, values in found.items():
                latencies.setdefault(key, []).extend(values)
            per_burst.append(_summary(found["commit"]))
        idle_during_bursts = held.alive - bursts * burst
        commit = latencies.get("commit", [])
        return {
            "name": "streams",
            "setup": {
                "idle streams": idle,
                "burst orders": burst,
                "bursts": bursts,
                "rounds": rounds,
                "customers": clients,
                "redis": bool(redis_url),
                "worker class": server.env["WORKER_CLASS"],
                "workers": server.env["WEB_CONCURRENCY"],
                "sockets per worker with the streams held": held_per_worker,
            },
            "runs": runs,
            "checkout_without_streams": _aggregate(without),
            "checkout_with_streams": _aggregate(with_),
            "pair_ratios": pairs,
            "ratio": round(mean_with / mean_without, 3) if mean_without else None,
            "cpu_ratio": _cpu_ratio(with_, without),
            "publish_to_receive": {
                "paid": int(sum(latencies.get("paid", []))),
                "acked": int(sum(latencies.get("acked", []))),
                "received": len(commit),
                "missing": len(latencies.get("missing", [])),
                "idle streams held during the bursts": idle_during_bursts,
                "from": "the state change's outbox row (its transaction) to arrival",
                **_summary(commit),
                "per_burst": per_burst,
                "from_relay_dispatch": _summary(latencies.get("dispatch", [])),
                "from_webhook_ack": _summary(latencies.get("ack", [])),
            },
            "load_during": {
                "mean": round(statistics.fmean(load), 2),
                "max": round(max(load), 2),
            },
        }
    finally:
        if held is not None:
            held.close()
        if server is not None:
            server.stop()
        fake.stop()


SWEEPER = """
import os, sys, time
sys.stderr = open(sys.argv[2], "w", buffering=1)  # the sweeper's log, for a failed run
from app import create_app
from app.payments.outgoing import delivery
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1],
                  "OUTGOING_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
                  "OUTGOING_WEBHOOK_CONCURRENCY": sys.argv[6], "OUTGOING_WEBHOOK_BATCH": "200",
                  "SCHEDULER_ENABLED": False, "JOBS_EAGER": True,
                  "ENCRYPTION_KEYS": sys.argv[3], "BLIND_INDEX_KEY": sys.argv[4]})
with app.app_context():
    delivery.sweep()  # nothing due yet: connections and the sender made before the clock runs
open(sys.argv[7], "w").close()
while not os.path.exists(sys.argv[5]):
    time.sleep(0.01)
profiles = []
if os.environ.get("BENCH_PROFILE_SWEEPER"):  # cProfile of every thread, dumped on exit
    import atexit, cProfile, pstats, signal, threading
    def _thread_profile(*_):
        sys.setprofile(None)
        profiles.append(cProfile.Profile(time.thread_time))
        profiles[-1].enable()
    def _dump(*_):
        for p in profiles:
            p.create_stats()
        pstats.Stats(*profiles).dump_stats(sys.argv[2] + ".prof")
        os._exit(0)
    threading.setprofile(_thread_profile)
    signal.signal(signal.SIGTERM, _dump)
    _thread_profile()
idle = 0
with app.app_context():
    while idle < 50:
        sent = delivery.sweep()
        idle = 0 if sent else idle + 1
        if not sent:
            time.sleep(0.1)
"""

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def deliveries(db: Database, sizes: Sizes) -> dict[str, Any]:
    """Outbox rows written undispatched (as a state change leaves them), relayed and
    delivered by sweeper processes (the job system's `outgoing.sweep`, what a Celery or
    in-process worker runs) to bench/receiver.py, which verifies each request with the
    `standardwebhooks` package. The clock starts once the sweepers are up (app built,
    connected) and stops when every delivery is marked delivered."""
    count = int(os.environ.get("BENCH_DELIVERIES_EVENTS") or sizes.pick(30000, 100))
    processes = sizes.pick(2, 1)
    concurrency = 32
    # The earlier benchmarks' servers would relay these events too, and their SSRF guard
    # (rightly) refuses the loopback receiver: only the sweepers below may send them.
    stop_shared()
    port = free_port()
    receiver = Process(["-m", "bench.receiver", "--port", str(port), "--secret", SECRET])
    sweepers: list[Process] = []
    go = OUT / f"deliveries-go-{port}"
    ready = [OUT / f"deliveries-ready-{port}-{n}" for n in range(processes)]
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        db.scalar("DELETE FROM webhook_endpoints WHERE public_id = 'we_bench' RETURNING 1")
        # The secret is encrypted at rest, with the bench's key (app/crypto.py).
        secret = keyring_for(KEY_SETTINGS).encrypt(SECRET)
        db.scalar(
            "WITH e AS (INSERT INTO webhook_endpoints (public_id, url, description, event_types,"
            " enabled, secret, created_at, updated_at) VALUES ('we_bench', "
            f"'http://127.0.0.1:{port}/hooks', 'bench', '[]', true, "
            f"'{secret}', now(), now()) RETURNING id) "
            "SELECT id FROM e"
        )
        sweepers = [
            Process(
                [
                    "-c",
                    SWEEPER,
                    db.url,
                    str(OUT / f"sweeper-{n}.log"),
                    ENCRYPTION_KEYS,
                    BLIND_INDEX_KEY,
                    str(go),
                    str(concurrency),
                    str(ready[n]),
                ]
            )
            for n in range(processes)
        ]
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sweepers not ready; see {OUT}/sweeper-*.log")
            time.sleep(0.05)
        # Undispatched outbox rows, as the state changes' transactions leave them.
        db.scalar(
            "WITH e AS (INSERT INTO outbox_events (public_id, type, subject_type, subject_id,"
            " order_id, payment_id, data, created_at) SELECT 'evt_bench_' || n, 'order.paid',"
            " 'order', 'ord_bench_' || n, 'ord_bench_' || n, NULL,"
            " json_build_object('id', 'ord_bench_' || n, 'object', 'order', 'status', 'paid'),"
            f" now() FROM generate_series(1, {count}) n RETURNING 1) SELECT count(*) FROM e"
        )
        meter = CpuMeter(
            {
                "sweepers": lambda: [p for s in sweepers for p in children(s.proc.pid)],
                "postgres": lambda: postgres_backends(db.name),
                "receiver": lambda: [receiver.proc.pid],
            }
        )
        load = [os.getloadavg()[0]]
        meter.start()
        started = time.monotonic()
        go.touch()
        deadline = started + sizes.pick(300, 60)
        delivered = 0
        while time.monotonic() < deadline:
            delivered = (
                db.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") or 0
            )
            if delivered >= count:
                break
            time.sleep(0.25)
            load.append(os.getloadavg()[0])
        elapsed = time.monotonic() - started
        spent = meter.stop()
        stats = requests.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
        events = db.scalar("SELECT count(*) FROM outbox_events WHERE public_id LIKE 'evt_bench_%'")
        rows = db.scalar(
            "SELECT count(*) FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id"
            " WHERE e.public_id LIKE 'evt_bench_%'"
        )
        attempts = db.scalar(
            "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
            " ON d.id = a.delivery_id JOIN outbox_events e ON e.id = d.event_id"
            " WHERE e.public_id LIKE 'evt_bench_%'"
        )
        sustained = stats.get("sustained_rate")
        return {
            "name": "deliveries",
            "setup": {
                "events": count,
                "sweeper processes": len(sweepers),
                "concurrency each": concurrency,
                "receiver": "asyncio, verifies with standardwebhooks",
            },
            "delivered": delivered,
            "seconds": round(elapsed, 1),
            "rate": round(delivered / elapsed, 1) if elapsed else None,
            "sustained_rate": sustained,
            "slowest_5s_rate": stats.get("slowest_window_rate"),
            "receiver": stats,
            "check": {
                "outbox rows": events,
                "deliveries": rows,
                "attempts logged": attempts,
            },
            "none_lost": delivered == count
            and rows == count
            and stats["verified_distinct_ids"] == count
            and stats["bad_signature"] == 0,
            "cpu_ms_per_op": per_op(spent, delivered),
            "load_during": {
                "mean": round(statistics.fmean(load), 2),
                "max": round(max(load), 2),
            },
            # The lower of the sustained rate and the overall one, against the 500/s target.
            "ratio": round(min(sustained or 0, delivered / elapsed) / 500, 3) if elapsed else None,
        }
    finally:
        for s in sweepers:
            s.stop()
        receiver.stop()
        for path in (go, *ready):
            path.unlink(missing_ok=True)
