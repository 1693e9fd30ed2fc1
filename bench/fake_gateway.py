"""A lean fake of Stripe's Checkout Sessions API for the checkout benchmark:
`python -m bench.fake_gateway --port N --latency-ms 250`.

What the benchmark needs from Stripe, shaped like Stripe: `POST /v1/checkout/sessions`
(form-encoded, Bearer secret key, Idempotency-Key honoured: a repeated key gets the first
answer) answers a full checkout.session object after sleeping the configured latency;
`GET /v1/checkout/sessions/<id>` retrieves one; errors are Stripe's error envelope.
`POST /_test/latency` ({"ms": N}, as tests/fakes/stripe_api.py takes it) or
`POST /control/latency/<ms>` changes the latency; `GET /health` answers.

Why not tests/fakes/stripe_api.py: it runs on werkzeug's development server, which
closes every connection and costs about a millisecond of CPU per call; on two shared
cores that is CPU taken from the app under test. Here asyncio serves thousands of
waiting calls from one thread on keep-alive connections, as the real API would be
reached, so the fake itself is never what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

_ids = itertools.count(1)
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class State:
    latency = 0.0

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url
        self.sessions: dict[str, bytes] = {}
        self.replies: dict[str, tuple[int, bytes]] = {}  # Idempotency-Key → answer


def _error(
    status: int, message: str, type_: str = "invalid_request_error", **extra: str
) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"type": type_, "message": message, **extra}}).encode()


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (a[b][0][c]=v) back into dicts; lists stay index-keyed."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def create_session(state: State, body: bytes) -> tuple[int, bytes]:
    p = _nested(parse_qsl(body.decode(), keep_blank_values=True))
    if p.get("mode") != "payment":
        return _error(400, "mode must be payment", param="mode")
    items = p.get("line_items") or {}
    if not items:
        return _error(400, "line_items is required", code="parameter_missing", param="line_items")
    try:
        total = sum(
            int(i["price_data"]["unit_amount"]) * int(i["quantity"]) for i in items.values()
        )
        currency = next(iter(items.values()))["price_data"]["currency"]
    except (KeyError, ValueError):
        return _error(400, "Invalid line_items", param="line_items")
    if not p.get("success_url"):
        return _error(400, "success_url is required", code="parameter_missing", param="success_url")
    now = int(time.time())
    sid = f"cs_test_{next(_ids):08d}{secrets.token_hex(8)}"
    session = {
        "id": sid,
        "object": "checkout.session",
        "amount_subtotal": total,
        "amount_total": total,
        "currency": currency,
        "cancel_url": p.get("cancel_url"),
        "success_url": p["success_url"],
        "client_reference_id": p.get("client_reference_id"),
        "client_secret": None,
        "created": now,
        "expires_at": int(p.get("expires_at") or now + 86400),
        "customer": None,
        "customer_email": p.get("customer_email"),
        "customer_details": None,
        "livemode": False,
        "locale": None,
        "metadata": p.get("metadata") or {},
        "mode": "payment",
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "submit_type": None,
        "ui_mode": "hosted",
        "url": f"{state.public_url}/pay/{sid}",
    }
    encoded = json.dumps(session).encode()
    state.sessions[sid] = encoded
    return 200, encoded


async def answer(
    state: State, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes]:
    if path == "/health":
        return 200, b'{"ok":true}'
    if method == "POST" and path.startswith("/control/latency/"):
        state.latency = float(path.rsplit("/", 1)[1]) / 1000.0
        return 200, b'{"ok":true}'
    if method == "POST" and path == "/_test/latency":
        state.latency = float(json.loads(body or b"{}").get("ms", 0)) / 1000.0
        return 200, json.dumps({"latency_ms": state.latency * 1000}).encode()
    if not path.startswith("/v1/"):
        return _error(404, f"Unrecognized request URL ({method}: {path}).")
    if not headers.get("authorization", "").startswith("Bearer sk_"):
        return _error(401, "Invalid API Key provided.", type_="invalid_request_error")
    if state.latency:
        await asyncio.sleep(state.latency)
    if method == "POST" and path == "/v1/checkout/sessions":
        key = headers.get("idempotency-key")
        if key and key in state.replies:
            return state.replies[key]
        reply = create_session(state, body)
        if key and reply[0] == 200:
            state.replies[key] = reply
        return reply
    if method == "GET" and path.startswith("/v1/checkout/sessions"):
        sid = path.split("?", 1)[0].rsplit("/", 1)[1]
        if sid == "sessions":
            return 200, b'{"object":"list","data":[],"has_more":false}'
        found = state.sessions.get(sid)
        if found is None:
            return _error(
                404, f"No such checkout.session: '{sid}'", code="resource_missing", param="session"
            )
        return 200, found
    return _error(404, f"Unrecognized request URL ({method}: {path}).")


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: State) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                key, _, value = line.partition(":")
                if key:
                    headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
            close = headers.get("connection", "").lower() == "close"
            status, payload = await answer(state, method, path, headers, body)
            extra = ""
            if headers.get("idempotency-key"):
                extra += f"Idempotency-Key: {headers['idempotency-key']}\r\n"
            if close:
                extra += "Connection: close\r\n"
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                f"Request-Id: req_{secrets.token_hex(7)}\r\nStripe-Version: 2024-06-20\r\n"
                f"{extra}\r\n".encode()
                + payload
            )
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def serve(port: int, latency_ms: float, public_url: str) -> None:
    state = State(public_url)
    state.latency = latency_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, state), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--public-url", default=None, help="base of the hosted-page URLs (default: this server)"
    )
    args = parser.parse_args()
    asyncio.run(
        serve(args.port, args.latency_ms, args.public_url or f"http://127.0.0.1:{args.port}")
    )


if __name__ == "__main__":
    main()
