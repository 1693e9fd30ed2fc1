"""A small asyncio HTTP/1.1 load generator (stdlib only), run as its own process.

Each virtual client holds one keep-alive connection and sends requests back to back
(closed loop, like a customer who waits for the answer). The run is bounded both by a
request count and by a time limit. Latencies are measured per request, send to last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await self.writer.wait_closed()
            self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Reply:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        reply_headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                key, _, value = line.partition(":")
                k = key.strip().lower()
                reply_headers[k] = (
                    reply_headers[k] + ", " + value.strip() if k in reply_headers else value.strip()
                )
        if reply_headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            data = b"".join(chunks)
        else:
            data = await self.reader.readexactly(int(reply_headers.get("content-length", "0")))
        if reply_headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, reply_headers, data)


@dataclass
class Result:
    name: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "p50_ms": round(self.pct(50) * 1000, 1),
            "p95_ms": round(self.pct(95) * 1000, 1),
            "p99_ms": round(self.pct(99) * 1000, 1),
            "max_ms": round(max(self.latencies, default=0) * 1000, 1),
            "error_samples": self.error_samples[:5],
        }


# A client: given its connection and index, prepares (optional) then yields requests.
Step = Callable[[Connection, int], Any]


async def run(
    name: str,
    host: str,
    port: int,
    clients: int,
    total: int,
    max_seconds: float,
    setup: Callable[[Connection, int], Any] | None,
    one: Callable[[Connection, int, int, Any], Any],
) -> Result:
    """`clients` connections; `one(conn, client, n, state)` sends request n and returns
    True (ok) or an error string. Stops after `total` requests or `max_seconds`."""
    result = Result(name)
    counter = iter(range(total))
    states: list[Any] = [None] * clients
    conns = [Connection(host, port) for _ in range(clients)]

    async def prepare(i: int) -> None:
        if setup is not None:
            states[i] = await setup(conns[i], i)

    await asyncio.gather(*(prepare(i) for i in range(clients)))
    # The window starts with the measured requests: a slow setup (every client's product
    # page, say) must not shorten it.
    deadline = time.monotonic() + max_seconds

    async def worker(i: int) -> None:
        conn = conns[i]
        while time.monotonic() < deadline:
            n = next(counter, None)
            if n is None:
                return
            start = time.perf_counter()
            try:
                outcome = await one(conn, i, n, states[i])
            except Exception as exc:  # noqa: BLE001 - every failure is a counted error
                outcome = f"{type(exc).__name__}: {exc}"
                await conn.close()
            elapsed = time.perf_counter() - start
            result.requests += 1
            if outcome is True:
                result.ok += 1
                result.latencies.append(elapsed)
            else:
                result.errors += 1
                result.error_samples.append(str(outcome)[:200])

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    result.seconds = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in conns))
    return result


# ---- scenarios (run in this separate process: `python -m bench.loadgen SCENARIO JSON`) ----

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def _cookie(headers: dict[str, str]) -> str:
    raw = headers.get("set-cookie", "")
    return raw.split(";", 1)[0]


async def checkout(cfg: dict[str, Any]) -> Result:
    """Customers: fetch the product page once (cookie + CSRF token), then buy repeatedly."""
    path = f"/products/{cfg['sku']}"

    async def setup(conn: Connection, i: int) -> tuple[str, str]:
        reply = await conn.request("GET", path)
        token = CSRF.search(reply.body.decode())
        if reply.status != 200 or token is None:
            raise RuntimeError(f"product page answered {reply.status}")
        return _cookie(reply.headers), token.group(1)

    async def one(conn: Connection, i: int, n: int, state: tuple[str, str]) -> bool | str:
        cookie, token = state
        body = urlencode(
            {
                "csrf_token": token,
                "email": f"buyer{n}@example.com",
                "name": f"Buyer {n}",
                "quantity": "1",
                "gateway": cfg["gateway"],
            }
        ).encode()
        reply = await conn.request(
            "POST",
            path,
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
            body,
        )
        if reply.status == 303 and cfg["expect_location"] in reply.headers.get("location", ""):
            return True
        return f"{reply.status} {reply.body[:120]!r}"

    return await run(
        "checkout",
        cfg["host"],
        cfg["port"],
        cfg["clients"],
        cfg["total"],
        cfg["max_seconds"],
        setup,
        one,
    )


async def api_checkout(cfg: dict[str, Any]) -> Result:
    """Shop fronts: the JSON API's checkout (no key: the public door), one item per order,
    as the form checkout buys; 201 with the hosted checkout URL is success."""

    async def one(conn: Connection, i: int, n: int, state: Any) -> bool | str:
        body = json.dumps(
            {
                "items": [{"sku": cfg["sku"], "quantity": 1}],
                "customer": {"email": f"buyer{n}@example.com", "name": f"Buyer {n}"},
                "gateway": cfg["gateway"],
            }
        ).encode()
        reply = await conn.request(
            "POST", "/api/v1/checkout-sessions", {"Content-Type": "application/json"}, body
        )
        if reply.status == 201 and cfg["expect_location"].encode() in reply.body:
            return True
        return f"{reply.status} {reply.body[:120]!r}"

    return await run(
        "api_checkout",
        cfg["host"],
        cfg["port"],
        cfg["clients"],
        cfg["total"],
        cfg["max_seconds"],
        None,
        one,
    )


async def webhooks(cfg: dict[str, Any]) -> Result:
    """Senders: each posts distinct signed events (pre-signed by the parent, read from a file)."""
    events = [json.loads(line) for line in Path(cfg["events_file"]).read_text().splitlines()]

    async def one(conn: Connection, i: int, n: int, state: Any) -> bool | str:
        event = events[n]
        reply = await conn.request("POST", cfg["path"], event["headers"], event["body"].encode())
        if reply.status == 200:
            return True
        return f"{reply.status} {reply.body[:120]!r}"

    return await run(
        "webhooks",
        cfg["host"],
        cfg["port"],
        cfg["clients"],
        min(cfg["total"], len(events)),
        cfg["max_seconds"],
        None,
        one,
    )


async def gets(cfg: dict[str, Any]) -> Result:
    """Plain GETs over a list of paths (memory bench)."""
    paths = cfg["paths"]

    async def one(conn: Connection, i: int, n: int, state: Any) -> bool | str:
        reply = await conn.request("GET", paths[n % len(paths)])
        return True if reply.status == 200 else f"{reply.status}"

    return await run(
        "gets",
        cfg["host"],
        cfg["port"],
        cfg["clients"],
        cfg["total"],
        cfg["max_seconds"],
        None,
        one,
    )


SCENARIOS = {
    "checkout": checkout,
    "api_checkout": api_checkout,
    "webhooks": webhooks,
    "gets": gets,
}


def main() -> None:
    scenario, cfg_json = sys.argv[1], sys.argv[2]
    cfg = json.loads(cfg_json)
    result = asyncio.run(SCENARIOS[scenario](cfg))
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
