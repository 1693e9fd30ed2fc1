"""A fake Stripe API served over HTTP on loopback, for the real `stripe` SDK to talk to.

Stateful enough for Checkout: sessions (create with form-encoded nested params,
retrieve with expand, list, expire), payment intents (retrieve, capture), charges,
refunds (create, retrieve, list), disputes, and events (`GET /v1/events` with
`created[gte]` and `type` filters). It also serves a hosted payment page at
`/pay/<session id>` with Pay / Decline buttons and a Cancel link, so a browser can go
through a whole checkout; and it can post signed webhooks to a configured URL.

It records every request (method, path, headers, decoded form/query) so tests can
assert the exact parameters the SDK sent, honours `Idempotency-Key` like Stripe (same
key and parameters → the stored response replayed; same key, other parameters → 400
idempotency_error), and can answer the next N calls with canned errors
(status, Stripe-shaped body, `Stripe-Should-Retry`) and add latency.

Run it on its own for a dev server or a benchmark:

    python -m tests.fakes.stripe_api --port 12111 --latency-ms 250 \
        --webhook-url http://127.0.0.1:5000/webhooks/stripe --webhook-secret whsec_test
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import queue
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.stripe_billing import BillingMixin
from tests.fakes.stripe_signing import make_event, signature_header

THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # the recorder is the log
        pass


class StripeFakeError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type_, "message": message}}
        for key, value in (("code", code), ("param", param), ("decline_code", decline_code)):
            if value is not None:
                self.body["error"][key] = value


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`, `expand[]=x`) → nested dicts and lists."""
    root: dict[str, Any] = {}
    counters: dict[int, int] = {}
    for raw_key, value in pairs:
        m = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", raw_key)
        keys = [m.group(1), *re.findall(r"\[([^\]]*)\]", m.group(2))] if m else [raw_key]
        cur = root
        for i, key in enumerate(keys):
            if key == "":  # `x[]`: the next index of this container
                key = str(counters.get(id(cur), 0))
                counters[id(cur)] = int(key) + 1
            if i == len(keys) - 1:
                cur[key] = value
            else:
                cur = cur.setdefault(key, {})
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, Any]
    form: dict[str, Any]
    body: bytes
    status: int = 0

    @property
    def params(self) -> dict[str, Any]:
        return self.form if self.method == "POST" else self.query

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


@dataclass
class CannedError:
    status: int
    body: dict[str, Any]
    should_retry: bool | None = None
    method: str | None = None
    path: str | None = None  # a prefix, e.g. "/v1/checkout/sessions"

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class Delivery:
    event_id: str
    event_type: str
    status: int | None
    error: str | None = None


@dataclass
class FakeStripe(BillingMixin):
    """State and behaviour of the fake. `serve()` puts it on a loopback port."""

    latency_ms: int = 0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    api_keys: set[str] | None = None  # None: any sk_/rk_ key is accepted
    refund_status: str = "succeeded"  # status of new refunds
    charge_refunds_in_events: bool = True  # include charge.refunds in charge.refunded
    # Called with each recorded API request before it is handled (simulate races).
    before_request: Callable[[RecordedRequest], None] | None = None
    base_url: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._errors: deque[CannedError] = deque()
        self._idempotency: dict[str, tuple[tuple, int, dict[str, Any]]] = {}
        self._extra: dict[str, dict[str, Any]] = {}  # session id → line items, pi data
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._outbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._deliverer: threading.Thread | None = None
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("POST", re.compile(r"^/v1/checkout/sessions$"), self._create_session),
            ("GET", re.compile(r"^/v1/checkout/sessions$"), self._list_sessions),
            ("GET", re.compile(r"^/v1/checkout/sessions/([^/]+)$"), self._get_session),
            ("POST", re.compile(r"^/v1/checkout/sessions/([^/]+)/expire$"), self._expire),
            ("GET", re.compile(r"^/v1/payment_intents/([^/]+)$"), self._get_pi),
            ("POST", re.compile(r"^/v1/payment_intents/([^/]+)/capture$"), self._capture),
            ("POST", re.compile(r"^/v1/payment_intents/([^/]+)/cancel$"), self._cancel_pi),
            ("GET", re.compile(r"^/v1/charges/([^/]+)$"), self._get_charge),
            ("POST", re.compile(r"^/v1/refunds$"), self._create_refund),
            ("GET", re.compile(r"^/v1/refunds$"), self._list_refunds),
            ("GET", re.compile(r"^/v1/refunds/([^/]+)$"), self._get_refund),
            ("GET", re.compile(r"^/v1/disputes/([^/]+)$"), self._get_dispute),
            ("POST", re.compile(r"^/v1/customers$"), self._create_customer),
            ("GET", re.compile(r"^/v1/payment_methods/([^/]+)$"), self._get_pm),
            ("POST", re.compile(r"^/v1/payment_methods/([^/]+)/detach$"), self._detach_pm),
            ("POST", re.compile(r"^/v1/payment_intents$"), self._create_pi),
            ("POST", re.compile(r"^/v1/payment_intents/([^/]+)/confirm$"), self._confirm_pi),
            ("GET", re.compile(r"^/v1/setup_intents/([^/]+)$"), self._get_si),
            ("GET", re.compile(r"^/v1/events$"), self._list_events),
            ("GET", re.compile(r"^/v1/events/([^/]+)$"), self._get_event),
        ]
        self._billing_init()
        self._routes += [(m, re.compile(r), h) for m, r, h in self.billing_routes()]

    # ================================================================ serving
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> FakeStripe:
        self._server = make_server(
            host, port, self.wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.base_url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # quick shutdown
            name="fake-stripe",
            daemon=True,
        )
        self._thread.start()
        self._deliverer = threading.Thread(
            target=self._deliver_loop, name="fake-stripe-webhooks", daemon=True
        )
        self._deliverer.start()
        return self

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._deliverer is not None:
            self._outbox.put(None)
            self._deliverer.join(timeout=5)
            self._deliverer = None

    @property
    def port(self) -> int:
        return int(urlsplit(self.base_url).port or 0)

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if request.path.startswith("/v1/"):
            response = self._api(request)
        elif request.path.startswith("/pay/"):
            response = self._hosted(request)
        elif request.path.startswith("/3ds/"):
            response = self._challenge(request)
        elif request.path.startswith("/_test/"):
            response = self._control(request)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    # ================================================================ API plumbing
    def _api(self, request: Request) -> Response:
        body = request.get_data()
        form = (
            decode_form(parse_qsl(body.decode(), keep_blank_values=True))
            if request.method == "POST"
            else {}
        )
        query = decode_form(parse_qsl(request.query_string.decode(), keep_blank_values=True))
        record = RecordedRequest(
            request.method, request.path, dict(request.headers), query, form, body
        )
        with self.lock:
            self.requests.append(record)
            canned = next(
                (e for e in self._errors if e.matches(request.method, request.path)), None
            )
            if canned is not None:
                self._errors.remove(canned)
        if canned is not None:
            headers = {}
            if canned.should_retry is not None:
                headers["Stripe-Should-Retry"] = "true" if canned.should_retry else "false"
            return self._json(canned.status, canned.body, record, headers)
        if self.before_request is not None:
            self.before_request(record)
        auth = request.headers.get("Authorization", "")
        key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if not (
            key in self.api_keys if self.api_keys is not None else key.startswith(("sk_", "rk_"))
        ):
            return self._json(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided.",
                    }
                },
                record,
            )
        params = record.params
        with self.lock:
            idem = request.headers.get("Idempotency-Key") if request.method == "POST" else None
            fingerprint = (request.method, request.path, body)
            if idem and idem in self._idempotency:
                stored_fp, status, payload = self._idempotency[idem]
                if stored_fp != fingerprint:
                    return self._json(
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with the "
                                "same parameters they were first used with.",
                            }
                        },
                        record,
                    )
                return self._json(status, payload, record, {"Idempotent-Replayed": "true"})
            status, payload = self._dispatch(request.method, request.path, params)
            if idem and status in (200, 402):
                self._idempotency[idem] = (fingerprint, status, copy.deepcopy(payload))
        return self._json(status, payload, record)

    def _dispatch(
        self, method: str, path: str, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        for route_method, pattern, handler in self._routes:
            m = pattern.match(path)
            if m and route_method == method:
                try:
                    result = handler(params, *m.groups())
                except StripeFakeError as exc:
                    return exc.status, exc.body
                expand = params.get("expand") or []
                if isinstance(expand, str):
                    expand = [expand]
                return 200, self._expand(result, expand)
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"Unrecognized request URL ({method}: {path}).",
            }
        }

    def _json(
        self,
        status: int,
        payload: dict[str, Any],
        record: RecordedRequest,
        headers: dict[str, str] | None = None,
    ) -> Response:
        record.status = status
        response = Response(
            json.dumps(payload, indent=2), status=status, mimetype="application/json"
        )
        response.headers["Request-Id"] = "req_" + secrets.token_hex(7)
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    def _lookup(self, object_id: str) -> dict[str, Any] | None:
        for prefix, table in (
            ("cs_", self.sessions),
            ("pi_", self.payment_intents),
            ("ch_", self.charges),
            ("re_", self.refunds),
            ("du_", self.disputes),
            ("dp_", self.disputes),
            ("in_", self.invoices),
            ("sub_", self.subscriptions),
            ("price_", self.prices),
            ("prod_", self.products),
            ("cus_", self.customers),
            ("seti_", self.setup_intents),
            ("pm_", self.payment_methods),
        ):
            if object_id.startswith(prefix):
                return table.get(object_id)
        return None

    def _expand(self, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        for path in paths:
            self._expand_path(obj, path.split("."))
        return obj

    def _expand_path(self, obj: Any, parts: list[str]) -> None:
        if not parts or not isinstance(obj, dict):
            return
        value = obj.get(parts[0])
        if isinstance(value, str) and (found := self._lookup(value)) is not None:
            value = obj[parts[0]] = copy.deepcopy(found)
        if isinstance(value, dict) and value.get("object") == "list":
            for item in value.get("data", []):
                self._expand_path(item, parts[1:])
        else:
            self._expand_path(value, parts[1:])

    @staticmethod
    def _new_id(prefix: str) -> str:
        return prefix + secrets.token_hex(12)

    @staticmethod
    def _missing(object_id: str, param: str = "id") -> StripeFakeError:
        return StripeFakeError(
            404,
            "invalid_request_error",
            f"No such object: '{object_id}'",
            code="resource_missing",
            param=param,
        )

    @staticmethod
    def _int(params: dict[str, Any], key: str, where: str | None = None) -> int:
        try:
            return int(params[key])
        except (KeyError, TypeError, ValueError):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f"Missing or invalid integer: {where or key}",
                code="parameter_missing",
                param=where or key,
            ) from None

    # ================================================================ sessions
    def _create_session(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("mode") == "subscription":
            return self.create_subscription_session(p)
        if p.get("mode") == "setup":
            return self._create_setup_session(p)
        if p.get("mode") != "payment":
            raise StripeFakeError(
                400, "invalid_request_error", "mode must be payment", param="mode"
            )
        items = p.get("line_items")
        if not isinstance(items, list) or not items:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "line_items is required",
                code="parameter_missing",
                param="line_items",
            )
        currencies, total, stored_items = set(), 0, []
        for i, item in enumerate(items):
            pd = item.get("price_data") or {}
            where = f"line_items[{i}][price_data][unit_amount]"
            unit = self._int(pd, "unit_amount", where)
            qty = self._int(item, "quantity", f"line_items[{i}][quantity]")
            cur = str(pd.get("currency", "")).lower()
            if not re.fullmatch(r"[a-z]{3}", cur):
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    "Invalid currency",
                    param=f"line_items[{i}][price_data][currency]",
                )
            if cur in THREE_DECIMAL and unit % 10:
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    "Three-decimal amounts must end in 0.",
                    param=where,
                )
            name = (pd.get("product_data") or {}).get("name")
            if not name:
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    "product_data.name missing",
                    param=f"line_items[{i}][price_data][product_data][name]",
                )
            currencies.add(cur)
            total += unit * qty
            stored_items.append({"name": name, "unit_amount": unit, "quantity": qty})
        if len(currencies) != 1:
            raise StripeFakeError(400, "invalid_request_error", "Mixed currencies")
        if not p.get("success_url"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "success_url is required",
                code="parameter_missing",
                param="success_url",
            )
        now = int(time.time())
        expires_at = int(p["expires_at"]) if p.get("expires_at") else now + 86400
        if not now + 1800 <= expires_at <= now + 86400:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "expires_at must be between 30 minutes and 24 hours away",
                param="expires_at",
            )
        customer = p.get("customer")
        if customer is not None and p.get("customer_email"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "You may only specify one of these parameters: customer, customer_email.",
                param="customer_email",
            )
        if customer is not None and customer not in self.customers:
            raise self._missing(customer, "customer")
        sfu = (p.get("payment_intent_data") or {}).get("setup_future_usage")
        if sfu is not None and sfu not in ("off_session", "on_session"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "Invalid setup_future_usage",
                param="payment_intent_data[setup_future_usage]",
            )
        sid = self._new_id("cs_test_")
        session = {
            "id": sid,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "currency": currencies.pop(),
            "cancel_url": p.get("cancel_url"),
            "success_url": p["success_url"],
            "client_reference_id": p.get("client_reference_id"),
            "client_secret": None,
            "created": now,
            "expires_at": expires_at,
            "customer": customer,
            "customer_email": p.get("customer_email"),
            "customer_details": None,
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "ui_mode": "hosted",
            "url": f"{self.base_url}/pay/{sid}",
        }
        self.sessions[sid] = session
        self._extra[sid] = {
            "line_items": stored_items,
            "payment_intent_data": p.get("payment_intent_data") or {},
        }
        return session

    def _get_session(self, p: dict[str, Any], sid: str) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session is None:
            raise self._missing(sid, "session")
        return session

    def _list_sessions(self, p: dict[str, Any]) -> dict[str, Any]:
        data = list(reversed(self.sessions.values()))
        if p.get("payment_intent"):
            data = [s for s in data if s.get("payment_intent") == p["payment_intent"]]
        return {
            "object": "list",
            "data": data[: int(p.get("limit", 10))],
            "has_more": len(data) > int(p.get("limit", 10)),
            "url": "/v1/checkout/sessions",
        }

    def _expire(self, p: dict[str, Any], sid: str) -> dict[str, Any]:
        session = self._get_session(p, sid)
        if session["status"] != "open":
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f'Only Checkout Sessions with a status in ["open"] can be '
                f'expired. This session has status "{session["status"]}".',
            )
        session["status"] = "expired"
        self.emit("checkout.session.expired", session)
        return session

    # ================================================================ intents, charges
    def _get_pi(self, p: dict[str, Any], pid: str) -> dict[str, Any]:
        if pid not in self.payment_intents:
            raise self._missing(pid, "intent")
        return self.payment_intents[pid]

    def _get_charge(self, p: dict[str, Any], cid: str) -> dict[str, Any]:
        if cid not in self.charges:
            raise self._missing(cid, "charge")
        return self.charges[cid]

    def _capture(self, p: dict[str, Any], pid: str) -> dict[str, Any]:
        pi = self._get_pi(p, pid)
        if pi["status"] != "requires_capture":
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "This PaymentIntent could not be captured because it has a "
                f"status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        amount = int(p.get("amount_to_capture") or pi["amount"])
        if amount > pi["amount_capturable"]:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "amount_to_capture too large",
                param="amount_to_capture",
            )
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        charge = self.charges[pi["latest_charge"]]
        charge.update(captured=True, amount_captured=amount)
        self.emit("charge.captured", charge)
        self.emit("payment_intent.succeeded", pi)
        return pi

    def _cancel_pi(self, p: dict[str, Any], pid: str) -> dict[str, Any]:
        """POST /v1/payment_intents/{id}/cancel: only an intent not yet succeeded; an
        uncaptured charge is released with it."""
        pi = self._get_pi(p, pid)
        if pi["status"] in ("succeeded", "canceled"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        reason = p.get("cancellation_reason") or "requested_by_customer"
        pi.update(
            status="canceled",
            cancellation_reason=reason,
            canceled_at=int(time.time()),
            amount_capturable=0,
        )
        if pi.get("latest_charge"):
            self.charges[pi["latest_charge"]].update(refunded=True, amount_refunded=pi["amount"])
        self.emit("payment_intent.canceled", pi)
        return pi

    def lapse_authorization(self, pid: str) -> None:
        """An uncaptured authorization's hold ran out (7 days for cards): Stripe expires
        the charge and cancels the intent automatically."""
        with self.lock:
            pi = self.payment_intents[pid]
            charge = self.charges[pi["latest_charge"]]
            charge.update(status="failed", refunded=True, amount_refunded=charge["amount"])
            self.emit("charge.expired", charge)
        self._cancel_pi({"cancellation_reason": "automatic"}, pid)

    def _new_pi(self, session: dict[str, Any]) -> dict[str, Any]:
        pid = self._new_id("pi_")
        pid_data = self._extra[session["id"]]["payment_intent_data"]
        pi = {
            "id": pid,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": pid_data.get("capture_method", "automatic_async"),
            "client_secret": f"{pid}_secret_{secrets.token_hex(12)}",
            "created": int(time.time()),
            "currency": session["currency"],
            "description": pid_data.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(pid_data.get("metadata") or {}),
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        self.payment_intents[pid] = pi
        session["payment_intent"] = pid
        return pi

    def _new_charge(
        self,
        pi: dict[str, Any],
        brand: str,
        last4: str,
        captured: bool,
        wallet: str | None = None,
    ) -> dict[str, Any]:
        cid = self._new_id("ch_")
        charge = {
            "id": cid,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if captured else 0,
            "amount_refunded": 0,
            "captured": captured,
            "created": int(time.time()),
            "currency": pi["currency"],
            "disputed": False,
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "paid": True,
            "payment_intent": pi["id"],
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": brand,
                    "last4": last4,
                    "exp_month": 12,
                    "exp_year": 2034,
                    "fingerprint": "fp_" + secrets.token_hex(6),
                    "funding": "credit",
                    "capture_before": int(time.time()) + 7 * 86400 if not captured else None,
                    # Stripe's card.wallet: set when a wallet (Apple Pay, Google Pay, Link)
                    # presented the card.
                    "wallet": {"type": wallet, wallet: {}, "dynamic_last4": last4}
                    if wallet
                    else None,
                },
            },
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/charges/{cid}/refunds",
            },
            "status": "succeeded",
        }
        self.charges[cid] = charge
        pi["latest_charge"] = cid
        return charge

    # ================================================================ saved methods
    def _create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        cid = self._new_id("cus_")
        customer = {
            "id": cid,
            "object": "customer",
            "email": p.get("email"),
            "name": p.get("name"),
            "metadata": dict(p.get("metadata") or {}),
            "created": int(time.time()),
            "livemode": False,
        }
        self.customers[cid] = customer
        return customer

    def _new_pm(self, brand: str, last4: str) -> dict[str, Any]:
        pm = {
            "id": self._new_id("pm_"),
            "object": "payment_method",
            "type": "card",
            "card": {
                "brand": brand,
                "last4": last4,
                "exp_month": 12,
                "exp_year": 2034,
                "wallet": None,
            },
            "customer": None,
            "created": int(time.time()),
            "livemode": False,
        }
        self.payment_methods[pm["id"]] = pm
        return pm

    def _get_pm(self, p: dict[str, Any], pm_id: str) -> dict[str, Any]:
        pm = self.payment_methods.get(pm_id)
        if pm is None:
            raise self._missing(pm_id, "payment_method")
        return pm

    def _detach_pm(self, p: dict[str, Any], pm_id: str) -> dict[str, Any]:
        pm = self._get_pm(p, pm_id)
        if pm["customer"] is None:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "The payment method you provided is not attached to a customer.",
                code="payment_method_unexpected_state",
            )
        pm["customer"] = None
        return pm

    def _create_pi(self, p: dict[str, Any]) -> dict[str, Any]:
        """An off-session PaymentIntent (customer, payment_method, off_session, confirm):
        card 3184 needs authentication, 0341 declines, others succeed."""
        amount = self._int(p, "amount")
        currency = str(p.get("currency", "")).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeFakeError(
                400, "invalid_request_error", "Invalid currency", param="currency"
            )
        for name in ("customer", "payment_method"):
            if not p.get(name):
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {name}.",
                    code="parameter_missing",
                    param=name,
                )
        pm = self._get_pm(p, p["payment_method"])
        if pm["customer"] != p["customer"]:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "The provided PaymentMethod does not belong to the customer.",
                param="payment_method",
            )
        pid = self._new_id("pi_")
        pi = {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic_async",
            "client_secret": f"{pid}_secret_{secrets.token_hex(12)}",
            "created": int(time.time()),
            "currency": currency,
            "customer": p["customer"],
            "description": p.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "payment_method": pm["id"],
            "payment_method_types": ["card"],
            "status": "requires_confirmation",
        }
        self.payment_intents[pid] = pi
        if p.get("confirm") != "true":
            return pi
        last4 = pm["card"]["last4"]
        if last4 == "3184" and p.get("off_session") == "true":
            pi["status"] = "requires_action"
            # Stripe.js would handle this one; Kassa confirms again with a return_url.
            pi["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            pi["last_payment_error"] = {
                "type": "card_error",
                "code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
            }
            error = StripeFakeError(
                402,
                "card_error",
                pi["last_payment_error"]["message"],
                code="authentication_required",
            )
            error.body["error"]["payment_intent"] = copy.deepcopy(pi)
            raise error
        if last4 == "0341":
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            }
            self.emit("payment_intent.payment_failed", pi)
            raise StripeFakeError(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="generic_decline",
            )
        charge = self._new_charge(pi, pm["card"]["brand"], last4, captured=True)
        pi.update(status="succeeded", amount_received=amount)
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", pi)
        return pi

    def _confirm_pi(self, p: dict[str, Any], pid: str) -> dict[str, Any]:
        """POST /v1/payment_intents/{id}/confirm, on-session (the customer is back): a card
        that wants 3D Secure (3184) answers requires_action with next_action
        redirect_to_url, the bank's page (/3ds/<pi>), which then sends the customer to
        return_url. Confirming needs a return_url for that; off_session skips it."""
        pi = self._get_pi(p, pid)
        if pi["status"] not in (
            "requires_payment_method",
            "requires_confirmation",
            "requires_action",
        ):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        pm = self._get_pm(p, p.get("payment_method") or pi.get("payment_method") or "")
        if pi.get("customer") and pm["customer"] != pi["customer"]:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "The provided PaymentMethod does not belong to the customer.",
                param="payment_method",
            )
        pi["payment_method"] = pm["id"]
        last4 = pm["card"]["last4"]
        if last4 == "3184" and p.get("off_session") != "true":
            if not p.get("return_url"):
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    "A return_url must be specified to confirm this PaymentIntent, because "
                    "its payment method may require a full page redirect.",
                    param="return_url",
                )
            pi.update(
                status="requires_action",
                last_payment_error=None,
                next_action={
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"{self.base_url}/3ds/{pid}",
                        "return_url": p["return_url"],
                    },
                },
            )
            return pi
        return self._settle_pi(pi, pm, succeeded=last4 != "0341")

    def _settle_pi(
        self,
        pi: dict[str, Any],
        pm: dict[str, Any],
        *,
        succeeded: bool,
        code: str = "card_declined",
    ) -> dict[str, Any]:
        pi["next_action"] = None
        if not succeeded:
            message = (
                "The provided PaymentMethod has failed authentication. You can provide "
                "payment_method_data or a new PaymentMethod to attempt to fulfill this "
                "PaymentIntent again."
                if code == "payment_intent_authentication_failure"
                else "Your card was declined."
            )
            pi.update(
                status="requires_payment_method",
                last_payment_error={
                    "type": "invalid_request_error"
                    if code == "payment_intent_authentication_failure"
                    else "card_error",
                    "code": code,
                    "message": message,
                    "payment_method": copy.deepcopy(pm),
                },
            )
            self.emit("payment_intent.payment_failed", pi)
            return pi
        charge = self._new_charge(pi, pm["card"]["brand"], pm["card"]["last4"], captured=True)
        pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", pi)
        return pi

    def authenticate(self, pid: str, passed: bool = True) -> str:
        """Act as the customer on the bank's 3D Secure page; returns where the bank sends
        them (the return_url, with payment_intent and its client secret, as Stripe does)."""
        with self.lock:
            pi = self.payment_intents[pid]
            action = pi.get("next_action") or {}
            if pi["status"] != "requires_action" or action.get("type") != "redirect_to_url":
                raise ValueError(f"payment intent {pid} is {pi['status']}, not waiting for 3DS")
            return_url = action["redirect_to_url"]["return_url"]
            pm = self.payment_methods[pi["payment_method"]]
            self._settle_pi(pi, pm, succeeded=passed, code="payment_intent_authentication_failure")
            sep = "&" if "?" in return_url else "?"
            status = "succeeded" if passed else "failed"
            return (
                f"{return_url}{sep}payment_intent={pid}"
                f"&payment_intent_client_secret={pi['client_secret']}&redirect_status={status}"
            )

    def _challenge(self, request: Request) -> Response:
        """The bank's 3D Secure page: Complete or Fail authentication."""
        parts = request.path.strip("/").split("/")
        pid = parts[1] if len(parts) > 1 else ""
        pi = self.payment_intents.get(pid)
        if pi is None:
            return Response("No such payment", status=404)
        if request.method == "POST" and parts[2:] == ["complete"]:
            try:
                url = self.authenticate(pid, request.form.get("outcome") == "pass")
            except ValueError as exc:
                return Response(str(exc), status=400)
            return Response(status=303, headers={"Location": url})
        esc = html.escape
        if pi["status"] != "requires_action":
            body = f"<p id='status'>This payment is {esc(pi['status'])}.</p>"
        else:
            body = (
                f"<form method='post' action='/3ds/{esc(pid)}/complete'>"
                "<input type='hidden' name='outcome' value='pass'>"
                "<button type='submit' id='complete'>Complete authentication</button></form>"
                f"<form method='post' action='/3ds/{esc(pid)}/complete'>"
                "<input type='hidden' name='outcome' value='fail'>"
                "<button type='submit' id='fail'>Fail authentication</button></form>"
            )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>3D Secure test page"
            f"</title></head><body><h1>3D Secure 2 test page</h1><p>Payment {esc(pid)}: "
            f"{pi['amount']} {esc(pi['currency'].upper())}</p>{body}</body></html>"
        )
        return Response(page, mimetype="text/html")

    # ================================================================ setup mode
    def _create_setup_session(self, p: dict[str, Any]) -> dict[str, Any]:
        """mode=setup: saves a method without a payment. Dynamic payment methods need a
        currency (or payment_method_types); the customer, when given, must exist."""
        if not p.get("currency") and not p.get("payment_method_types"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "You must provide currency or payment_method_types in setup mode.",
                param="currency",
            )
        if p.get("line_items"):
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "line_items is not supported in setup mode.",
                param="line_items",
            )
        for name in ("success_url",):
            if not p.get(name):
                raise StripeFakeError(
                    400,
                    "invalid_request_error",
                    f"{name} is required",
                    code="parameter_missing",
                    param=name,
                )
        customer = p.get("customer")
        if customer is not None and customer not in self.customers:
            raise self._missing(customer, "customer")
        now = int(time.time())
        sid = self._new_id("cs_test_")
        si_id = self._new_id("seti_")
        si_data = p.get("setup_intent_data") or {}
        self.setup_intents[si_id] = {
            "id": si_id,
            "object": "setup_intent",
            "client_secret": f"{si_id}_secret_{secrets.token_hex(12)}",
            "created": now,
            "customer": customer,
            "livemode": False,
            "metadata": dict(si_data.get("metadata") or {}),
            "payment_method": None,
            "status": "requires_payment_method",
            "usage": "off_session",
        }
        session = {
            "id": sid,
            "object": "checkout.session",
            "amount_subtotal": None,
            "amount_total": None,
            "currency": (p.get("currency") or "").lower() or None,
            "cancel_url": p.get("cancel_url"),
            "success_url": p["success_url"],
            "client_reference_id": p.get("client_reference_id"),
            "created": now,
            "expires_at": now + 86400,
            "customer": customer,
            "customer_email": p.get("customer_email"),
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "mode": "setup",
            "payment_intent": None,
            "payment_status": "no_payment_required",
            "setup_intent": si_id,
            "status": "open",
            "url": f"{self.base_url}/pay/{sid}",
        }
        self.sessions[sid] = session
        self._extra[sid] = {"line_items": [], "payment_intent_data": {}}
        return session

    def _get_si(self, p: dict[str, Any], si_id: str) -> dict[str, Any]:
        si = self.setup_intents.get(si_id)
        if si is None:
            raise self._missing(si_id, "intent")
        return si

    def complete_setup(
        self, sid: str, *, brand: str = "visa", last4: str = "4242", emit: bool = True
    ) -> dict[str, Any]:
        """Act as the customer on a setup session's page: the card is saved on the
        session's customer and checkout.session.completed is sent."""
        with self.lock:
            session = self.sessions[sid]
            if session["mode"] != "setup" or session["status"] != "open":
                raise ValueError(f"session {sid} is not an open setup session")
            pm = self._new_pm(brand, last4)
            pm["customer"] = session["customer"]
            si = self.setup_intents[session["setup_intent"]]
            si.update(status="succeeded", payment_method=pm["id"])
            session.update(status="complete")
            if emit:
                self.emit("setup_intent.succeeded", si)
                self.emit("checkout.session.completed", session)
            return copy.deepcopy(session)

    # ================================================================ customer actions
    def complete_session(
        self,
        sid: str,
        outcome: str = "paid",
        *,
        brand: str = "visa",
        last4: str = "4242",
        emit: bool = True,
        wallet: str | None = None,
    ) -> dict[str, Any]:
        """Act as the customer on the hosted page (`wallet`: apple_pay, google_pay, link).

        outcome: "paid" (card; authorized only when the session asked for manual capture),
        "unpaid" (an async method such as a bank debit, still processing), "failed" (a
        declined card: the session stays open and the customer may retry).
        """
        with self.lock:
            session = self.sessions[sid]
            if session["status"] != "open":
                raise ValueError(f"session {sid} is {session['status']}")
            pi = self.payment_intents.get(session["payment_intent"] or "") or self._new_pi(session)
            session["customer_details"] = {
                "email": session.get("customer_email"),
                "name": "Test Customer",
            }
            events: list[tuple[str, dict[str, Any]]] = []
            if outcome == "failed":
                pi["status"] = "requires_payment_method"
                pi["last_payment_error"] = {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                }
                events.append(("payment_intent.payment_failed", pi))
            elif outcome == "unpaid":
                pi["status"] = "processing"
                session.update(status="complete", payment_status="unpaid")
                events.append(("checkout.session.completed", session))
            elif outcome == "paid":
                manual = pi["capture_method"] == "manual"
                charge = self._new_charge(pi, brand, last4, captured=not manual, wallet=wallet)
                pm = self._new_pm(brand, last4)
                pi["payment_method"] = pm["id"]
                pid_data = self._extra[sid]["payment_intent_data"]
                if pid_data.get("setup_future_usage") and session.get("customer"):
                    # Saved for later: attached to the session's customer.
                    pm["customer"] = session["customer"]
                    pi["customer"] = session["customer"]
                    pi["setup_future_usage"] = pid_data["setup_future_usage"]
                pi["last_payment_error"] = None
                if manual:
                    pi.update(status="requires_capture", amount_capturable=pi["amount"])
                    events += [
                        ("charge.succeeded", charge),
                        ("payment_intent.amount_capturable_updated", pi),
                    ]
                else:
                    pi.update(status="succeeded", amount_received=pi["amount"])
                    events += [("charge.succeeded", charge), ("payment_intent.succeeded", pi)]
                session.update(status="complete", payment_status="paid")
                events.append(("checkout.session.completed", session))
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
            if emit:
                for kind, obj in events:
                    self.emit(kind, obj)
            return copy.deepcopy(session)

    def async_result(self, sid: str, succeeded: bool, *, emit: bool = True) -> dict[str, Any]:
        """The delayed outcome of an async method for a session completed 'unpaid'."""
        with self.lock:
            session = self.sessions[sid]
            pi = self.payment_intents[session["payment_intent"]]
            if succeeded:
                charge = self._new_charge(pi, "sepa_debit", "3000", captured=True)
                charge["payment_method_details"] = {
                    "type": "sepa_debit",
                    "sepa_debit": {"last4": "3000"},
                }
                pi.update(status="succeeded", amount_received=pi["amount"])
                session["payment_status"] = "paid"
                kind = "checkout.session.async_payment_succeeded"
            else:
                pi.update(
                    status="requires_payment_method",
                    last_payment_error={
                        "type": "invalid_request_error",
                        "code": "payment_method_provider_decline",
                        "message": "The bank declined the debit.",
                    },
                )
                kind = "checkout.session.async_payment_failed"
            if emit:
                self.emit(kind, session)
            return copy.deepcopy(session)

    def expire_session(self, sid: str) -> None:
        """Stripe expiring a session on its own (expires_at reached)."""
        with self.lock:
            self._expire({}, sid)

    # ================================================================ refunds
    def _create_refund(self, p: dict[str, Any], *, dashboard: bool = False) -> dict[str, Any]:
        pi_id = p.get("payment_intent")
        if pi_id:
            pi = self.payment_intents.get(pi_id)
            if pi is None:
                raise self._missing(pi_id, "payment_intent")
            charge = self.charges.get(pi.get("latest_charge") or "")
        else:
            charge = self.charges.get(p.get("charge") or "")
            if charge is None:
                raise self._missing(str(p.get("charge")), "charge")
        if charge is None or not charge["captured"]:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                "This PaymentIntent does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        amount = int(p["amount"]) if p.get("amount") not in (None, "") else remaining
        if remaining <= 0:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount <= 0 or amount > remaining:
            raise StripeFakeError(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount "
                f"on charge ({remaining})",
                param="amount",
            )
        if charge["currency"] in THREE_DECIMAL and amount % 10:
            raise StripeFakeError(
                400, "invalid_request_error", "Three-decimal amounts must end in 0.", param="amount"
            )
        reason = p.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeFakeError(400, "invalid_request_error", "Invalid reason", param="reason")
        rid = self._new_id("re_")
        refund = {
            "id": rid,
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": dict(p.get("metadata") or {}),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": self.refund_status,
        }
        self.refunds[rid] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] += 1
        self.emit("refund.created", refund)
        self._emit_charge_refunded(charge)
        return refund

    def _emit_charge_refunded(self, charge: dict[str, Any]) -> None:
        obj = copy.deepcopy(charge)
        if not self.charge_refunds_in_events:
            obj.pop("refunds", None)
        self.emit("charge.refunded", obj)

    def dashboard_refund(
        self, payment_intent: str, amount: int | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        """A refund made by hand in Stripe's dashboard: no metadata of ours."""
        with self.lock:
            params: dict[str, Any] = {"payment_intent": payment_intent}
            if amount is not None:
                params["amount"] = str(amount)
            if reason:
                params["reason"] = reason
            return copy.deepcopy(self._create_refund(params, dashboard=True))

    def set_refund_status(
        self, rid: str, status: str, failure_reason: str | None = None
    ) -> dict[str, Any]:
        """A pending refund settling (refund.updated) or failing (refund.failed)."""
        with self.lock:
            refund = self.refunds[rid]
            refund["status"] = status
            charge = self.charges[refund["charge"]]
            if status == "failed":
                refund["failure_reason"] = failure_reason or "expired_or_canceled_card"
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
            for item in charge["refunds"]["data"]:
                if item["id"] == rid:
                    item.update(refund)
            self.emit("refund.updated", refund)
            if status == "failed":
                self.emit("refund.failed", refund)
            return copy.deepcopy(refund)

    def _get_refund(self, p: dict[str, Any], rid: str) -> dict[str, Any]:
        if rid not in self.refunds:
            raise self._missing(rid, "refund")
        return self.refunds[rid]

    def _list_refunds(self, p: dict[str, Any]) -> dict[str, Any]:
        data = sorted(self.refunds.values(), key=lambda r: r["created"], reverse=True)
        for key in ("payment_intent", "charge"):
            if p.get(key):
                data = [r for r in data if r.get(key) == p[key]]
        limit = int(p.get("limit", 10))
        return {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "url": "/v1/refunds",
        }

    # ================================================================ disputes
    def create_dispute(
        self,
        payment_intent: str,
        *,
        status: str = "needs_response",
        reason: str = "fraudulent",
        amount: int | None = None,
        due_in_days: int = 7,
    ) -> dict[str, Any]:
        with self.lock:
            pi = self.payment_intents[payment_intent]
            charge = self.charges[pi["latest_charge"]]
            did = self._new_id("du_")
            dispute = {
                "id": did,
                "object": "dispute",
                "amount": amount or charge["amount"],
                "charge": charge["id"],
                "created": int(time.time()),
                "currency": charge["currency"],
                "evidence_details": {
                    "due_by": int(time.time()) + due_in_days * 86400,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "livemode": False,
                "metadata": {},
                "payment_intent": payment_intent,
                "reason": reason,
                "status": status,
            }
            self.disputes[did] = dispute
            charge["disputed"] = True
            self.emit("charge.dispute.created", dispute)
            return copy.deepcopy(dispute)

    def update_dispute(self, did: str, status: str) -> dict[str, Any]:
        with self.lock:
            dispute = self.disputes[did]
            dispute["status"] = status
            closed = status in ("won", "lost", "warning_closed")
            self.emit("charge.dispute.closed" if closed else "charge.dispute.updated", dispute)
            return copy.deepcopy(dispute)

    def _get_dispute(self, p: dict[str, Any], did: str) -> dict[str, Any]:
        if did not in self.disputes:
            raise self._missing(did, "dispute")
        return self.disputes[did]

    # ================================================================ events
    def emit(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Record an event (and deliver it, signed, when a webhook URL is set)."""
        with self.lock:
            event = make_event(event_type, copy.deepcopy(obj))
            event["_seq"] = len(self.events)  # insertion order: lists stay well defined
            self.events.append(event)
        if self.webhook_url and self.webhook_secret:
            with self._pending_cv:
                self._pending += 1
            self._outbox.put(event)
        return event

    @staticmethod
    def _public(event: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in event.items() if not k.startswith("_")}

    def _list_events(self, p: dict[str, Any]) -> dict[str, Any]:
        data = [e for e in reversed(self.events)]
        created = p.get("created")
        if isinstance(created, dict):
            for op, fn in (
                ("gte", lambda a, b: a >= b),
                ("gt", lambda a, b: a > b),
                ("lte", lambda a, b: a <= b),
                ("lt", lambda a, b: a < b),
            ):
                if op in created:
                    data = [e for e in data if fn(e["created"], int(created[op]))]
        elif created not in (None, ""):
            data = [e for e in data if e["created"] == int(created)]
        types = p.get("types") or ([p["type"]] if p.get("type") else [])
        if types:

            def wanted(kind: str) -> bool:
                return any(
                    kind == t or (t.endswith(".*") and kind.startswith(t[:-1])) for t in types
                )

            data = [e for e in data if wanted(e["type"])]
        if p.get("starting_after"):
            ids = [e["id"] for e in data]
            if p["starting_after"] in ids:
                data = data[ids.index(p["starting_after"]) + 1 :]
        limit = min(int(p.get("limit", 10)), 100)
        return {
            "object": "list",
            "data": [self._public(e) for e in data[:limit]],
            "has_more": len(data) > limit,
            "url": "/v1/events",
        }

    def _get_event(self, p: dict[str, Any], eid: str) -> dict[str, Any]:
        for event in self.events:
            if event["id"] == eid:
                return self._public(event)
        raise self._missing(eid)

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        return [self._public(e) for e in self.events if e["type"] == event_type]

    # ================================================================ webhooks out
    def _deliver_loop(self) -> None:
        with requests.Session() as http:
            while True:
                event = self._outbox.get()
                if event is None:
                    return
                try:
                    self._deliver(http, self._public(event))
                finally:
                    with self._pending_cv:
                        self._pending -= 1
                        self._pending_cv.notify_all()

    def _deliver(self, http: requests.Session, event: dict[str, Any]) -> None:
        body = json.dumps(event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(body, str(self.webhook_secret)),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            response = http.post(
                str(self.webhook_url), data=body.encode(), headers=headers, timeout=10
            )
            self.deliveries.append(Delivery(event["id"], event["type"], response.status_code))
        except requests.RequestException as exc:
            self.deliveries.append(Delivery(event["id"], event["type"], None, str(exc)))

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Block until every emitted event has been posted (or the timeout passes)."""
        with self._pending_cv:
            return self._pending_cv.wait_for(lambda: self._pending == 0, timeout=timeout)

    # ================================================================ test controls
    def queue_error(
        self,
        status: int,
        type_: str = "api_error",
        *,
        code: str | None = None,
        message: str | None = None,
        decline_code: str | None = None,
        param: str | None = None,
        should_retry: bool | None = None,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` matching API calls with this Stripe-shaped error."""
        body: dict[str, Any] = {
            "error": {"type": type_, "message": message or f"Injected {status} error"}
        }
        for key, value in (("code", code), ("decline_code", decline_code), ("param", param)):
            if value is not None:
                body["error"][key] = value
        with self.lock:
            for _ in range(times):
                self._errors.append(
                    CannedError(status, copy.deepcopy(body), should_retry, method, path)
                )

    def clear_errors(self) -> None:
        with self.lock:
            self._errors.clear()

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded API calls, optionally filtered by method and path (exact or prefix*)."""

        def ok(r: RecordedRequest) -> bool:
            if method and r.method != method:
                return False
            if path is None:
                return True
            return r.path.startswith(path[:-1]) if path.endswith("*") else r.path == path

        with self.lock:
            return [r for r in self.requests if ok(r)]

    def line_items(self, sid: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self._extra[sid]["line_items"])

    def _control(self, request: Request) -> Response:
        """HTTP versions of the controls, for a fake run as a separate dev server."""
        data = request.get_json(silent=True) or request.form.to_dict()
        parts = request.path.strip("/").split("/")[1:]
        try:
            if parts[:1] == ["sessions"] and parts[2:] == ["complete"]:
                result: Any = self.complete_session(parts[1], data.get("outcome", "paid"))
            elif parts[:1] == ["sessions"] and parts[2:] == ["async"]:
                result = self.async_result(parts[1], data.get("succeeded", True) is True)
            elif parts[:1] == ["sessions"] and parts[2:] == ["expire"]:
                self.expire_session(parts[1])
                result = self.sessions[parts[1]]
            elif parts == ["errors"]:
                self.queue_error(
                    int(data["status"]),
                    data.get("type", "api_error"),
                    code=data.get("code"),
                    message=data.get("message"),
                    decline_code=data.get("decline_code"),
                    should_retry=data.get("should_retry"),
                    times=int(data.get("times", 1)),
                    path=data.get("path"),
                )
                result = {"queued": True}
            elif parts == ["latency"]:
                self.latency_ms = int(data.get("ms", 0))
                result = {"latency_ms": self.latency_ms}
            elif parts == ["requests"]:
                result = [
                    {
                        "method": r.method,
                        "path": r.path,
                        "form": r.form,
                        "query": r.query,
                        "status": r.status,
                        "idempotency_key": r.idempotency_key,
                    }
                    for r in self.requests
                ]
            elif parts[:1] == ["refunds"] and parts[2:] == ["status"]:
                result = self.set_refund_status(parts[1], data["status"])
            elif parts == ["dashboard_refund"]:
                result = self.dashboard_refund(
                    data["payment_intent"], int(data["amount"]) if data.get("amount") else None
                )
            elif parts == ["disputes"]:
                result = self.create_dispute(
                    data["payment_intent"], status=data.get("status", "needs_response")
                )
            elif parts[:1] == ["disputes"] and len(parts) == 2:
                result = self.update_dispute(parts[1], data["status"])
            else:
                return Response("unknown control", status=404)
        except (KeyError, ValueError) as exc:
            return Response(
                json.dumps({"error": str(exc)}), status=400, mimetype="application/json"
            )
        return Response(json.dumps(result, default=str), mimetype="application/json")

    # ================================================================ hosted page
    def _hosted(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        sid = parts[1] if len(parts) > 1 else ""
        session = self.sessions.get(sid)
        if session is None:
            return Response("No such checkout session", status=404)
        if session.get("mode") == "setup":
            return self._hosted_setup(request, session, parts)
        if request.method == "POST" and parts[2:] == ["complete"]:
            outcome = request.form.get("outcome", "paid")
            if session["status"] == "open":
                self.complete_session(sid, outcome)
            if outcome == "failed":
                return Response(status=303, headers={"Location": f"/pay/{sid}?declined=1"})
            url = session["success_url"].replace("{CHECKOUT_SESSION_ID}", sid)
            return Response(status=303, headers={"Location": url})
        esc = html.escape
        rows = "".join(
            f"<li>{esc(i['name'])} × {i['quantity']}: {i['unit_amount']}</li>"
            for i in self._extra[sid]["line_items"]
        )
        notice = (
            "<p role='alert' class='declined'>Your card was declined.</p>"
            if request.args.get("declined")
            else ""
        )
        if session["status"] != "open":
            body = f"<p id='status'>This checkout session is {esc(session['status'])}.</p>"
        else:
            body = (
                f"{notice}<form method='post' action='/pay/{sid}/complete'>"
                "<input type='hidden' name='outcome' value='paid'>"
                "<button type='submit' id='pay'>Pay</button></form>"
                f"<form method='post' action='/pay/{sid}/complete'>"
                "<input type='hidden' name='outcome' value='failed'>"
                "<button type='submit' id='decline'>Pay with a declined card</button></form>"
                f"<a id='cancel' href='{esc(session.get('cancel_url') or '')}'>Cancel</a>"
            )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Fake Stripe Checkout"
            f"</title></head><body><h1>Fake Stripe Checkout</h1><p>Session {esc(sid)}</p>"
            f"<p>Email: {esc(session.get('customer_email') or '')}</p><ul>{rows}</ul>"
            f"<p id='total'>Total: {session['amount_total']} "
            f"{esc(session['currency'].upper())}</p>{body}</body></html>"
        )
        return Response(page, mimetype="text/html")

    def _hosted_setup(
        self, request: Request, session: dict[str, Any], parts: list[str]
    ) -> Response:
        sid = session["id"]
        if request.method == "POST" and parts[2:] == ["complete"]:
            if session["status"] == "open":
                self.complete_setup(sid, last4=request.form.get("last4", "4242"))
            url = session["success_url"].replace("{CHECKOUT_SESSION_ID}", sid)
            return Response(status=303, headers={"Location": url})
        esc = html.escape
        if session["status"] != "open":
            body = f"<p id='status'>This checkout session is {esc(session['status'])}.</p>"
        else:
            body = (
                f"<form method='post' action='/pay/{sid}/complete'>"
                "<button type='submit' id='save'>Save card</button></form>"
                f"<a id='cancel' href='{esc(session.get('cancel_url') or '')}'>Cancel</a>"
            )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Fake Stripe Checkout"
            f"</title></head><body><h1>Save a card</h1><p>Session {esc(sid)}</p>{body}"
            "</body></html>"
        )
        return Response(page, mimetype="text/html")


def serve_fake_stripe(
    port: int,
    latency_ms: int = 0,
    *,
    host: str = "127.0.0.1",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    block: bool = True,
) -> FakeStripe:
    """Start the fake on host:port; block (dev server) or return it running (benchmarks)."""
    fake = FakeStripe(
        latency_ms=latency_ms, webhook_url=webhook_url, webhook_secret=webhook_secret
    ).serve(host, port)
    if block:
        print(
            f"fake Stripe API on {fake.base_url} (latency {latency_ms} ms); "
            f"set STRIPE_API_BASE={fake.base_url}",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            fake.shutdown()
    return fake


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Stripe API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args(argv)
    serve_fake_stripe(
        args.port,
        args.latency_ms,
        host=args.host,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )


if __name__ == "__main__":
    main()
