"""The whole journey under load (issue 21, item 1).

Virtual customers, each on its own keep-alive connection in one asyncio client process
(the machine has 2 CPUs: the client must stay cheap), each doing what a real one does:

1. `GET /` (the storefront), 2. `GET /products/tee-usd` (session cookie, CSRF token),
3. checkout: even customers submit the form (303 to the hosted page), odd ones call
   `POST /api/v1/checkout-sessions` (JSON),
4. the sandbox gateway's hosted page: `GET /sandbox/pay/<session>`, then pay
   (`POST` scenario=succeed, 303 back to the return page),
5. the gateway's webhook, signed with the sandbox's scheme, `POST /webhooks/sandbox`,
6. the return page, then its status widget polled (`HX-Request`) until the order is paid.

At the same time merchants (signed in once) view the dashboard and refund part of paid
payments through the API (Bearer key, Idempotency-Key). Reported: journeys/s, requests/s
by kind, p50/p95/p99 per step, errors; then checked in the database: every paid journey's
order is paid, by exactly one payment, and every acknowledged refund is there once (and
each payment's amount_refunded is the sum of its refunds).

Then the same journey through the Stripe adapter (the official SDK) against
bench/fake_gateway.py, the fake's API answering at 0 ms (the same-run baseline), then at
250 ms: the checkout creates a Checkout Session at the fake, the customer pays on the
fake's hosted page (its own connection, as a browser's), the fake sends the signed
`checkout.session.completed` webhook to /webhooks/stripe, the return page (which retrieves
the session) and its widget poll until paid; the merchants' refunds go to the fake too.
Reported per latency as above, plus the ratio of journeys/s (250 ms / 0 ms) and of CPU ms
per journey. BENCH_JOURNEY_MODES=stripe (or sandbox) runs one mode only.

Full runs: 1,000 customers for 60 s in each (sandbox, Stripe at 0 ms, at 250 ms);
quick: 20 sandbox customers, 6 Stripe customers, one journey each.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.cpu import app_meter, measure
from bench.fake_gateway import WEBHOOK_SECRET as STRIPE_WEBHOOK_SECRET
from bench.harness import (
    OUT,
    ROOT,
    SECRET_KEY,
    WEBHOOK_SECRET,
    Database,
    Process,
    Server,
    app_env,
    free_port,
    wait_http,
)
from bench.serving import Sizes

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
ORDER = re.compile(r"/orders/(ord_[A-Za-z0-9_-]+)")
SESSION = re.compile(r"/sandbox/pay/([A-Za-z0-9_-]+)")
STRIPE_SESSION = re.compile(r"/pay/(cs_[A-Za-z0-9_]+)")


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1)


def _cookie(headers: dict[str, str], jar: dict[str, str]) -> None:
    raw = headers.get("set-cookie", "")
    for part in raw.split(", "):
        first = part.split(";", 1)[0]
        if "=" in first:
            k, _, v = first.partition("=")
            if k.strip() in ("session", "kassa_session", "__Host-session") or "session" in k:
                jar[k.strip()] = v


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


class Client:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.requests: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.journeys = 0
        self.started = 0
        self.paid: list[dict[str, str]] = []
        self.refund_queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.refunds_acked: list[dict[str, Any]] = []
        self.stop_at = 0.0

    async def call(
        self,
        conn: Any,
        kind: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Any:
        from bench.loadgen import Connection

        assert isinstance(conn, Connection)
        t0 = time.perf_counter()
        try:
            reply = await conn.request(method, path, headers or {}, body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            await conn.close()
            self.errors.append(f"{kind}: {type(exc).__name__}")
            return None
        self.latency[kind].append(time.perf_counter() - t0)
        self.requests[kind] += 1
        if reply.headers.get("connection", "").lower() == "close":
            await conn.close()
        return reply

    def fail(self, kind: str, reply: Any) -> None:
        status = reply.status if reply is not None else "no reply"
        body = reply.body[:150] if reply is not None else b""
        self.errors.append(f"{kind}: {status} {body!r}")

    async def customer(self, i: int) -> None:
        from bench.loadgen import Connection

        conn = Connection(self.cfg["host"], self.cfg["port"])
        gateway = self.cfg.get("gateway", "sandbox")
        stripe = gateway == "stripe"
        pattern = STRIPE_SESSION if stripe else SESSION
        # Stripe's hosted page is Stripe's (the fake's): the browser's second connection.
        pay_conn = Connection(self.cfg["host"], self.cfg["gateway_port"]) if stripe else conn
        n = 0
        while time.monotonic() < self.stop_at and n < self.cfg["journeys_each"]:
            n += 1
            self.started += 1
            t_start = time.perf_counter()
            jar: dict[str, str] = {}
            reply = await self.call(conn, "storefront", "GET", "/")
            if reply is None or reply.status != 200:
                self.fail("storefront", reply)
                continue
            _cookie(reply.headers, jar)
            reply = await self.call(
                conn, "product", "GET", "/products/tee-usd", {"Cookie": _cookie_header(jar)}
            )
            token = CSRF.search(reply.body.decode()) if reply is not None else None
            if reply is None or reply.status != 200 or token is None:
                self.fail("product", reply)
                continue
            _cookie(reply.headers, jar)
            email = f"j{i}_{n}@example.com"
            if i % 2 == 0:
                form = urlencode(
                    {
                        "csrf_token": token.group(1),
                        "email": email,
                        "name": "Journey",
                        "quantity": "1",
                        "gateway": gateway,
                    }
                ).encode()
                reply = await self.call(
                    conn,
                    "checkout (form)",
                    "POST",
                    "/products/tee-usd",
                    {
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Cookie": _cookie_header(jar),
                    },
                    form,
                )
                location = reply.headers.get("location", "") if reply is not None else ""
                if reply is None or reply.status != 303 or not pattern.search(location):
                    self.fail("checkout (form)", reply)
                    continue
                _cookie(reply.headers, jar)
                hosted = urlsplit(location).path
            else:
                body = json.dumps(
                    {
                        "items": [{"sku": "tee-usd", "quantity": 1}],
                        "customer": {"email": email, "name": "Journey"},
                        "gateway": gateway,
                    }
                ).encode()
                reply = await self.call(
                    conn,
                    "checkout (API)",
                    "POST",
                    "/api/v1/checkout-sessions",
                    {"Content-Type": "application/json"},
                    body,
                )
                if reply is None or reply.status != 201:
                    self.fail("checkout (API)", reply)
                    continue
                hosted = urlsplit(json.loads(reply.body)["data"]["checkout_url"]).path
            found = pattern.search(hosted)
            if found is None:
                self.errors.append(f"checkout: hosted page {hosted!r} is not {gateway}'s")
                continue
            session_id = found.group(1)
            if stripe:
                back = await self.pay_at_stripe(pay_conn, hosted)
                if back is None:
                    continue
            else:
                back = await self.pay_at_sandbox(conn, jar, hosted, session_id, i, n)
                if back is None:
                    continue
            reply = await self.call(
                conn, "return page", "GET", back, {"Cookie": _cookie_header(jar)}
            )
            order = ORDER.search(reply.body.decode()) if reply is not None else None
            if reply is None or reply.status != 200 or order is None:
                self.fail("return page", reply)
                continue
            payment_id = back.split("/checkout/return/", 1)[1].split("?", 1)[0]
            paid = False
            for _ in range(150):  # 30 s
                reply = await self.call(
                    conn,
                    "status poll",
                    "GET",
                    f"/orders/{order.group(1)}/status",
                    {"HX-Request": "true", "Cookie": _cookie_header(jar)},
                )
                if reply is None or reply.status not in (200, 286):
                    self.fail("status poll", reply)
                    break
                if reply.status == 286:
                    paid = b"paid" in reply.body.lower() or b"Paid" in reply.body
                    break
                await asyncio.sleep(0.2)
            if not paid:
                self.errors.append("status poll: not paid")
                continue
            self.latency["journey"].append(time.perf_counter() - t_start)
            self.journeys += 1
            record = {"order": order.group(1), "payment": payment_id}
            self.paid.append(record)
            self.refund_queue.put_nowait(record)
        await conn.close()
        if pay_conn is not conn:
            await pay_conn.close()

    async def pay_at_sandbox(
        self, conn: Any, jar: dict[str, str], hosted: str, session_id: str, i: int, n: int
    ) -> str | None:
        """The sandbox's hosted page (the app's), paying on it, and the sandbox's signed
        webhook (sent here, as the sandbox has no server of its own): the return path."""
        from app.gateways.sandbox import sign

        reply = await self.call(conn, "hosted page", "GET", hosted, {"Cookie": _cookie_header(jar)})
        token = CSRF.search(reply.body.decode()) if reply is not None else None
        if reply is None or reply.status != 200 or token is None:
            self.fail("hosted page", reply)
            return None
        _cookie(reply.headers, jar)
        reply = await self.call(
            conn,
            "pay",
            "POST",
            hosted,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": _cookie_header(jar),
            },
            urlencode({"csrf_token": token.group(1), "scenario": "succeed"}).encode(),
        )
        if reply is None or reply.status != 303:
            self.fail("pay", reply)
            return None
        back = urlsplit(reply.headers.get("location", "")).path + (
            "?" + urlsplit(reply.headers.get("location", "")).query
            if urlsplit(reply.headers.get("location", "")).query
            else ""
        )
        stamp = int(time.time())
        event = json.dumps(
            {
                "id": f"evt_journey_{i}_{n}_{stamp}",
                "type": "payment.succeeded",
                "created": stamp,
                "data": {
                    "object": {
                        "id": session_id,
                        "object": "checkout.session",
                        "status": "succeeded",
                        "payment_id": f"sbx_pay_j{i}_{n}",
                        "metadata": {},
                        "card": {"brand": "visa", "last4": "4242"},
                    }
                },
            },
            separators=(",", ":"),
        ).encode()
        reply = await self.call(
            conn,
            "webhook",
            "POST",
            "/webhooks/sandbox",
            {
                "Content-Type": "application/json",
                "Kassa-Signature": sign(WEBHOOK_SECRET, event, stamp),
            },
            event,
        )
        if reply is None or reply.status != 200:
            self.fail("webhook", reply)
            return None
        return back

    async def pay_at_stripe(self, conn: Any, hosted: str) -> str | None:
        """Stripe's hosted page (the fake's) and paying on it: the fake completes the
        session and sends the signed checkout.session.completed webhook itself. The
        return path (the success_url, session id filled in)."""
        reply = await self.call(conn, "hosted page", "GET", hosted)
        if reply is None or reply.status != 200:
            self.fail("hosted page", reply)
            return None
        reply = await self.call(
            conn,
            "pay",
            "POST",
            hosted,
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"card=4242424242424242",
        )
        location = reply.headers.get("location", "") if reply is not None else ""
        if reply is None or reply.status != 303 or "/checkout/return/" not in location:
            self.fail("pay", reply)
            return None
        parts = urlsplit(location)
        return parts.path + ("?" + parts.query if parts.query else "")

    async def merchant(self, m: int) -> None:
        from bench.loadgen import Connection

        conn = Connection(self.cfg["host"], self.cfg["port"])
        jar = {self.cfg["cookie_name"]: self.cfg["cookie_value"]}
        n = 0
        refunded = 0
        # Merchants work while customers do. Once every customer is done, a merchant that has
        # refunded at least once stops: the paid payments still queued stay unrefunded (the
        # checks count only acknowledged refunds), so the run ends with its customers
        # instead of draining a queue of thousands.
        while not (self.customers_done and (refunded or self.refund_queue.empty())):
            reply = await self.call(
                conn, "dashboard", "GET", "/dashboard/", {"Cookie": _cookie_header(jar)}
            )
            if reply is None or reply.status != 200:
                self.fail("dashboard", reply)
            try:
                record = await asyncio.wait_for(self.refund_queue.get(), 0.5)
            except TimeoutError:
                continue
            n += 1
            if n % 2:  # refund every other paid payment, 500 of its 2500
                reply = await self.call(
                    conn,
                    "refund (API)",
                    "POST",
                    f"/api/v1/payments/{record['payment']}/refunds",
                    {
                        "Content-Type": "application/json",
                        "Authorization": f"Bearer {self.cfg['api_key']}",
                        "Idempotency-Key": f"bench-refund-{record['payment']}",
                    },
                    json.dumps({"amount": 500, "reason": "requested_by_customer"}).encode(),
                )
                if reply is None or reply.status != 201:
                    self.fail("refund (API)", reply)
                    continue
                refunded += 1
                self.refunds_acked.append(
                    {"payment": record["payment"], "refund": json.loads(reply.body)["data"]["id"]}
                )
        await conn.close()

    customers_done = False

    async def main(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.stop_at = time.monotonic() + self.cfg["max_seconds"]
        customers = asyncio.gather(*(self.customer(i) for i in range(self.cfg["customers"])))
        merchants = asyncio.gather(*(self.merchant(m) for m in range(self.cfg["merchants"])))
        await customers
        customers_seconds = time.perf_counter() - started
        self.customers_done = True
        await merchants
        seconds = time.perf_counter() - started
        total = sum(self.requests.values())
        return {
            "customers": self.cfg["customers"],
            "merchants": self.cfg["merchants"],
            "journeys": self.journeys,
            "journeys_started": self.started,
            "ok": self.journeys,
            "seconds": round(customers_seconds, 2),
            "seconds_with_merchants": round(seconds, 2),
            "rate": round(self.journeys / customers_seconds, 1) if customers_seconds else 0,
            "requests": total,
            "requests_per_s": round(total / seconds, 1) if seconds else 0,
            "requests_per_s_by_kind": {
                k: round(v / seconds, 1) for k, v in sorted(self.requests.items())
            },
            "steps": {
                k: {
                    "n": len(v),
                    "p50_ms": _pct(v, 0.5),
                    "p95_ms": _pct(v, 0.95),
                    "p99_ms": _pct(v, 0.99),
                }
                for k, v in sorted(self.latency.items())
            },
            "errors": len(self.errors),
            "error_samples": self.errors[:8],
            "paid": self.paid,
            "refunds_acked": self.refunds_acked,
        }


def _setup_merchant(db: Database, server: Server) -> dict[str, str]:
    """An API key and a viewer (made in a child process), and a signed-in dashboard
    session."""
    import secrets

    import requests

    password = secrets.token_urlsafe(16)

    code = (
        "import os\nfrom app import create_app\nfrom app.api.keys import create_api_key\n"
        "app = create_app({'SQLALCHEMY_DATABASE_URI': os.environ['DATABASE_URL'],"
        " 'INSTANCE_PATH': os.environ['BENCH_INSTANCE_PATH'], 'LOG_LEVEL': 'WARNING'})\n"
        "from app.cli import create_merchant\n"
        "with app.app_context():\n"
        "    create_merchant('viewer@bench.localhost', 'viewer', os.environ['BENCH_PW'])\n"
        "    print(create_api_key('bench merchant')[1])\n"
    )
    env = dict(
        os.environ,
        DATABASE_URL=db.url,
        BENCH_INSTANCE_PATH=str(OUT / "instance"),
        SECRET_KEY=SECRET_KEY,
        LOG_LEVEL="WARNING",
        BENCH_PW=password,
    )
    made = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        raise RuntimeError("merchant setup failed: " + made.stderr[-1500:])
    key = made.stdout.strip().splitlines()[-1]
    # A viewer (an owner must enrol two-factor sign-in first in production).
    email = "viewer@bench.localhost"

    # By hand: the session cookie is Secure (production), and this is plain loopback HTTP.
    page = requests.get(server.url + "/auth/login", timeout=10)
    token = CSRF.search(page.text)
    assert token is not None, page.text[:300]
    jar: dict[str, str] = {}
    _cookie(dict(page.headers.lower_items()), jar)
    reply = requests.post(
        server.url + "/auth/login",
        data={"csrf_token": token.group(1), "email": email, "password": password},
        headers={"Cookie": _cookie_header(jar)},
        allow_redirects=False,
        timeout=30,
    )
    if reply.status_code not in (302, 303):
        raise RuntimeError(f"merchant sign-in answered {reply.status_code}: {reply.text[:300]}")
    _cookie(dict(reply.headers.lower_items()), jar)
    check = requests.get(
        server.url + "/dashboard/",
        headers={"Cookie": _cookie_header(jar)},
        allow_redirects=False,
        timeout=30,
    )
    if check.status_code != 200:
        raise RuntimeError(
            f"dashboard after sign-in: {check.status_code} {check.headers.get('location')}"
        )
    name, value = next(iter(jar.items()))
    return {"api_key": key, "cookie_name": name, "cookie_value": value}


def _check(db: Database, result: dict[str, Any]) -> dict[str, Any]:
    paid = result.pop("paid")
    acked = result.pop("refunds_acked")
    orders = ",".join(f"'{p['order']}'" for p in paid) or "''"
    paid_twice = db.scalar(
        "SELECT count(*) FROM (SELECT o.id FROM orders o JOIN payments p ON p.order_id = o.id "
        f"WHERE o.public_id IN ({orders}) AND p.status IN ('succeeded', 'partially_refunded', "
        "'refunded') GROUP BY o.id HAVING count(*) <> 1) t"
    )
    not_paid = db.scalar(
        f"SELECT count(*) FROM orders WHERE public_id IN ({orders}) AND status NOT IN "
        "('paid', 'partially_refunded', 'refunded', 'fulfilled')"
    )
    refunds = ",".join(f"'{r['refund']}'" for r in acked) or "''"
    stored = db.scalar(f"SELECT count(*) FROM refunds WHERE public_id IN ({refunds})")
    payments = ",".join(f"'{r['payment']}'" for r in acked) or "''"
    per_payment = db.scalar(
        "SELECT count(*) FROM refunds r JOIN payments p ON p.id = r.payment_id "
        f"WHERE p.public_id IN ({payments})"
    )
    sums_wrong = db.scalar(
        "SELECT count(*) FROM payments p WHERE p.public_id IN "
        f"({payments}) AND p.amount_refunded <> (SELECT coalesce(sum(amount), 0) FROM refunds r "
        "WHERE r.payment_id = p.id AND r.status = 'succeeded')"
    )
    return {
        "paid_journeys": len(paid),
        "orders_not_paid_or_paid_twice": (not_paid or 0) + (paid_twice or 0),
        "refunds_acked": len(acked),
        "refunds_stored_once": stored == len(acked) == per_payment,
        "payments_whose_refunded_amount_is_not_their_refunds": sums_wrong,
        "ok": (not_paid or 0) + (paid_twice or 0) == 0 and stored == len(acked) == per_payment,
    }


def _client_run(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.journey", json.dumps(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"journey client failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _measured(db: Database, server: Server, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One client run under the CPU meter, then its after-run checks."""
    result = measure(app_meter(server, db.name), lambda: _client_run(cfg, timeout))
    check = _check(db, result)
    cpu = result.pop("cpu_ms_per_op")
    return {"run": result, "cpu_ms_per_journey": cpu, "check": check}


def _stripe_fake() -> tuple[Process, int]:
    port = free_port()
    fake = Process(["-m", "bench.fake_gateway", "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
    except Exception:
        fake.stop()
        raise
    return fake, port


def _fake_call(port: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import requests

    url = f"http://127.0.0.1:{port}{path}"
    reply = requests.post(url, json=body, timeout=5) if body is not None else requests.get(url)
    reply.raise_for_status()
    return dict(reply.json())


def run_stripe(
    db: Database, sizes: Sizes, server: Server, merchant: dict[str, str], fake_port: int
) -> dict[str, Any]:
    """The same journey through the Stripe adapter (the official SDK) against
    bench/fake_gateway.py: checkout creates a Checkout Session there, the customer pays on
    the fake's hosted page, the fake sends the signed checkout.session.completed webhook,
    the return page (which retrieves the session) polls until paid; refunds go to the fake.
    Run with the fake's API answering at 0 ms (the baseline), then at 250 ms."""
    customers = int(os.environ.get("BENCH_JOURNEY_STRIPE_CUSTOMERS") or sizes.pick(1000, 6))
    # 20 s of new journeys per latency; the journeys in flight then take as long again
    # (1,000 customers on two CPUs), so the three runs fit in five minutes.
    max_seconds = int(os.environ.get("BENCH_JOURNEY_STRIPE_SECONDS") or sizes.pick(20, 3))
    latency_ms = 250
    _fake_call(fake_port, "/_test/webhook_target", {"url": server.url + "/webhooks/stripe"})
    cfg = {
        "host": "127.0.0.1",
        "port": server.port,
        "gateway": "stripe",
        "gateway_port": fake_port,
        "customers": customers,
        "merchants": sizes.pick(4, 1),
        "max_seconds": max_seconds,
        "journeys_each": int(os.environ.get("BENCH_JOURNEY_EACH") or sizes.pick(1000, 1)),
        **merchant,
    }
    out: dict[str, Any] = {
        "setup": {
            "customers": customers,
            "merchants": cfg["merchants"],
            "seconds (max) per latency": max_seconds,
            "gateway": "stripe (the adapter's SDK against bench/fake_gateway.py)",
            "latencies (in this order)": [0, latency_ms],
        }
    }
    try:
        for ms in (0, latency_ms):
            _fake_call(fake_port, "/_test/latency", {"ms": ms})
            before = _fake_call(fake_port, "/_test/stats")
            done = _measured(db, server, cfg, max_seconds + 420)
            time.sleep(0.5)  # a webhook still being retried
            after = _fake_call(fake_port, "/_test/stats")
            webhooks = {k: after[k] - before.get(k, 0) for k in after}
            done["webhooks"] = webhooks
            done["check"]["webhooks_failed"] = webhooks["webhooks_failed"]
            done["check"]["ok"] = done["check"]["ok"] and webhooks["webhooks_failed"] == 0
            out[f"latency_{ms}ms"] = done
    finally:
        _fake_call(fake_port, "/_test/latency", {"ms": 0})
    base, slow = out["latency_0ms"], out[f"latency_{latency_ms}ms"]
    out["ratio"] = (
        round(slow["run"]["rate"] / base["run"]["rate"], 3) if base["run"]["rate"] else None
    )
    base_cpu = base["cpu_ms_per_journey"].get("total_ms")
    slow_cpu = slow["cpu_ms_per_journey"].get("total_ms")
    out["cpu_ratio"] = round(slow_cpu / base_cpu, 3) if base_cpu and slow_cpu else None
    return out


def run(db: Database, sizes: Sizes) -> dict[str, Any]:
    customers = int(os.environ.get("BENCH_JOURNEY_CUSTOMERS") or sizes.pick(1000, 20))
    max_seconds = int(os.environ.get("BENCH_JOURNEY_SECONDS") or sizes.pick(30, 5))
    stripe_customers = int(os.environ.get("BENCH_JOURNEY_STRIPE_CUSTOMERS") or 0)
    # One server for both: Stripe is configured (against the fake) beside the sandbox.
    fake, fake_port = _stripe_fake()
    server = Server(
        "bench.wsgi_kassa:app",
        app_env(
            db,
            WORKER_CONNECTIONS=str(max(1000, customers, stripe_customers)),
            STRIPE_SECRET_KEY="sk_test_bench",
            STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
            STRIPE_API_BASE=f"http://127.0.0.1:{fake_port}",
        ),
    )
    try:
        server.start()
        merchant = _setup_merchant(db, server)
        result: dict[str, Any] = {
            "name": "journey",
            "setup": {
                "customers": customers,
                "merchants": sizes.pick(4, 2),
                "seconds (max)": max_seconds,
                "gateway": "sandbox (hosted page on the app)",
                "workers": server.env["WEB_CONCURRENCY"],
            },
        }
        if os.environ.get("BENCH_JOURNEY_MODES", "sandbox,stripe") != "stripe":
            cfg = {
                "host": "127.0.0.1",
                "port": server.port,
                "customers": customers,
                "merchants": sizes.pick(4, 2),
                "max_seconds": max_seconds,
                # BENCH_JOURNEY_EACH=1: every customer buys once (a loaded machine's full run).
                "journeys_each": int(os.environ.get("BENCH_JOURNEY_EACH") or sizes.pick(1000, 1)),
                **merchant,
            }
            result.update(_measured(db, server, cfg, max_seconds + 420))
            # Journeys that ended paid (and were checked) over journeys started: 1.0 when
            # none was lost. (No gateway latency here: the sandbox's page is the app's.)
            started = result["run"]["journeys_started"]
            result["ratio"] = round(result["run"]["journeys"] / started, 3) if started else None
        if "stripe" in os.environ.get("BENCH_JOURNEY_MODES", "sandbox,stripe"):
            result["stripe"] = run_stripe(db, sizes, server, merchant, fake_port)
        return result
    finally:
        server.stop()
        fake.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(Client(json.loads(sys.argv[1])).main())))
