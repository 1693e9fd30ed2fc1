"""A fake Razorpay API on a loopback port, for exercising the real SDK over HTTP.

It keeps orders, payments, refunds and disputes in memory, answers in Razorpay's shapes
(including its error object), and records every request: method, path, query, JSON body,
basic auth and the X-Refund-Idempotency header. Tests can queue canned errors, connection
resets and latency. With `webhook_url` set it also sends the signed webhooks Razorpay would
(payment.*, order.paid, refund.*) when the modal pays, a capture or a refund happens;
Plans, Subscriptions and their Invoices are in tests/fakes/razorpay_subscriptions.py. It also serves a stand-in for checkout.js at /v1/checkout.js whose
"Pay", "Fail" and "Dismiss" buttons drive the fake the way Razorpay's modal would.

Card recurring (saved methods) as Razorpay documents it: customers (POST /v1/customers,
fail_existing), authorisation orders (customer_id, method, token{max_amount, expire_at,
frequency}) whose payment made with Checkout's `recurring: "1"` and `customer_id` creates a
token on the customer (the payment names token_id and customer_id), the customer's tokens
(GET/DELETE /v1/customers/{id}/tokens/{token_id}) and POST /v1/payments/create/recurring,
which charges a token on a new order (`recurring_declines` makes it decline).

    with FakeRazorpay().running() as fake:      # or the `razorpay_api` pytest fixture
        client = razorpay.Client(auth=(fake.key_id, fake.key_secret), base_url=fake.url)

    python -m tests.fakes.razorpay_api --port 8765   # for a manual run against `flask run`
"""

from __future__ import annotations

import argparse
import copy
import re
import secrets
import socket
import string
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes.razorpay_signing import payment_signature, signed_webhook
from tests.fakes.razorpay_subscriptions import SubscriptionsMixin

CHECKOUT_JS = Path(__file__).with_name("razorpay_checkout.js")
_ALNUM = string.ascii_letters + string.digits


def _id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(14))


def _error(
    status: int,
    description: str,
    code: str = "BAD_REQUEST_ERROR",
    *,
    source: str = "NA",
    step: str = "NA",
    reason: str = "NA",
    metadata: dict[str, Any] | None = None,
) -> tuple[Response, int]:
    return jsonify(
        {
            "error": {
                "code": code,
                "description": description,
                "source": source,
                "step": step,
                "reason": reason,
                "metadata": metadata or {},
            }
        }
    ), status


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    auth: tuple[str, str] | None
    idempotency_key: str | None
    headers: dict[str, str]


@dataclass
class Injection:
    kind: str  # "error", "reset", "latency"
    path: str | None = None  # only requests whose path starts with this
    method: str | None = None
    status: int = 400
    body: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class _DropConnection(ConnectionResetError):
    """Raised inside the app so werkzeug drops the socket without an answer."""


class FakeRazorpay(SubscriptionsMixin):
    def __init__(
        self,
        key_id: str = "rzp_test_fakekey",
        key_secret: str = "fake_key_secret",
        webhook_secret: str = "fake_webhook_secret",
        webhook_url: str | None = None,
    ) -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.order_capture: dict[str, str] = {}  # order id -> automatic | manual
        self.customers: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}  # token id -> token (with "customer_id")
        # Authorisation orders: order id -> {"customer_id", "method", "token"} as created.
        self.order_recurring: dict[str, dict[str, Any]] = {}
        # token id -> (reason, description): its recurring charges are declined by the bank.
        self.recurring_declines: dict[str, tuple[str, str]] = {}
        self.card_expiry = (12, 2034)
        # "created": recurring payments wait (file-based banks) until `settle` says.
        self.recurring_status = "captured"
        self._refund_keys: dict[str, tuple[str, Any, str]] = {}  # key -> (payment, body, rfnd)
        self.requests: list[Recorded] = []
        self.injections: deque[Injection] = deque()
        self.refund_initial_status = "pending"
        # When set, the events Razorpay would send are POSTed here (signed, in a thread,
        # after `webhook_delay`), as the modal, capture and refund calls cause them.
        self.webhook_url = webhook_url
        self.webhook_delay = 0.05
        self.deliveries: list[tuple[str, int | str]] = []  # (event type, HTTP status/error)
        self._senders: list[threading.Thread] = []
        self.lock = threading.RLock()
        self._subscriptions_init()
        self.app = self._make_app()
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(
            host, port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://{host}:{self._server.server_port}"
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.wait_for_deliveries()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def running(self) -> Iterator[FakeRazorpay]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ------------------------------------------------------------ injections

    def queue_error(
        self,
        status: int = 400,
        description: str = "Bad request",
        code: str = "BAD_REQUEST_ERROR",
        *,
        path: str | None = None,
        method: str | None = None,
        source: str = "NA",
        step: str = "NA",
        reason: str = "NA",
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next matching API request answers this Razorpay-shaped error."""
        payload = (
            body
            if body is not None
            else {
                "error": {
                    "code": code,
                    "description": description,
                    "source": source,
                    "step": step,
                    "reason": reason,
                    "metadata": {},
                }
            }
        )
        self.injections.append(Injection("error", path, method, status, payload))

    def queue_reset(self, *, path: str | None = None, method: str | None = None) -> None:
        """The next matching request is dropped without an answer (before any effect)."""
        self.injections.append(Injection("reset", path, method))

    def queue_latency(
        self, seconds: float, *, path: str | None = None, method: str | None = None
    ) -> None:
        """The next matching request takes effect, then answers `seconds` late."""
        self.injections.append(Injection("latency", path, method, seconds=seconds))

    def _take_injection(self) -> Injection | None:
        with self.lock:
            for inj in list(self.injections):
                if inj.path and not request.path.startswith(inj.path):
                    continue
                if inj.method and inj.method.upper() != request.method:
                    continue
                self.injections.remove(inj)
                return inj
        return None

    # ------------------------------------------------------------ state helpers for tests

    def calls(self, method: str | None = None, prefix: str | None = None) -> list[Recorded]:
        """Recorded API requests, optionally by method and path prefix."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (prefix is None or r.path.startswith(prefix))
        ]

    def add_payment(
        self,
        order_id: str,
        status: str | None = None,
        *,
        method: str = "card",
        amount: int | None = None,
        currency: str | None = None,
        error_reason: str = "payment_failed",
        error_description: str = "Payment failed because the card was declined",
        notes: dict[str, Any] | None = None,
        created_at: int | None = None,
        recurring: bool = False,
        customer_id: str | None = None,
        last4: str = "1111",
    ) -> dict[str, Any]:
        """A payment made by a customer on an order (what Checkout would create).

        status None follows the order's capture setting: captured or authorized. With
        `recurring` and the order's `customer_id` (what Checkout sends for an authorisation
        order), a paid card payment creates the customer's token and names it.
        """
        with self.lock:
            order = self.orders[order_id]
            if status is None:
                status = (
                    "authorized" if self.order_capture.get(order_id) == "manual" else "captured"
                )
            pid = _id("pay")
            payment: dict[str, Any] = {
                "id": pid,
                "entity": "payment",
                "amount": order["amount"] if amount is None else amount,
                "currency": currency or order["currency"],
                "status": status,
                "order_id": order_id,
                "invoice_id": None,
                "international": False,
                "method": method,
                "amount_refunded": 0,
                "refund_status": None,
                "captured": status == "captured",
                "description": None,
                "card_id": None,
                "bank": None,
                "wallet": None,
                "vpa": None,
                "email": "customer@example.com",
                "contact": "+919999999999",
                "notes": notes if notes is not None else dict(order.get("notes") or {}),
                "fee": None,
                "tax": None,
                "error_code": None,
                "error_description": None,
                "error_source": None,
                "error_step": None,
                "error_reason": None,
                "customer_id": None,
                "token_id": None,
                "created_at": created_at or int(time.time()),
            }
            if method == "card":
                payment["card_id"] = _id("card")
                payment["card"] = {
                    "id": payment["card_id"],
                    "entity": "card",
                    "name": "Test Customer",
                    "last4": last4,
                    "network": "Visa",
                    "type": "credit",
                    "issuer": "HDFC",
                    "international": False,
                    "emi": False,
                }
            elif method == "upi":
                payment["vpa"] = "customer@okbank"
                payment["upi"] = {"vpa": "customer@okbank"}
            elif method == "wallet":
                payment["wallet"] = "paytm"
            elif method == "netbanking":
                payment["bank"] = "HDFC"
            if status == "failed":
                payment.update(
                    error_code="BAD_REQUEST_ERROR",
                    error_description=error_description,
                    error_source="customer",
                    error_step="payment_authorization",
                    error_reason=error_reason,
                )
            auth = self.order_recurring.get(order_id)
            if (
                auth is not None
                and recurring
                and customer_id == auth["customer_id"]
                and method == "card"
            ):
                payment["customer_id"] = customer_id
                if status in ("captured", "authorized"):
                    payment["token_id"] = self.add_token(
                        customer_id, last4=last4, expire_at=auth["token"].get("expire_at")
                    )["id"]
            self.payments[pid] = payment
            order["attempts"] += 1
            if status in ("captured", "authorized") and order["status"] != "paid":
                order["status"] = "paid" if status == "captured" else "attempted"
                if status == "captured":
                    order["amount_paid"] = payment["amount"]
                    order["amount_due"] = 0
            elif order["status"] == "created":
                order["status"] = "attempted"
            return copy.deepcopy(payment)

    def add_token(
        self,
        customer_id: str,
        *,
        last4: str = "1111",
        expire_at: int | None = None,
        status: str = "confirmed",
    ) -> dict[str, Any]:
        """A card recurring token on a customer, shaped like Razorpay's token entity."""
        with self.lock:
            month, year = self.card_expiry
            token = {
                "id": _id("token"),
                "entity": "token",
                "token": "".join(secrets.choice(_ALNUM) for _ in range(14)),
                "bank": None,
                "wallet": None,
                "method": "card",
                "card": {
                    "entity": "card",
                    "name": "Test Customer",
                    "last4": last4,
                    "network": "Visa",
                    "type": "credit",
                    "issuer": "HDFC",
                    "international": False,
                    "emi": False,
                    "sub_type": "consumer",
                    "expiry_month": month,
                    "expiry_year": year,
                },
                "recurring": True,
                "recurring_details": {"status": status, "failure_reason": None},
                "auth_type": None,
                "mrn": None,
                "used_at": int(time.time()),
                "created_at": int(time.time()),
                "expired_at": expire_at or int(time.time()) + 10 * 365 * 86400,
                "dcc_enabled": False,
                "customer_id": customer_id,
            }
            self.tokens[token["id"]] = token
            return copy.deepcopy(token)

    def settle(
        self,
        payment_id: str,
        status: str,
        *,
        error_reason: str = "payment_failed",
        error_description: str = "Payment failed",
    ) -> dict[str, Any]:
        """A payment left `created` is captured or fails at the bank, later."""
        with self.lock:
            payment = self.payments[payment_id]
            if status == "captured":
                payment.update(status="captured", captured=True)
                order = self.orders[payment["order_id"]]
                order.update(status="paid", amount_paid=payment["amount"], amount_due=0)
            else:
                payment.update(
                    status="failed",
                    error_code="BAD_REQUEST_ERROR",
                    error_description=error_description,
                    error_source="bank",
                    error_step="payment_authorization",
                    error_reason=error_reason,
                )
            return copy.deepcopy(payment)

    def capture_now(self, payment_id: str) -> dict[str, Any]:
        """Razorpay's own auto-capture (or a dashboard capture) of an authorized payment."""
        with self.lock:
            payment = self.payments[payment_id]
            payment.update(status="captured", captured=True)
            order = self.orders[payment["order_id"]]
            order.update(status="paid", amount_paid=payment["amount"], amount_due=0)
            return copy.deepcopy(payment)

    def dashboard_refund(self, payment_id: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made in Razorpay's dashboard: no notes, no idempotency key."""
        with self.lock:
            return copy.deepcopy(
                self._make_refund(payment_id, {"amount": amount} if amount else {})
            )

    def set_refund_status(self, refund_id: str, status: str) -> dict[str, Any]:
        with self.lock:
            self.refunds[refund_id]["status"] = status
            return copy.deepcopy(self.refunds[refund_id])

    def create_dispute(
        self,
        payment_id: str,
        *,
        amount: int | None = None,
        status: str = "open",
        reason_code: str = "chargeback",
    ) -> dict[str, Any]:
        with self.lock:
            payment = self.payments[payment_id]
            dispute = {
                "id": _id("disp"),
                "entity": "dispute",
                "payment_id": payment_id,
                "amount": payment["amount"] if amount is None else amount,
                "currency": payment["currency"],
                "amount_deducted": 0,
                "reason_code": reason_code,
                "reason_description": "Customer disputed",
                "respond_by": int(time.time()) + 7 * 86400,
                "status": status,
                "phase": "chargeback",
                "created_at": int(time.time()),
            }
            self.disputes[dispute["id"]] = dispute
            return copy.deepcopy(dispute)

    def callback_fields(
        self, order_id: str, payment_id: str, secret: str | None = None
    ) -> dict[str, str]:
        """What Checkout posts to callback_url after a successful payment."""
        return {
            "razorpay_payment_id": payment_id,
            "razorpay_order_id": order_id,
            "razorpay_signature": payment_signature(
                secret or self.key_secret, order_id, payment_id
            ),
        }

    def failure_fields(self, payment_id: str) -> dict[str, str]:
        """What Checkout posts to callback_url after a failed attempt (redirect mode)."""
        p = self.payments[payment_id]
        return {
            "error[code]": p["error_code"] or "BAD_REQUEST_ERROR",
            "error[description]": p["error_description"] or "Payment failed",
            "error[source]": p["error_source"] or "customer",
            "error[step]": p["error_step"] or "payment_authorization",
            "error[reason]": p["error_reason"] or "payment_failed",
            "error[metadata][order_id]": p["order_id"],
            "error[metadata][payment_id]": payment_id,
        }

    # ------------------------------------------------------------ webhooks

    def event_payload(
        self,
        kind: str,
        *,
        payment_id: str | None = None,
        refund_id: str | None = None,
        dispute_id: str | None = None,
        order_id: str | None = None,
    ) -> dict[str, Any]:
        """A webhook body as Razorpay builds it, from a snapshot of current state.

        The payment's status in the snapshot is the one the event describes, so events
        built now can be delivered later in any order.
        """
        with self.lock:
            payload: dict[str, Any] = {}
            if refund_id:
                refund = copy.deepcopy(self.refunds[refund_id])
                if kind in ("refund.created", "refund.processed", "refund.failed"):
                    refund["status"] = {
                        "refund.created": "pending",
                        "refund.processed": "processed",
                        "refund.failed": "failed",
                    }[kind]
                payload["refund"] = {"entity": refund}
                payment_id = payment_id or refund["payment_id"]
            if dispute_id:
                dispute = copy.deepcopy(self.disputes[dispute_id])
                dispute["status"] = kind.rsplit(".", 1)[-1].replace("created", "open")
                payload["dispute"] = {"entity": dispute}
                payment_id = payment_id or dispute["payment_id"]
            if payment_id:
                payment = copy.deepcopy(self.payments[payment_id])
                if kind == "payment.authorized":
                    payment.update(status="authorized", captured=False)
                elif kind in ("payment.captured", "order.paid"):
                    payment.update(status="captured", captured=True)
                payload["payment"] = {"entity": payment}
                order_id = order_id or payment["order_id"]
            if kind == "order.paid" and order_id:
                order = copy.deepcopy(self.orders[order_id])
                order.update(status="paid", amount_paid=order["amount"], amount_due=0)
                payload["order"] = {"entity": order}
            return {
                "entity": "event",
                "account_id": "acc_FakeAccount01",
                "event": kind,
                "contains": list(payload),
                "payload": payload,
                "created_at": int(time.time()),
            }

    def webhook(
        self,
        kind: str,
        *,
        event_id: str | None = None,
        secret: str | None = None,
        **ids: str | None,
    ) -> tuple[bytes, dict[str, str]]:
        """Signed body and headers for one event (secret defaults to the webhook secret)."""
        return signed_webhook(
            secret or self.webhook_secret, self.event_payload(kind, **ids), event_id
        )

    def deliver(self, *events: tuple[str, dict[str, str]]) -> None:
        """Send (kind, ids) events to webhook_url in order, each once, in the background.

        Payloads are built now, so they describe the moment the event happened.
        """
        if not self.webhook_url:
            return
        built = [(kind, *self.webhook(kind, **ids)) for kind, ids in events]
        sender = threading.Thread(target=self._send, args=(built,), daemon=True)
        self._senders.append(sender)
        sender.start()

    def _send(self, built: list[tuple[str, bytes, dict[str, str]]]) -> None:
        for kind, body, headers in built:
            time.sleep(self.webhook_delay)
            try:
                status: int | str = requests.post(
                    self.webhook_url or "", data=body, headers=headers, timeout=10
                ).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with self.lock:
                self.deliveries.append((kind, status))

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        for sender in list(self._senders):
            sender.join(timeout)

    def _payment_events(self, payment: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
        ids = {"payment_id": payment["id"]}
        if payment["status"] == "failed":
            return [("payment.failed", ids)]
        events = [("payment.authorized", ids)]
        if payment["status"] == "captured":
            events += [("payment.captured", ids), ("order.paid", ids)]
        return events

    # ------------------------------------------------------------ the API

    def _make_refund(self, payment_id: str, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments[payment_id]
        amount = body.get("amount")
        if amount is None:
            amount = payment["amount"] - payment["amount_refunded"]
        refund = {
            "id": _id("rfnd"),
            "entity": "refund",
            "amount": amount,
            "currency": payment["currency"],
            "payment_id": payment_id,
            "notes": body.get("notes") or [],
            "receipt": body.get("receipt"),
            "acquirer_data": {"arn": None},
            "created_at": int(time.time()),
            "batch_id": None,
            "status": self.refund_initial_status,
            "speed_processed": "normal",
            "speed_requested": body.get("speed", "normal"),
        }
        self.refunds[refund["id"]] = refund
        payment["amount_refunded"] += amount
        full = payment["amount_refunded"] >= payment["amount"]
        payment["refund_status"] = "full" if full else "partial"
        if full:
            payment["status"] = "refunded"
        return refund

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        fake = self

        @app.before_request
        def record_and_inject() -> Any:
            if request.path.startswith("/_fake/") or request.path == "/v1/checkout.js":
                return None
            auth = request.authorization
            fake.requests.append(
                Recorded(
                    method=request.method,
                    path=request.path,
                    query=dict(request.args),
                    json=request.get_json(silent=True),
                    headers=dict(request.headers),
                    auth=(auth.username or "", auth.password or "") if auth else None,
                    idempotency_key=request.headers.get("X-Refund-Idempotency"),
                )
            )
            if not auth or (auth.username, auth.password) != (fake.key_id, fake.key_secret):
                return _error(401, "Authentication failed")
            inj = fake._take_injection()
            if inj is None:
                return None
            if inj.kind == "error":
                return jsonify(inj.body), inj.status
            if inj.kind == "reset":
                sock = request.environ.get("werkzeug.socket")
                if sock is not None:
                    # Linger 0: the close sends RST, like a middlebox killing the flow.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raise _DropConnection("injected reset")
            request.environ["fake.latency"] = inj.seconds
            return None

        @app.after_request
        def slow_down(response: Response) -> Response:
            delay = request.environ.get("fake.latency")
            if delay:
                time.sleep(delay)
            return response

        # ---- orders

        @app.post("/v1/orders")
        def create_order() -> Any:
            body = request.get_json(silent=True) or {}
            amount, currency = body.get("amount"), body.get("currency")
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
                return _error(400, "The amount must be an integer.")
            if not isinstance(currency, str) or len(currency) != 3:
                return _error(400, "The currency field is required.")
            if currency in ("KWD", "BHD", "OMR") and amount % 10:
                return _error(400, "The amount's last decimal must be 0 for this currency.")
            receipt = body.get("receipt")
            if receipt is not None and len(str(receipt)) > 40:
                return _error(400, "The receipt may not be greater than 40 characters.")
            capture = (body.get("payment") or {}).get("capture") or (
                "automatic" if body.get("payment_capture", True) else "manual"
            )
            customer_id, token = body.get("customer_id"), body.get("token")
            if customer_id is not None and customer_id not in fake.customers:
                return _error(400, "The id provided does not exist")
            if token is not None:
                if not customer_id:
                    return _error(400, "The customer_id field is required when token is sent.")
                if body.get("method") not in ("card", "emandate", "upi", "nach"):
                    return _error(400, "The method field is required when token is sent.")
                max_amount = token.get("max_amount")
                if (
                    not isinstance(max_amount, int)
                    or isinstance(max_amount, bool)
                    or max_amount < 1
                ):
                    return _error(400, "The token.max_amount must be an integer.")
                if token.get("frequency") not in (
                    "as_presented",
                    "weekly",
                    "monthly",
                    "yearly",
                    "daily",
                    "quarterly",
                ):
                    return _error(400, "The selected token.frequency is invalid.")
                expire_at = token.get("expire_at")
                if expire_at is not None and (
                    not isinstance(expire_at, int) or expire_at <= time.time()
                ):
                    return _error(400, "The token.expire_at must be a future timestamp.")
            with fake.lock:
                order = {
                    "id": _id("order"),
                    "entity": "order",
                    "amount": amount,
                    "amount_paid": 0,
                    "amount_due": amount,
                    "currency": currency,
                    "receipt": receipt,
                    "offer_id": None,
                    "status": "created",
                    "attempts": 0,
                    "notes": body.get("notes") or [],
                    "created_at": int(time.time()),
                }
                fake.orders[order["id"]] = order
                fake.order_capture[order["id"]] = capture
                if token is not None:
                    fake.order_recurring[order["id"]] = {
                        "customer_id": customer_id,
                        "method": body.get("method"),
                        "token": dict(token),
                    }
                return jsonify(order)

        @app.get("/v1/orders")
        def list_orders() -> Any:
            receipt = request.args.get("receipt")
            count = min(int(request.args.get("count", 10)), 100)
            skip = int(request.args.get("skip", 0))
            with fake.lock:
                items = [
                    o
                    for o in fake.orders.values()
                    if receipt is None or receipt in str(o.get("receipt") or "")
                ]
                items = sorted(items, key=lambda o: o["created_at"], reverse=True)
                items = items[skip : skip + count]
                return jsonify(
                    {"entity": "collection", "count": len(items), "items": copy.deepcopy(items)}
                )

        @app.get("/v1/orders/<order_id>")
        def fetch_order(order_id: str) -> Any:
            with fake.lock:
                if order_id not in fake.orders:
                    return _error(400, "The id provided does not exist")
                return jsonify(fake.orders[order_id])

        @app.get("/v1/orders/<order_id>/payments")
        def order_payments(order_id: str) -> Any:
            with fake.lock:
                if order_id not in fake.orders:
                    return _error(400, "The id provided does not exist")
                items = [p for p in fake.payments.values() if p["order_id"] == order_id]
                return jsonify(
                    {"entity": "collection", "count": len(items), "items": copy.deepcopy(items)}
                )

        # ---- payments

        @app.get("/v1/payments/<payment_id>")
        def fetch_payment(payment_id: str) -> Any:
            with fake.lock:
                if payment_id not in fake.payments:
                    return _error(400, "The id provided does not exist")
                return jsonify(fake.payments[payment_id])

        @app.post("/v1/payments/<payment_id>/capture")
        def capture_payment(payment_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            with fake.lock:
                payment = fake.payments.get(payment_id)
                if payment is None:
                    return _error(400, "The id provided does not exist")
                if payment["status"] == "captured":
                    return _error(400, "This payment has already been captured")
                if payment["status"] != "authorized":
                    return _error(
                        400,
                        "Only payments which have been authorized and not yet "
                        "captured can be captured",
                    )
                if body.get("amount") != payment["amount"]:
                    return _error(400, "Capture amount must be equal to the amount authorized")
                if body.get("currency") not in (None, payment["currency"]):
                    return _error(400, "Currency does not match the payment currency")
                fake.capture_now(payment_id)
                fake.deliver(
                    ("payment.captured", {"payment_id": payment_id}),
                    ("order.paid", {"payment_id": payment_id}),
                )
                return jsonify(fake.payments[payment_id])

        @app.post("/v1/payments/<payment_id>/refund")
        def refund_payment(payment_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            key = request.headers.get("X-Refund-Idempotency")
            with fake.lock:
                payment = fake.payments.get(payment_id)
                if payment is None:
                    return _error(400, "The id provided does not exist")
                if key is not None:
                    if len(key) < 10 or not all(c in _ALNUM + "-_" for c in key):
                        return _error(400, "The idempotency key is invalid.")
                    seen = fake._refund_keys.get(key)
                    if seen is not None:
                        if seen[0] != payment_id or seen[1] != body:
                            return _error(
                                400,
                                "Different request with the same idempotency "
                                "key has already been processed.",
                            )
                        return jsonify(fake.refunds[seen[2]])
                if payment["status"] not in ("captured", "refunded"):
                    return _error(400, "The payment has not been captured yet")
                amount = body.get("amount", payment["amount"] - payment["amount_refunded"])
                if not isinstance(amount, int) or amount < 1:
                    return _error(400, "The amount must be an integer.")
                if amount > payment["amount"] - payment["amount_refunded"]:
                    return _error(400, "The refund amount provided is greater than amount captured")
                refund = fake._make_refund(payment_id, body)
                if key is not None:
                    fake._refund_keys[key] = (payment_id, body, refund["id"])
                events = [("refund.created", {"refund_id": refund["id"]})]
                if refund["status"] == "processed":
                    events.append(("refund.processed", {"refund_id": refund["id"]}))
                fake.deliver(*events)
                return jsonify(refund)

        @app.get("/v1/payments/<payment_id>/refunds")
        def payment_refunds(payment_id: str) -> Any:
            with fake.lock:
                items = [r for r in fake.refunds.values() if r["payment_id"] == payment_id]
                return jsonify(
                    {"entity": "collection", "count": len(items), "items": copy.deepcopy(items)}
                )

        @app.get("/v1/refunds/<refund_id>")
        def fetch_refund(refund_id: str) -> Any:
            with fake.lock:
                if refund_id not in fake.refunds:
                    return _error(400, "The id provided does not exist")
                return jsonify(fake.refunds[refund_id])

        # ---- customers and their tokens

        @app.post("/v1/customers")
        def create_customer() -> Any:
            body = request.get_json(silent=True) or {}
            email, name, contact = body.get("email"), body.get("name"), body.get("contact")
            if name is not None and (
                not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9.'/@() ]{3,50}", name)
            ):
                return _error(
                    400,
                    "The name format is invalid.",
                    source="business",
                    reason="input_validation_failed",
                )
            if email is not None and (
                not isinstance(email, str) or "@" not in email or len(email) > 64
            ):
                return _error(400, "The email must be a valid email address.")
            with fake.lock:
                for existing in fake.customers.values():
                    if (existing["email"], existing["contact"]) == (email, contact) and (
                        existing["name"] == name or name is None
                    ):
                        if str(body.get("fail_existing", "1")) == "0":
                            return jsonify(existing)
                        return _error(400, "Customer already exists for the merchant")
                customer = {
                    "id": _id("cust"),
                    "entity": "customer",
                    "name": name,
                    "email": email,
                    "contact": contact,
                    "gstin": None,
                    "notes": body.get("notes") or [],
                    "created_at": int(time.time()),
                }
                fake.customers[customer["id"]] = customer
                return jsonify(customer)

        def _public_token(token: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in token.items() if k != "customer_id"}

        @app.get("/v1/customers/<customer_id>/tokens")
        def list_tokens(customer_id: str) -> Any:
            with fake.lock:
                if customer_id not in fake.customers:
                    return _error(400, "The id provided does not exist")
                items = [
                    _public_token(t)
                    for t in fake.tokens.values()
                    if t["customer_id"] == customer_id
                ]
                return jsonify({"entity": "collection", "count": len(items), "items": items})

        @app.get("/v1/customers/<customer_id>/tokens/<token_id>")
        def fetch_token(customer_id: str, token_id: str) -> Any:
            with fake.lock:
                token = fake.tokens.get(token_id)
                if token is None or token["customer_id"] != customer_id:
                    return _error(400, "The id provided does not exist")
                return jsonify(_public_token(token))

        @app.delete("/v1/customers/<customer_id>/tokens/<token_id>")
        def delete_token(customer_id: str, token_id: str) -> Any:
            with fake.lock:
                token = fake.tokens.get(token_id)
                if token is None or token["customer_id"] != customer_id:
                    return _error(400, "The id provided does not exist")
                del fake.tokens[token_id]
                return jsonify({"deleted": True})

        @app.post("/v1/payments/create/recurring")
        def create_recurring() -> Any:
            body = request.get_json(silent=True) or {}
            for name in ("amount", "currency", "order_id", "customer_id", "token", "recurring"):
                if body.get(name) in (None, ""):
                    return _error(400, f"The {name} field is required.")
            if body["recurring"] not in (True, "1", 1, "true"):
                return _error(400, "The recurring field must be true.")
            with fake.lock:
                order = fake.orders.get(body["order_id"])
                token = fake.tokens.get(body["token"])
                if order is None or body["customer_id"] not in fake.customers:
                    return _error(400, "The id provided does not exist")
                if token is None or token["customer_id"] != body["customer_id"]:
                    return _error(400, "The token id provided does not exist")
                if body["amount"] != order["amount"] or body["currency"] != order["currency"]:
                    return _error(400, "The amount must match the order amount.")
                if order["status"] == "paid":
                    return _error(400, "Order has already been paid.")
                if token["expired_at"] <= time.time():
                    return _error(
                        400,
                        "The token has expired.",
                        source="business",
                        step="payment_initiation",
                        reason="token_expired",
                    )
                decline = fake.recurring_declines.get(token["id"])
                notes = body.get("notes") or {}
                if decline is not None:
                    p = fake.add_payment(
                        order["id"],
                        "failed",
                        error_reason=decline[0],
                        error_description=decline[1],
                        notes=notes,
                        last4=token["card"]["last4"],
                    )
                    fake.payments[p["id"]].update(
                        customer_id=token["customer_id"],
                        token_id=token["id"],
                        recurring=True,
                        error_source="bank",
                    )
                    fake.deliver(*fake._payment_events(fake.payments[p["id"]]))
                    return _error(
                        400,
                        decline[1],
                        source="bank",
                        step="payment_authorization",
                        reason=decline[0],
                        metadata={"payment_id": p["id"], "order_id": order["id"]},
                    )
                waits = fake.recurring_status == "created"
                p = fake.add_payment(
                    order["id"],
                    "created" if waits else None,
                    notes=notes,
                    last4=token["card"]["last4"],
                )
                fake.payments[p["id"]].update(
                    customer_id=token["customer_id"],
                    token_id=token["id"],
                    recurring=True,
                    email=body.get("email") or p["email"],
                    description=body.get("description"),
                )
                token["used_at"] = int(time.time())
                if not waits:
                    fake.deliver(*fake._payment_events(fake.payments[p["id"]]))
                return jsonify(
                    {
                        "razorpay_payment_id": p["id"],
                        "razorpay_order_id": order["id"],
                        "razorpay_signature": payment_signature(
                            fake.key_secret, order["id"], p["id"]
                        ),
                    }
                )

        # ---- checkout.js stand-in and its back door

        @app.get("/v1/checkout.js")
        def checkout_js() -> Response:
            return Response(CHECKOUT_JS.read_text(), mimetype="application/javascript")

        @app.post("/_fake/checkout/<order_id>/pay")
        def checkout_pay(order_id: str) -> Any:
            """What the modal does when the customer pays or fails (CORS simple request)."""
            outcome = request.form.get("outcome", "success")
            if request.form.get("key") != fake.key_id:
                resp = jsonify(
                    {
                        "error": {
                            "code": "BAD_REQUEST_ERROR",
                            "description": "Invalid key",
                            "reason": "NA",
                            "source": "NA",
                            "step": "NA",
                            "metadata": {},
                        }
                    }
                )
            elif order_id not in fake.orders:
                resp = jsonify(
                    {
                        "error": {
                            "code": "BAD_REQUEST_ERROR",
                            "description": "The id provided does not exist",
                            "source": "NA",
                            "step": "NA",
                            "reason": "NA",
                            "metadata": {},
                        }
                    }
                )
            elif outcome == "fail":
                p = fake.add_payment(order_id, "failed", method=request.form.get("method", "card"))
                fake.deliver(*fake._payment_events(p))
                fields = fake.failure_fields(p["id"])
                resp = jsonify(
                    {
                        "error": {
                            "code": fields["error[code]"],
                            "description": fields["error[description]"],
                            "source": fields["error[source]"],
                            "step": fields["error[step]"],
                            "reason": fields["error[reason]"],
                            "metadata": {"order_id": order_id, "payment_id": p["id"]},
                        }
                    }
                )
            else:
                p = fake.add_payment(
                    order_id,
                    method=request.form.get("method", "card"),
                    recurring=request.form.get("recurring") == "1",
                    customer_id=request.form.get("customer_id") or None,
                    last4=request.form.get("last4") or "1111",
                )
                fake.deliver(*fake._payment_events(p))
                resp = jsonify(fake.callback_fields(order_id, p["id"]))
            resp.headers["Access-Control-Allow-Origin"] = "*"
            return resp

        fake.subscription_routes(app, _error)

        return app


@pytest.fixture
def razorpay_api() -> Iterator[FakeRazorpay]:
    """A running fake Razorpay API on a loopback port."""
    with FakeRazorpay().running() as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Razorpay API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--key-id", default="rzp_test_fakekey")
    parser.add_argument("--key-secret", default="fake_key_secret")
    parser.add_argument("--webhook-secret", default="fake_webhook_secret")
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="POST signed events here, e.g. http://127.0.0.1:5000/webhooks/razorpay",
    )
    args = parser.parse_args()
    fake = FakeRazorpay(args.key_id, args.key_secret, args.webhook_secret, args.webhook_url)
    url = fake.start(args.host, args.port)
    print(
        f"fake Razorpay on {url} (checkout.js: {url}/v1/checkout.js); Ctrl-C stops it", flush=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()


__all__ = ["FakeRazorpay", "Recorded", "razorpay_api"]
