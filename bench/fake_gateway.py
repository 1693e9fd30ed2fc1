"""A minimal fake hosted-checkout API for the benchmark: `python -m bench.fake_gateway
--port N --latency-ms 250`.

It answers `POST /v1/checkout/sessions` like Stripe's Checkout Sessions endpoint would
(an id and a hosted-page URL) after sleeping `latency-ms`, and `GET /health`; `POST /control/latency/<ms>` changes the latency. asyncio
serves thousands of waiting calls from one thread, so the fake itself is never the
bottleneck. (Once the Stripe adapter and tests/fakes/stripe_api.py are on main, the
checkout benchmark can target the real adapter instead: see bench/README in RESULTS.md.)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json

_ids = itertools.count(1)


class State:
    latency = 0.0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 state: State, public_url: str) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            length = 0
            close = False
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value.strip())
                elif key.strip().lower() == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            if method == "POST" and path.startswith("/v1/checkout/sessions"):
                if state.latency:
                    await asyncio.sleep(state.latency)
                sid = f"cs_bench_{next(_ids):09d}"
                status, body = 200, json.dumps(
                    {"id": sid, "object": "checkout.session", "status": "open",
                     "url": f"{public_url}/pay/{sid}"}).encode()
            elif method == "POST" and path.startswith("/control/latency/"):
                # The benchmark switches latency between runs without a restart.
                state.latency = float(path.rsplit("/", 1)[1]) / 1000.0
                status, body = 200, b'{"ok":true}'
            elif path == "/health":
                status, body = 200, b'{"ok":true}'
            else:
                status, body = 404, b'{"error":{"message":"not found"}}'
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode() + body)
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def serve(port: int, latency_ms: float, public_url: str) -> None:
    state = State()
    state.latency = latency_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, state, public_url), "127.0.0.1", port,
        backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--public-url", default="http://127.0.0.1:9")
    args = parser.parse_args()
    public = args.public_url if args.public_url != "http://127.0.0.1:9" else \
        f"http://127.0.0.1:{args.port}"
    asyncio.run(serve(args.port, args.latency_ms, public))


if __name__ == "__main__":
    main()
