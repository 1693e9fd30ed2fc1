"""A lean fake of Stripe's Checkout Sessions API for the checkout benchmark:
`python -m bench.fake_gateway --port N --latency-ms 250`.

What the benchmark needs from Stripe, shaped like Stripe: `POST /v1/checkout/sessions`
(form-encoded, Bearer secret key, Idempotency-Key honoured: a repeated key gets the first
answer) answers a full checkout.session object after sleeping the configured latency;
`GET /v1/checkout/sessions/<id>` retrieves one; errors are Stripe's error envelope.
`POST /_test/latency` ({"ms": N}, as tests/fakes/stripe_api.py takes it) or
`POST /control/latency/<ms>` changes the latency; `GET /health` answers.

For the whole journey (bench/journey.py) it also plays Stripe's side after the checkout:
the hosted page `GET /pay/<session>` (the customer's browser, so no API latency), paying
on it `POST /pay/<session>` (the session becomes complete and paid with a payment intent,
Stripe sends a `checkout.session.completed` event signed with the webhook secret to the
target set by `POST /_test/webhook_target` ({"url": ...}), retried on failure, and the
customer is sent 303 to the success_url with {CHECKOUT_SESSION_ID} filled in), retrieving
a session with `expand[]` (payment_intent and its latest_charge as objects), and
`POST /v1/refunds` (a succeeded refund, Idempotency-Key honoured). `GET /_test/stats`
counts webhooks delivered and failed.

Why not tests/fakes/stripe_api.py: it runs on werkzeug's development server, which
closes every connection and costs about a millisecond of CPU per call; on two shared
cores that is CPU taken from the app under test. Here asyncio serves thousands of
waiting calls from one thread on keep-alive connections, as the real API would be
reached, so the fake itself is never what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_ids = itertools.count(1)
REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
}
WEBHOOK_SECRET = "whsec_bench_stripe"
HOSTED_PAGE = (
    b"<!doctype html><html><head><title>Pay</title></head><body>"
    b'<form method="post"><button>Pay</button></form></body></html>'
)


class State:
    latency = 0.0

    def __init__(self, public_url: str, webhook_secret: str = WEBHOOK_SECRET) -> None:
        self.public_url = public_url
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None
        self.sessions: dict[str, bytes] = {}
        self.replies: dict[str, tuple[int, bytes]] = {}  # Idempotency-Key → answer
        self.stats = {"webhooks_delivered": 0, "webhooks_failed": 0, "webhook_retries": 0}
        self.tasks: set[asyncio.Task[None]] = set()


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


def _sign(secret: str, payload: bytes, timestamp: int) -> str:
    """Stripe's scheme: t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<body>")."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def _post(url: str, headers: dict[str, str], body: bytes) -> int:
    """One plain HTTP/1.1 POST (Connection: close); its status."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{head}\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1])
    finally:
        writer.close()


async def deliver(state: State, event: dict[str, Any]) -> None:
    """Send one event to the webhook target, signed; retried (Stripe retries for days)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    for attempt in range(6):
        if attempt:
            state.stats["webhook_retries"] += 1
            await asyncio.sleep(0.5 * attempt)
        if state.webhook_url is None:
            continue
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": _sign(state.webhook_secret, body, int(time.time())),
        }
        try:
            if 200 <= await _post(state.webhook_url, headers, body) < 300:
                state.stats["webhooks_delivered"] += 1
                return
        except (OSError, ValueError, IndexError):
            pass
    state.stats["webhooks_failed"] += 1


def pay(state: State, sid: str) -> tuple[int, bytes, str]:
    """The customer pays on the hosted page: complete the session, send the event,
    redirect to the success_url."""
    found = state.sessions.get(sid)
    if found is None:
        return 404, b'{"error":{"message":"no such session"}}', ""
    session = json.loads(found)
    if session["status"] == "open":
        session.update(
            status="complete",
            payment_status="paid",
            payment_intent=f"pi_{secrets.token_hex(12)}",
            customer_details={"email": session.get("customer_email"), "name": "Journey"},
        )
        state.sessions[sid] = json.dumps(session).encode()
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "checkout.session.completed",
            "data": {"object": session},
        }
        task = asyncio.get_running_loop().create_task(deliver(state, event))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    location = session["success_url"].replace("{CHECKOUT_SESSION_ID}", sid)
    return 303, b"", location


def _expanded(session: dict[str, Any]) -> dict[str, Any]:
    """The session with payment_intent (and its latest_charge) expanded, as retrieve
    with expand[] answers."""
    pi = session.get("payment_intent")
    if isinstance(pi, str):
        session["payment_intent"] = {
            "id": pi,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "currency": session["currency"],
            "status": "succeeded",
            "metadata": session.get("metadata") or {},
            "last_payment_error": None,
            "latest_charge": {
                "id": "ch_" + pi[3:],
                "object": "charge",
                "paid": True,
                "payment_method_details": {
                    "type": "card",
                    "card": {"brand": "visa", "last4": "4242", "wallet": None},
                },
            },
        }
    return session


def create_refund(state: State, body: bytes) -> tuple[int, bytes]:
    p = _nested(parse_qsl(body.decode(), keep_blank_values=True))
    pi, amount = p.get("payment_intent"), p.get("amount")
    if not pi:
        return _error(400, "payment_intent is required", param="payment_intent")
    try:
        value = int(amount) if amount is not None else 0
    except ValueError:
        return _error(400, "Invalid integer: amount", param="amount")
    if value <= 0:
        return _error(400, "amount must be positive", param="amount")
    refund = {
        "id": f"re_{secrets.token_hex(12)}",
        "object": "refund",
        "amount": value,
        "currency": "usd",
        "charge": "ch_" + str(pi)[3:],
        "created": int(time.time()),
        "metadata": p.get("metadata") or {},
        "payment_intent": pi,
        "reason": p.get("reason"),
        "status": "succeeded",
        "failure_reason": None,
    }
    return 200, json.dumps(refund).encode()


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
    if method == "POST" and path == "/_test/webhook_target":
        state.webhook_url = json.loads(body or b"{}").get("url")
        return 200, json.dumps({"url": state.webhook_url}).encode()
    if path == "/_test/stats":
        return 200, json.dumps(state.stats).encode()
    if not path.startswith("/v1/"):
        return _error(404, f"Unrecognized request URL ({method}: {path}).")
    if not headers.get("authorization", "").startswith("Bearer sk_"):
        return _error(401, "Invalid API Key provided.", type_="invalid_request_error")
    if state.latency:
        await asyncio.sleep(state.latency)
    if method == "POST" and path in ("/v1/checkout/sessions", "/v1/refunds"):
        key = headers.get("idempotency-key")
        if key and key in state.replies:
            return state.replies[key]
        make = create_session if path == "/v1/checkout/sessions" else create_refund
        reply = make(state, body)
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
        if "expand" in path:
            return 200, json.dumps(_expanded(json.loads(found))).encode()
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
            extra = ""
            content_type = "application/json"
            if path.startswith("/pay/") and method in ("GET", "POST"):
                # The hosted page, in the customer's browser (no API latency).
                sid = path.split("?", 1)[0].rsplit("/", 1)[1]
                content_type = "text/html; charset=utf-8"
                if method == "GET":
                    found = sid in state.sessions
                    status, payload = (200, HOSTED_PAGE) if found else (404, b"Not Found")
                else:
                    status, payload, location = pay(state, sid)
                    if location:
                        extra += f"Location: {location}\r\n"
            else:
                status, payload = await answer(state, method, path, headers, body)
            if headers.get("idempotency-key"):
                extra += f"Idempotency-Key: {headers['idempotency-key']}\r\n"
            if close:
                extra += "Connection: close\r\n"
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                f"Request-Id: req_{secrets.token_hex(7)}\r\nStripe-Version: 2024-06-20\r\n"
                f"{extra}\r\n".encode()
                + payload
            )
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def serve(port: int, latency_ms: float, public_url: str, webhook_secret: str) -> None:
    state = State(public_url, webhook_secret)
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
    parser.add_argument("--webhook-secret", default=WEBHOOK_SECRET)
    args = parser.parse_args()
    asyncio.run(
        serve(
            args.port,
            args.latency_ms,
            args.public_url or f"http://127.0.0.1:{args.port}",
            args.webhook_secret,
        )
    )


if __name__ == "__main__":
    main()
