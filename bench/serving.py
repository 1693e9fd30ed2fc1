"""Benchmarks against the app served by gunicorn: checkout under gateway latency, webhook
intake, checkout page weight, worker memory."""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from app.gateways.sandbox import sign
from bench.cpu import app_meter, combined_cpu, measure, per_op
from bench.harness import (
    METRICS_TOKEN,
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


@dataclass
class Sizes:
    full: bool

    def pick(self, full: Any, quick: Any) -> Any:
        return full if self.full else quick


# Set by `python -m bench --gateway stripe|bench`: drive the real Stripe adapter (the
# official SDK) or bench/gateway.py (one plain `requests` call), both against
# bench/fake_gateway.py, a lean asyncio fake of Stripe's Checkout Sessions endpoint.
USE_STRIPE = False


def stripe_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("app.gateways.stripe") is not None


def _gateway_target(port: int) -> dict[str, Any]:
    """How to start the fake gateway, configure the app, and switch latency."""
    if USE_STRIPE:
        return {
            "args": ["-m", "bench.fake_gateway", "--port", str(port)],
            "health": f"http://127.0.0.1:{port}/health",
            "env": {
                "STRIPE_SECRET_KEY": "sk_test_bench",
                "STRIPE_WEBHOOK_SECRET": "whsec_bench_stripe",
                "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
            },
            "gateway": "stripe",
            "set_latency": lambda ms: requests.post(
                f"http://127.0.0.1:{port}/_test/latency", json={"ms": ms}, timeout=5
            ),
        }
    return {
        "args": ["-m", "bench.fake_gateway", "--port", str(port)],
        "health": f"http://127.0.0.1:{port}/health",
        "env": {"BENCH_GATEWAY_URL": f"http://127.0.0.1:{port}"},
        "gateway": "benchpay",
        "set_latency": lambda ms: requests.post(
            f"http://127.0.0.1:{port}/control/latency/{ms}", timeout=5
        ),
    }


_SHARED: dict[str, tuple[Server, dict[str, Any], Process, int]] = {}


def kassa_with_gateway(db: Database, sizes: Sizes) -> tuple[Server, dict[str, Any], Process, int]:
    """Kassa under gunicorn plus a fake gateway. Full runs start a fresh pair for each
    benchmark; quick runs share one (starting gunicorn is most of a quick run's time)."""
    if not sizes.full and "kassa" in _SHARED:
        return _SHARED["kassa"]
    port = free_port()
    target = _gateway_target(port)
    fake = Process(target["args"])
    try:
        wait_http(target["health"])
        server = Server("bench.wsgi_kassa:app", app_env(db, **target["env"])).start()
    except Exception:
        fake.stop()
        raise
    if not sizes.full:
        _SHARED["kassa"] = (server, target, fake, port)
    return server, target, fake, port


def release(sizes: Sizes, server: Server | None, fake: Process | None) -> None:
    if sizes.full:
        if server is not None:
            server.stop()
        if fake is not None:
            fake.stop()


def stop_shared() -> None:
    for server, _target, fake, _port in _SHARED.values():
        server.stop()
        fake.stop()
    _SHARED.clear()


def checkout_under_latency(db: Database, sizes: Sizes) -> dict[str, Any]:
    """a. Checkout creation: 200 customers, the gateway answering in 0 ms then 250 ms.

    Full runs measure both twice, alternating (0, 250, 0, 250): on a shared 2-CPU machine
    one 30 s run of either varies by up to 20%, and a drift over the run would otherwise
    land on one side of the ratio only."""
    clients = sizes.pick(200, 16)
    total = sizes.pick(12000, 40)
    max_seconds = sizes.pick(30, 3)
    latency_ms = sizes.pick(250, 50)
    rounds = sizes.pick(2, 1)
    server, target, fake, gateway_port = kassa_with_gateway(db, sizes)
    try:
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
        # Warm-up: connections, pools, caches.
        loadgen("checkout", dict(cfg, total=sizes.pick(1000, 5), max_seconds=sizes.pick(5, 2)))
        runs: dict[int, list[dict[str, Any]]] = {0: [], latency_ms: []}
        for _round in range(rounds):
            for ms in (0, latency_ms):
                target["set_latency"](ms)
                meter = app_meter(server, db.name)
                runs[ms].append(measure(meter, lambda: loadgen("checkout", cfg)))
        metrics = requests.get(
            server.url + "/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
        ).text
        base, slow = _combined(runs[0]), _combined(runs[latency_ms])
        result: dict[str, Any] = {
            "name": "checkout",
            "setup": {
                "gateway": target["gateway"],
                "workers": server.env["WEB_CONCURRENCY"],
                "worker class": server.env["WORKER_CLASS"],
                "customers": clients,
                "requests per run (max)": total,
                "seconds per run (max)": max_seconds,
                "latency_ms": latency_ms,
                "rounds (0 ms, then the latency)": rounds,
            },
            "baseline_0ms": base,
            f"latency_{latency_ms}ms": slow,
            "ratio": round(slow["rate"] / base["rate"], 3) if base["rate"] else None,
            # CPU per checkout at the latency over CPU per checkout at 0 ms (app processes).
            "cpu_ratio": _cpu_ratio(slow, base),
            "gateway_metric_present": "kassa_gateway_request_duration_seconds_count" in metrics,
        }
        if rounds > 1:
            for n in range(rounds):
                for ms in (0, latency_ms):
                    result[f"round {n + 1}, {ms} ms"] = runs[ms][n]
        return result
    finally:
        target["set_latency"](0)
        release(sizes, server, fake)


def _server_cpu_seconds(server: Server) -> float:
    """User + system CPU time of gunicorn's master and workers (its process group) so far."""
    assert server.proc is not None
    group, total, tick = server.proc.pid, 0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def api_vs_form_checkout(db: Database, sizes: Sizes) -> dict[str, Any]:
    """a2. The JSON API's checkout against the storefront form's, in one run on one server
    (the machine is shared: only a ratio within one run means anything). The two alternate
    (form, API, form, API in full runs) with the gateway answering at once, and each run
    reports the server's CPU milliseconds per checkout beside its rate."""
    clients = sizes.pick(64, 8)
    total = sizes.pick(6000, 40)
    max_seconds = sizes.pick(20, 3)
    rounds = sizes.pick(2, 1)
    server, target, fake, gateway_port = kassa_with_gateway(db, sizes)
    try:
        target["set_latency"](0)
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
        warm = dict(cfg, total=sizes.pick(500, 5), max_seconds=sizes.pick(5, 2))
        loadgen("checkout", warm)
        loadgen("api_checkout", warm)
        runs: dict[str, list[dict[str, Any]]] = {"checkout": [], "api_checkout": []}
        for _round in range(rounds):
            for scenario, done in runs.items():
                cpu_before = _server_cpu_seconds(server)
                run = loadgen(scenario, cfg)
                cpu = _server_cpu_seconds(server) - cpu_before
                run["server_cpu_ms_per_op"] = (
                    round(1000 * cpu / run["ok"], 2) if run["ok"] else None
                )
                done.append(run)
        form, api = _combined(runs["checkout"]), _combined(runs["api_checkout"])
        for combined, scenario in ((form, "checkout"), (api, "api_checkout")):
            ok = sum(r["ok"] for r in runs[scenario])
            cpu_ms = sum((r["server_cpu_ms_per_op"] or 0) * r["ok"] for r in runs[scenario])
            combined["server_cpu_ms_per_op"] = round(cpu_ms / ok, 2) if ok else None
        result: dict[str, Any] = {
            "name": "api_checkout",
            "setup": {
                "gateway": target["gateway"],
                "workers": server.env["WEB_CONCURRENCY"],
                "worker class": server.env["WORKER_CLASS"],
                "clients": clients,
                "requests per run (max)": total,
                "seconds per run (max)": max_seconds,
                "rounds (form, then API)": rounds,
            },
            "form": form,
            "api": api,
            # At least 0.9 is the aim (issue #23.10).
            "ratio": round(api["rate"] / form["rate"], 3) if form["rate"] else None,
        }
        if rounds > 1:
            for n in range(rounds):
                result[f"round {n + 1}, form"] = runs["checkout"][n]
                result[f"round {n + 1}, api"] = runs["api_checkout"][n]
        return result
    finally:
        release(sizes, server, fake)


def _cpu_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    """Ratio of two runs' CPU ms per operation (the app's processes, client excluded)."""
    a = (numerator.get("cpu_ms_per_op") or {}).get("total_ms")
    b = (denominator.get("cpu_ms_per_op") or {}).get("total_ms")
    return round(a / b, 3) if a and b else None


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one setting as one: the rate over all of them (every ok request over
    every second), and each percentile from the worse run (the runs' latencies are not
    kept, so they cannot be pooled)."""
    if len(runs) == 1:
        return runs[0]
    cpu = combined_cpu(runs)
    ok, seconds = sum(r["ok"] for r in runs), sum(r["seconds"] for r in runs)
    combined = {
        "name": runs[0]["name"],
        "requests": sum(r["requests"] for r in runs),
        "ok": ok,
        "errors": sum(r["errors"] for r in runs),
        "seconds": round(seconds, 3),
        "rate": round(ok / seconds, 1) if seconds else 0.0,
        "error_samples": [s for r in runs for s in r["error_samples"]][:5],
        "rates_per_run": [r["rate"] for r in runs],
        "cpu_ms_per_op": cpu,
    }
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        combined[key] = max(r[key] for r in runs)
    return combined


def _signed_events(count: int, label: str) -> str:
    """Distinct sandbox events, signed now (the tolerance is 5 minutes)."""
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"webhook-events-{label}.jsonl"
    stamp = int(time.time())
    with open(target, "w") as fh:
        for n in range(count):
            event = {
                "id": f"evt_bench_{label}_{stamp}_{n:07d}",
                "type": "payment.succeeded",
                "created": stamp,
                "data": {
                    "object": {
                        "id": f"sbx_cs_bench_{n}",
                        "object": "checkout.session",
                        "status": "succeeded",
                        "amount": 2500,
                        "currency": "USD",
                        "payment_id": f"sbx_pay_{n}",
                        "metadata": {"payment_id": f"pay_bench_{n}"},
                    }
                },
            }
            body = json.dumps(event, separators=(",", ":"))
            headers = {
                "Content-Type": "application/json",
                "Kassa-Signature": sign(WEBHOOK_SECRET, body.encode(), stamp),
            }
            fh.write(json.dumps({"body": body, "headers": headers}) + "\n")
    return str(target)


def _redis_url() -> str | None:
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:  # noqa: BLE001 - no Redis: skip the broker run
        return None


def _intake_run(
    db: Database,
    sizes: Sizes,
    label: str,
    extra_env: dict[str, str],
    senders: int,
    total: int,
    max_seconds: float,
    broker_url: str | None = None,
) -> dict[str, Any]:
    """One Kassa intake run: send, then wait until every stored event is processed."""
    worker = None
    shared = not sizes.full and not extra_env
    server = (
        kassa_with_gateway(db, sizes)[0]
        if shared
        else Server("bench.wsgi_kassa:app", app_env(db, **extra_env)).start()
    )
    try:
        if broker_url:
            import redis

            redis.Redis.from_url(broker_url).delete("kassa-bench-jobs")
            # Production settings, as the web workers have them (it refuses to start in
            # production without an https PUBLIC_BASE_URL).
            worker = Process(
                ["-m", "bench.broker", broker_url, "--idle", "600"],
                env=app_env(db, PUBLIC_BASE_URL=server.url.replace("http://", "https://", 1)),
            )
        events_file = _signed_events(total, label)
        cfg = {
            "host": "127.0.0.1",
            "port": server.port,
            "path": "/webhooks/sandbox",
            "clients": senders,
            "total": total,
            "max_seconds": max_seconds,
            "events_file": events_file,
        }
        like = f"evt_bench_{label}_%"
        started = time.monotonic()
        run = measure(app_meter(server, db.name), lambda: loadgen("webhooks", cfg))
        stored = db.scalar(f"SELECT count(*) FROM webhook_events WHERE event_id LIKE '{like}'")
        deadline = time.monotonic() + sizes.pick(180, 15)
        pending = None
        while time.monotonic() < deadline:
            pending = db.scalar(
                "SELECT count(*) FROM webhook_events WHERE status = 'received' "
                f"AND event_id LIKE '{like}'"
            )
            if pending == 0:
                break
            time.sleep(0.25)
        drained = time.monotonic() - started
        run.update(
            {
                "stored": stored,
                "all_acked_events_in_inbox": stored == run["ok"],
                "unprocessed_after_wait": pending,
                "all_processed_after_s": round(drained, 1) if pending == 0 else None,
                "processed_per_s": round(stored / drained, 1) if pending == 0 and drained else None,
                "outcomes": db.scalar(
                    "SELECT json_object_agg(coalesce(outcome, status), n) FROM (SELECT outcome, "
                    f"status, count(*) n FROM webhook_events WHERE event_id LIKE '{like}' "
                    "GROUP BY 1, 2) t"
                ),
            }
        )
        return run
    finally:
        if not shared:
            server.stop()
        if worker is not None:
            worker.stop()


def webhook_intake(db: Database, sizes: Sizes) -> dict[str, Any]:
    """b. Webhook intake: distinct signed events from 64 senders; bare Flask as baseline."""
    senders = sizes.pick(64, 8)
    total = sizes.pick(20000, 40)
    max_seconds = sizes.pick(30, 3)
    results: dict[str, Any] = {
        "name": "webhooks",
        "setup": {"senders": senders, "events (max)": total, "seconds (max)": max_seconds},
    }
    bare = Server("bench.wsgi_bare:app", app_env(db)).start()
    try:
        # As many events as Kassa gets: 3,000 took about a second, too short to be steady.
        events_file = _signed_events(sizes.pick(20000, 50), "bare")
        cfg = {
            "host": "127.0.0.1",
            "port": bare.port,
            "path": "/webhooks/sandbox",
            "clients": senders,
            "total": total,
            "max_seconds": max_seconds,
            "events_file": events_file,
        }
        if sizes.full:
            loadgen("webhooks", dict(cfg, total=2000, max_seconds=5))
        results["baseline_bare_flask"] = measure(
            app_meter(bare, db.name), lambda: loadgen("webhooks", cfg)
        )
    finally:
        bare.stop()
    # Default deployment without a broker: jobs run on each worker's in-process pool.
    results["kassa"] = _intake_run(db, sizes, "inproc", {}, senders, total, max_seconds)
    broker = _redis_url()
    if broker:
        # With a broker: the request only enqueues; a separate worker process applies.
        results["kassa_with_broker"] = _intake_run(
            db,
            sizes,
            "broker",
            {"BENCH_JOBS_REDIS": broker},
            senders,
            total,
            max_seconds,
            broker_url=broker,
        )
    best = max(
        (results[k] for k in ("kassa", "kassa_with_broker") if k in results),
        key=lambda r: r["rate"],
    )
    results["all_acked_events_in_inbox"] = all(
        results[k]["all_acked_events_in_inbox"]
        for k in ("kassa", "kassa_with_broker")
        if k in results
    )
    base = results["baseline_bare_flask"]["rate"]
    results["ratio"] = round(results["kassa"]["rate"] / base, 3) if base else None
    # CPU per event in Kassa's processes over the bare endpoint's (workers + PostgreSQL).
    results["cpu_ratio"] = _cpu_ratio(results["kassa"], results["baseline_bare_flask"])
    results["ratio_with_broker"] = round(best["rate"] / base, 3) if base else None
    return results


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.assets: list[tuple[str, str, bool]] = []  # (kind, url, blocking)
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "head":
            self.in_head = True
        elif tag == "body":
            self.in_head = False
        elif tag == "script" and a.get("src"):
            blocking = not ("defer" in a or "async" in a or a.get("type") == "module")
            self.assets.append(("script", a["src"], blocking))
        elif tag == "link" and "stylesheet" in a.get("rel", "").split():
            media = a.get("media", "all")
            self.assets.append(("stylesheet", a.get("href", ""), media in ("", "all", "screen")))
        elif (
            tag == "link" and a.get("rel") in ("preload", "icon", "modulepreload") and a.get("href")
        ):
            self.assets.append((a["rel"], a["href"], False))
        elif tag in ("img", "iframe") and a.get("src"):
            self.assets.append((tag, a["src"], False))


def _fetch(url: str) -> tuple[int, bytes, int, str]:
    """(status, decoded body, bytes on the wire, content-encoding) as a browser gets it."""
    with requests.get(
        url, timeout=10, stream=True, headers={"Accept-Encoding": "gzip, deflate, br"}
    ) as response:
        wire = response.raw.read(decode_content=False)
        encoding = response.headers.get("Content-Encoding", "")
        body = gzip.decompress(wire) if encoding == "gzip" else wire
        return response.status_code, body, len(wire), encoding


def page_weight(db: Database, sizes: Sizes) -> dict[str, Any]:
    """d. The checkout page and what it loads: bytes transferred, render-blocking requests."""
    server, _target, fake, _port = kassa_with_gateway(db, sizes)
    meter = app_meter(server, db.name)
    try:
        meter.start()
        page_url = server.url + "/products/tee-usd"
        status, body, wire, encoding = _fetch(page_url)
        parser = _Assets()
        parser.feed(body.decode())
        host = urlsplit(page_url).netloc
        items = [
            {
                "url": "/products/tee-usd",
                "kind": "document",
                "status": status,
                "raw": len(body),
                "transferred": wire,
                "encoding": encoding or "none",
                "gzip_if_proxied": len(gzip.compress(body, 6)),
                "blocking": True,
            }
        ]
        third_party_blocking = []
        for kind, src, blocking in parser.assets:
            url = urljoin(page_url, src)
            if urlsplit(url).netloc != host:
                if blocking:
                    third_party_blocking.append(url)
                items.append(
                    {
                        "url": url,
                        "kind": kind,
                        "status": "not fetched (other site)",
                        "raw": 0,
                        "transferred": 0,
                        "encoding": "",
                        "gzip_if_proxied": 0,
                        "blocking": blocking,
                    }
                )
                continue
            status, body, wire, encoding = _fetch(url)
            items.append(
                {
                    "url": urlsplit(url).path,
                    "kind": kind,
                    "status": status,
                    "raw": len(body),
                    "transferred": wire,
                    "encoding": encoding or "none",
                    "gzip_if_proxied": len(gzip.compress(body, 6)),
                    "blocking": blocking,
                }
            )
        fetched = sum(1 for i in items if isinstance(i["status"], int))
        # The app's CPU per request of the page and its assets (few requests: coarse,
        # one clock tick is 10 ms).
        cpu = per_op(meter.stop(), fetched)
        total_raw = sum(i["raw"] for i in items)
        total_wire = sum(i["transferred"] for i in items)
        return {
            "name": "page",
            "items": items,
            "total_raw_bytes": total_raw,
            "total_transferred_bytes": total_wire,
            "total_gzip_bytes": sum(i["gzip_if_proxied"] for i in items),
            "budget_bytes": 50 * 1024,
            "ratio": round(total_wire / (50 * 1024), 3),
            "third_party_render_blocking": third_party_blocking,
            "missing": [i["url"] for i in items if i["status"] == 404],
            "requests": fetched,
            "cpu_ms_per_op": cpu,
        }
    finally:
        release(sizes, server, fake)


def worker_memory(db: Database, sizes: Sizes) -> dict[str, Any]:
    """e. RSS per worker after N requests (pages, status polls and checkouts)."""
    total = sizes.pick(10000, 100)
    server, target, fake, gateway_port = kassa_with_gateway(db, sizes)
    meter = app_meter(server, db.name)
    try:
        booted = server.worker_rss_mb()
        meter.start()
        checkouts = total // 5
        paths = [
            "/",
            "/products/tee-usd",
            "/products/mug-eur",
            "/products/notebook-inr",
            "/healthz",
            "/products/print-usd",
        ]
        first = loadgen(
            "checkout",
            {
                "host": "127.0.0.1",
                "port": server.port,
                "sku": "mug-eur",
                "gateway": target["gateway"],
                "expect_location": f"127.0.0.1:{gateway_port}/pay/",
                "clients": 32,
                "total": checkouts,
                "max_seconds": sizes.pick(400, 60),
            },
            timeout=900,
        )
        second = loadgen(
            "gets",
            {
                "host": "127.0.0.1",
                "port": server.port,
                "paths": paths,
                "clients": 32,
                "total": total - checkouts,
                "max_seconds": sizes.pick(400, 60),
            },
            timeout=900,
        )
        spent = meter.stop()
        after = server.worker_rss_mb()
        served = first["requests"] + second["requests"]
        return {
            "name": "memory",
            "requests": served,
            "errors": first["errors"] + second["errors"],
            "rss_mb_after_boot": booted,
            "rss_mb_after_requests": after,
            "ratio": round(max(after) / max(booted), 3) if booted and after else None,
            "worker_class": server.env["WORKER_CLASS"],
            "fresh_server": sizes.full,
            # The app's CPU per request over the mix (a fifth checkouts, the rest GETs).
            "cpu_ms_per_op": per_op(spent, served),
        }
    finally:
        release(sizes, server, fake)
