"""One app instance against two behind HAProxy (issue 21, item 4: scale on paper, checked).

The checkout benchmark's customers (Stripe adapter against bench/fake_gateway.py at
250 ms) through HAProxy (/usr/sbin/haproxy, round robin, keep-alive) to: one instance of
two gevent workers, then two instances of one worker each on the same database: the same
cores and the same number of PostgreSQL pools, one more hop. The ratio says what the
balancer and the second instance cost on one machine; more machines add their cores.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter, children, per_op, postgres_backends
from bench.harness import OUT, Database, Process, Server, app_env, free_port, loadgen, wait_http
from bench.serving import Sizes, _gateway_target

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CONFIG = """
global
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    option forwardfor
frontend web
    bind 127.0.0.1:{port}
    default_backend kassa
backend kassa
    balance roundrobin
{servers}
"""


def _haproxy(ports: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    servers = "\n".join(f"    server s{n} 127.0.0.1:{p}" for n, p in enumerate(ports))
    cfg = OUT / f"haproxy-{port}.cfg"
    cfg.write_text(CONFIG.format(port=port, servers=servers))
    proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc, port


def run(db: Database, sizes: Sizes) -> dict[str, Any]:
    if not Path(HAPROXY).exists():
        return {"name": "instances", "error": "haproxy not installed"}
    gateway_port = free_port()
    target = _gateway_target(gateway_port)
    fake = Process(target["args"])
    wait_http(target["health"])
    latency = sizes.pick(250, 50)
    target["set_latency"](latency)
    result: dict[str, Any] = {
        "name": "instances",
        "setup": {
            "customers": sizes.pick(200, 16),
            "gateway latency ms": latency,
            "seconds per run": sizes.pick(25, 3),
            "balancer": "HAProxy, round robin",
        },
    }
    try:
        for label, layout in (
            ("one instance, 2 workers", [2]),
            ("two instances, 1 worker each", [1, 1]),
        ):
            servers = [
                Server(
                    "bench.wsgi_kassa:app", app_env(db, WEB_CONCURRENCY=str(w), **target["env"])
                ).start()
                for w in layout
            ]
            proxy, port = _haproxy([s.port for s in servers])
            try:
                cfg = {
                    "host": "127.0.0.1",
                    "port": port,
                    "sku": "tee-usd",
                    "gateway": target["gateway"],
                    "expect_location": f"127.0.0.1:{gateway_port}/pay/",
                    "clients": sizes.pick(200, 16),
                    "total": sizes.pick(20000, 40),
                    "max_seconds": sizes.pick(25, 3),
                }
                loadgen("checkout", dict(cfg, total=sizes.pick(500, 5), max_seconds=3))
                meter = CpuMeter(
                    {
                        "workers": lambda servers=servers: [
                            p for s in servers if s.proc for p in children(s.proc.pid)
                        ],
                        "postgres": lambda: postgres_backends(db.name),
                        "haproxy": lambda proxy=proxy: [proxy.pid],
                    }
                )
                meter.start()
                run_ = loadgen("checkout", cfg)
                run_["cpu_ms_per_op"] = per_op(meter.stop(), run_["ok"])
                result[label] = run_
            finally:
                proxy.terminate()
                proxy.wait(5)
                for s in servers:
                    s.stop()
            time.sleep(1)
        one = result["one instance, 2 workers"]["rate"]
        two = result["two instances, 1 worker each"]["rate"]
        result["ratio"] = round(two / one, 3) if one else None
        return result
    finally:
        target["set_latency"](0)
        fake.stop()
