"""A fast local webhook receiver for bench/live.py: asyncio, HTTP/1.1 keep-alive.

Every POST is verified with the `standardwebhooks` package (the reference library,
independent of Kassa's signer) against the secret given with --secret: a request that
verifies is answered 204 and its webhook-id recorded with its arrival time; one that does
not is answered 400 and counted as bad (Kassa retries it, so a bad signature shows up as
a missing or late delivery, never as a silent success). GET /stats: counts, distinct
verified ids, duplicates, and the sustained rate (deliveries per second over the middle
80% of arrivals, and the slowest 5-second window in it); GET /health for readiness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WINDOW = 5.0  # seconds: the slowest window of this length is reported


class Receiver:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.requests = 0
        self.bad_signature = 0
        self.first_seen: dict[str, float] = {}  # webhook-id -> wall-clock arrival
        self.duplicates = 0

    def receive(self, headers: dict[str, str], body: bytes) -> bool:
        self.requests += 1
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            self.bad_signature += 1
            return False
        msg_id = headers["webhook-id"]
        if msg_id in self.first_seen:
            self.duplicates += 1
        else:
            self.first_seen[msg_id] = time.time()
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "verified_distinct_ids": len(self.first_seen),
            "duplicates": self.duplicates,
            "bad_signature": self.bad_signature,
            **sustained(sorted(self.first_seen.values())),
        }

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                if method == "POST":
                    if self.receive(headers, body):
                        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    else:
                        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                else:
                    reply = b"ok"
                    if path == "/stats":
                        reply = json.dumps(self.stats()).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(reply)}\r\n\r\n".encode()
                        + reply
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def sustained(arrivals: list[float]) -> dict[str, Any]:
    """The rate over the middle 80% of the arrivals (start-up and the last stragglers
    left out) and the lowest count in any WINDOW-second window within it."""
    if len(arrivals) < 10:
        return {"sustained_rate": None, "slowest_window_rate": None, "window_seconds": None}
    lo, hi = int(len(arrivals) * 0.1), int(len(arrivals) * 0.9)
    span = arrivals[hi] - arrivals[lo]
    slowest = None
    if span >= WINDOW:
        # Windows starting at each arrival within the span; count arrivals in [t, t+WINDOW).
        end = lo
        for start in range(lo, hi):
            if arrivals[start] + WINDOW > arrivals[hi]:
                break
            while arrivals[end] < arrivals[start] + WINDOW:
                end += 1
            count = end - start
            slowest = count if slowest is None else min(slowest, count)
    return {
        "sustained_rate": round((hi - lo) / span, 1) if span > 0 else None,
        "window_seconds": round(span, 1),
        "slowest_window_rate": round(slowest / WINDOW, 1) if slowest is not None else None,
        "first_at": arrivals[0],
        "last_at": arrivals[-1],
    }


async def main(port: int, secret: str) -> None:
    receiver = Receiver(secret)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_ secret")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.secret))
