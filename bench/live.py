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
import statistics
import threading
import time
from typing import Any

import requests

from app.crypto import keyring_for
from app.gateways.sandbox import sign
from bench.cpu import CpuMeter, app_meter, children, measure, per_op, postgres_backends
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
    """Many SSE connections on one asyncio loop in a thread; records when each stream
    receives an event (by order id)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.opened = 0
        self.received: dict[str, float] = {}
        self.tasks: list[Any] = []

    def open(self, paths: list[str]) -> None:
        async def one(path: str) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            await writer.drain()
            self.opened += 1
            order = path.split("/")[2]
            try:
                while True:
                    line = await reader.readline()
                    if not line:
                        return
                    if line.startswith(b"event: order") and order not in self.received:
                        self.received[order] = time.monotonic()
            finally:
                writer.close()

        for path in paths:
            self.tasks.append(asyncio.run_coroutine_threadsafe(one(path), self.loop))

    def wait_open(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.opened < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.opened < count:
            raise RuntimeError(f"only {self.opened} of {count} streams opened")

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


def streams(db: Database, sizes: Sizes) -> dict[str, Any]:
    idle = sizes.pick(1000, 20)
    burst = sizes.pick(200, 5)
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
        without = measure(app_meter(server, db.name), lambda: loadgen("checkout", cfg))
        orders = _sandbox_orders(server.url, burst + 1)
        held = Streams(server.port)
        held.open([f"/orders/{orders[0]['order']}/events"] * idle)
        held.wait_open(idle)
        time.sleep(2)
        with_streams = measure(app_meter(server, db.name), lambda: loadgen("checkout", cfg))
        # The burst: one stream per order, then every order's webhook at once.
        burst_orders = orders[1:]
        held.open([f"/orders/{o['order']}/events" for o in burst_orders])
        held.wait_open(idle + burst)
        time.sleep(2)
        acked: dict[str, float] = {}
        events = [_success_event(o, n) for n, o in enumerate(burst_orders)]

        def post(i: int) -> None:
            body, headers = events[i]
            reply = requests.post(
                f"{server.url}/webhooks/sandbox", data=body, headers=headers, timeout=30
            )
            if reply.status_code == 200:
                acked[burst_orders[i]["order"]] = time.monotonic()

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(events))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 30
        while len(held.received) < len(acked) and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = [
            (held.received[o] - at) * 1000 for o, at in acked.items() if o in held.received
        ]
        return {
            "name": "streams",
            "setup": {
                "idle streams": idle,
                "burst orders": burst,
                "customers": clients,
                "redis": bool(redis_url),
                "worker class": server.env["WORKER_CLASS"],
                "workers": server.env["WEB_CONCURRENCY"],
            },
            "checkout_without_streams": without,
            "checkout_with_streams": with_streams,
            "ratio": round(with_streams["rate"] / without["rate"], 3) if without["rate"] else None,
            "publish_to_receive": {
                "acked": len(acked),
                "received": len(latencies),
                "p50_ms": _pct(latencies, 0.5),
                "p95_ms": _pct(latencies, 0.95),
                "max_ms": round(max(latencies), 1) if latencies else None,
                "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
            },
        }
    finally:
        if held is not None:
            held.close()
        if server is not None:
            server.stop()
        fake.stop()


SWEEPER = """
import sys, time
sys.stderr = open(sys.argv[2], "w", buffering=1)  # the sweeper's log, for a failed run
from app import create_app
from app.payments.outgoing import delivery
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1],
                  "OUTGOING_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
                  "OUTGOING_WEBHOOK_CONCURRENCY": "32", "OUTGOING_WEBHOOK_BATCH": "200",
                  "SCHEDULER_ENABLED": False, "JOBS_EAGER": True,
                  "ENCRYPTION_KEYS": sys.argv[3], "BLIND_INDEX_KEY": sys.argv[4]})
idle = 0
with app.app_context():
    while idle < 20:
        sent = delivery.sweep()
        idle = 0 if sent else idle + 1
        if not sent:
            time.sleep(0.1)
"""


def deliveries(db: Database, sizes: Sizes) -> dict[str, Any]:
    count = sizes.pick(20000, 100)
    # The earlier benchmarks' servers would relay these events too, and their SSRF guard
    # (rightly) refuses the loopback receiver: only the sweepers below may send them.
    stop_shared()
    port = free_port()
    receiver = Process(["-m", "bench.receiver", "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        # The secret is encrypted at rest, with the bench's key (app/crypto.py).
        secret = keyring_for(KEY_SETTINGS).encrypt("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        db.scalar(
            "WITH e AS (INSERT INTO webhook_endpoints (public_id, url, description, event_types,"
            " enabled, secret, created_at, updated_at) VALUES ('we_bench', "
            f"'http://127.0.0.1:{port}/hooks', 'bench', '[]', true, "
            f"'{secret}', now(), now()) RETURNING id) "
            "SELECT id FROM e"
        )
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
        sweepers: list[Process] = []
        meter.start()
        started = time.monotonic()
        sweepers = [
            Process(
                [
                    "-c",
                    SWEEPER,
                    db.url,
                    str(OUT / f"sweeper-{n}.log"),
                    ENCRYPTION_KEYS,
                    BLIND_INDEX_KEY,
                ]
            )
            for n in range(sizes.pick(2, 1))
        ]
        deadline = started + sizes.pick(300, 60)
        delivered = 0
        while time.monotonic() < deadline:
            delivered = (
                db.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") or 0
            )
            if delivered >= count:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        spent = meter.stop()
        for s in sweepers:
            s.stop()
        stats = requests.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
        return {
            "name": "deliveries",
            "setup": {"events": count, "sweepers": len(sweepers), "concurrency each": 32},
            "delivered": delivered,
            "seconds": round(elapsed, 1),
            "rate": round(delivered / elapsed, 1) if elapsed else None,
            "receiver": stats,
            "none_lost": delivered == count and stats["distinct_ids"] == count,
            "cpu_ms_per_op": per_op(spent, delivered),
            "ratio": round(delivered / elapsed / 500, 3) if elapsed else None,
        }
    finally:
        receiver.stop()
