"""A fake PayPal REST API on a loopback port, for exercising the adapter over real HTTP.

Stateful, in PayPal's shapes (Orders v2, Payments v2, Payment Method Tokens v3,
Notifications v1, Disputes v1, and its error object): OAuth2 client-credentials tokens (expiring, revocable), orders that
must be approved before capture or authorize, captures, authorizations (capture, void),
refunds (partial and several, bounded by the capture), disputes, the webhook-events list,
and verify-webhook-signature. The vault: an order created with
`payment_source.paypal.attributes.vault` (store_in_vault ON_SUCCESS) saves the wallet when it
is captured (a payment token, `attributes.vault` VAULTED with PayPal's customer id, and
VAULT.PAYMENT-TOKEN.CREATED), or later (`vault_on_capture = False`, then `finish_vaulting`);
an order created with `payment_source.paypal.vault_id` is captured at once, or waits for
the payer (PAYER_ACTION_REQUIRED), or is refused (422 INSTRUMENT_DECLINED), as
`next_vault_charge` says; `DELETE /v3/vault/payment-tokens/{id}` removes a token. PayPal-Request-Id is honoured like PayPal does: the same id
replays the first answer. An approve page (`/checkoutnow?token=`) with Approve and Cancel
buttons redirects to the order's return or cancel URL.

Webhooks are signed as PayPal signs them (SHA256withRSA over
`transmission_id|time|webhook_id|crc32(body)`) with a certificate chain the test makes
(tests/fakes/paypal_certs.py), served at /v1/notifications/certs/<id>. The adapter only
fetches certificates from https://api.sandbox.paypal.com, so tests route that host to the
fake with `route_paypal_hosts(session, fake.url)`.

Every request is recorded (method, path, query, JSON, headers); tests can queue errors,
connection resets and latency.

    with FakePayPal().running() as fake: ...      # or the `paypal_api` pytest fixture
    python -m tests.fakes.paypal_api --port 8766 --webhook-url http://127.0.0.1:5000/webhooks/paypal
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import secrets
import socket
import string
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from flask import Flask, Response, jsonify, redirect, request
from requests.adapters import HTTPAdapter
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.fakes.paypal_certs import SigningBundle, make_bundle

CERT_HOST = "https://api.sandbox.paypal.com"
NO_DECIMALS = {"HUF", "JPY", "TWD"}
_UPPER = string.ascii_uppercase + string.digits


def _pid(n: int = 17) -> str:
    return "".join(secrets.choice(_UPPER) for _ in range(n))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(
    status: int, name: str, message: str, issue: str | None = None, description: str = ""
) -> tuple[Response, int]:
    body: dict[str, Any] = {"name": name, "message": message, "debug_id": _pid(13).lower()}
    if issue:
        body["details"] = [{"issue": issue, "description": description or message}]
    return jsonify(body), status


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    raw: bytes = b""

    @property
    def request_id(self) -> str | None:
        return self.headers.get("Paypal-Request-Id") or self.headers.get("PayPal-Request-Id")


@dataclass
class Injection:
    kind: str  # "error", "reset", "latency"
    path: str | None = None
    method: str | None = None
    status: int = 500
    body: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class _DropConnection(ConnectionResetError):
    pass


class _RouteAdapter(HTTPAdapter):
    """Sends requests for one https origin to a local http address instead."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = urlsplit(target)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        request.url = urlunsplit(
            (self.target.scheme, self.target.netloc, parts.path, parts.query, "")
        )
        return super().send(request, *args, **kwargs)


def route_paypal_hosts(session: requests.Session, fake_url: str) -> requests.Session:
    """Route https://api.sandbox.paypal.com (where the fake's certs 'live') to the fake."""
    session.mount(CERT_HOST + "/", _RouteAdapter(fake_url))
    return session


def _valid_value(value: Any, currency: str) -> bool:
    if not isinstance(value, str):
        return False
    places = 0 if currency in NO_DECIMALS else 2
    if places == 0:
        return value.isdigit()
    whole, _, frac = value.partition(".")
    return whole.isdigit() and (frac == "" or (frac.isdigit() and len(frac) <= 2))


def _dec(value: str) -> Decimal:
    return Decimal(value)


def _fmt(amount: Decimal, currency: str) -> str:
    places = 0 if currency in NO_DECIMALS else 2
    return f"{amount.quantize(Decimal(1).scaleb(-places)):f}"


class FakePayPal:
    def __init__(
        self,
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",
        webhook_id: str = "WH0FAKE0WEBHOOK0ID",
        webhook_url: str | None = None,
        bundle: SigningBundle | None = None,
        token_lifetime: int = 32400,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self.webhook_url = webhook_url
        self.bundle = bundle or make_bundle()
        self.cert_id = "CERT-360caa42-fca2a594-" + _pid(8).lower()
        self.token_lifetime = token_lifetime
        self.tokens: set[str] = set()
        self.orders: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.transmissions: dict[str, bytes] = {}
        self._replies: dict[tuple[str, str], tuple[int, Any]] = {}  # (path, request id)
        self.requests: list[Recorded] = []
        self.injections: deque[Injection] = deque()
        # What the next capture does: COMPLETED, PENDING, DECLINED, or "INSTRUMENT_DECLINED"
        # (the 422 PayPal answers when the funding source is refused).
        self.next_capture: deque[str] = deque()
        self.refund_status = "COMPLETED"
        # Vault v3: saved wallets (payment tokens) by id; what the next order that names a
        # vault_id does: COMPLETED (captured at once), PAYER_ACTION_REQUIRED, or
        # INSTRUMENT_DECLINED (the 422 PayPal answers when the wallet is refused).
        self.payment_tokens: dict[str, dict[str, Any]] = {}
        self.next_vault_charge: deque[str] = deque()
        self.vault_on_capture = True
        self.deliveries: list[tuple[str, int | str]] = []
        self.webhook_delay = 0.05
        self.send_webhooks = True
        self._senders: list[threading.Thread] = []
        self.lock = threading.RLock()
        self.app = self._make_app()
        self.url = ""
        self._server: Any = None

    # ------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(
            host, port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://{host}:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.wait_for_deliveries()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def running(self) -> Iterator[FakePayPal]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    @property
    def cert_url(self) -> str:
        return f"{CERT_HOST}/v1/notifications/certs/{self.cert_id}"

    # ------------------------------------------------------------ injections

    def queue_error(
        self,
        status: int = 500,
        name: str = "INTERNAL_SERVER_ERROR",
        message: str = "An internal server error occurred.",
        issue: str | None = None,
        *,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"name": name, "message": message, "debug_id": "fakedebug01"}
        if issue:
            body["details"] = [{"issue": issue, "description": message}]
        self.injections.append(Injection("error", path, method, status, body))

    def queue_reset(self, *, path: str | None = None, method: str | None = None) -> None:
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

    def revoke_tokens(self) -> None:
        """Every issued token answers 401 from now on (PayPal revoked them early)."""
        with self.lock:
            self.tokens.clear()

    def calls(self, method: str | None = None, prefix: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method)
            and (prefix is None or r.path.startswith(prefix))
        ]

    # ------------------------------------------------------------ state helpers

    def approve(self, order_id: str) -> dict[str, Any]:
        """What the buyer's Approve click does."""
        with self.lock:
            order = self.orders[order_id]
            if order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
                order["status"] = "APPROVED"
                order["payer"] = {
                    "name": {"given_name": "Test", "surname": "Buyer"},
                    "email_address": "buyer@example.com",
                    "payer_id": "FAKEPAYER01",
                }
                order["payment_source"]["paypal"].update(
                    account_id="FAKEPAYER01",
                    email_address="buyer@example.com",
                    account_status="VERIFIED",
                )
                order["update_time"] = _now()
                self._event("CHECKOUT.ORDER.APPROVED", "checkout-order", order)
            return copy.deepcopy(order)

    def capture_now(self, order_id: str) -> dict[str, Any]:
        """Approve and capture an order, as a buyer plus a capture call would."""
        with self.lock:
            self.approve(order_id)
            result = self._capture(self.orders[order_id])
            assert not isinstance(result, tuple), result
            return copy.deepcopy(result)

    def dashboard_refund(self, capture_id: str, amount: str | None = None) -> dict[str, Any]:
        """A refund made in PayPal's dashboard: no custom_id, no request id."""
        with self.lock:
            capture = self.captures[capture_id]
            return copy.deepcopy(self._refund(capture, {} if amount is None else {"value": amount}))

    def void_in_dashboard(self, authorization_id: str) -> dict[str, Any]:
        """The merchant voids an authorization in PayPal's dashboard (or PayPal does):
        VOIDED, with its PAYMENT.AUTHORIZATION.VOIDED event."""
        with self.lock:
            auth = self.authorizations[authorization_id]
            auth.update(status="VOIDED", update_time=_now())
            self._sync_order(auth)
            return self._event("PAYMENT.AUTHORIZATION.VOIDED", "authorization", auth)

    def lapse(self, authorization_id: str) -> dict[str, Any]:
        """An authorization past its validity (29 days): EXPIRED. PayPal sends no event
        for it; a re-fetch (sync, reconcile) finds it."""
        with self.lock:
            auth = self.authorizations[authorization_id]
            auth.update(status="EXPIRED", update_time=_now())
            self._sync_order(auth)
            return copy.deepcopy(auth)

    def set_refund_status(self, refund_id: str, status: str) -> dict[str, Any]:
        with self.lock:
            self.refunds[refund_id]["status"] = status
            return copy.deepcopy(self.refunds[refund_id])

    def set_capture_status(self, capture_id: str, status: str, reason: str | None = None) -> None:
        with self.lock:
            capture = self.captures[capture_id]
            capture["status"] = status
            capture.pop("status_details", None)
            if reason:
                capture["status_details"] = {"reason": reason}
            self._sync_order(capture)
            kind = {"COMPLETED": "COMPLETED", "DECLINED": "DENIED", "PENDING": "PENDING"}.get(
                status
            )
            if kind:
                self._event(f"PAYMENT.CAPTURE.{kind}", "capture", capture)

    def create_dispute(
        self,
        capture_id: str,
        *,
        status: str = "WAITING_FOR_SELLER_RESPONSE",
        reason: str = "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        outcome: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            capture = self.captures[capture_id]
            dispute_id = "PP-D-" + _pid(5)
            dispute = {
                "dispute_id": dispute_id,
                "create_time": _now(),
                "update_time": _now(),
                "disputed_transactions": [
                    {
                        "seller_transaction_id": capture_id,
                        "custom": capture.get("custom_id"),
                        "invoice_number": capture.get("invoice_id"),
                        "gross_amount": copy.deepcopy(capture["amount"]),
                    }
                ],
                "reason": reason,
                "status": status,
                "dispute_amount": copy.deepcopy(capture["amount"]),
                "seller_response_due_date": (datetime.now(UTC) + timedelta(days=10)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "dispute_life_cycle_stage": "INQUIRY",
                "dispute_channel": "INTERNAL",
                "links": [
                    {
                        "href": f"{self.url}/v1/customer/disputes/{dispute_id}",
                        "rel": "self",
                        "method": "GET",
                    }
                ],
            }
            if outcome:
                dispute["status"] = "RESOLVED"
                dispute["dispute_outcome"] = {"outcome_code": outcome}
            self.disputes[dispute_id] = dispute
            self._event("CUSTOMER.DISPUTE.CREATED", "dispute", dispute)
            return copy.deepcopy(dispute)

    def resolve_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        with self.lock:
            dispute = self.disputes[dispute_id]
            dispute.update(status="RESOLVED", update_time=_now())
            dispute["dispute_outcome"] = {"outcome_code": outcome}
            self._event("CUSTOMER.DISPUTE.RESOLVED", "dispute", dispute)
            return copy.deepcopy(dispute)

    # ------------------------------------------------------------ the vault

    def _vault(self, order: dict[str, Any]) -> None:
        """After a completed capture: save the wallet the order asked to keep (ON_SUCCESS)."""
        instruction = order.get("_vault")
        if not instruction or order.get("_vault_token"):
            return
        customer_id = instruction.get("customer_id") or _pid(10)
        instruction["customer_id"] = customer_id
        paypal = order["payment_source"]["paypal"]
        if not self.vault_on_capture:
            paypal["attributes"] = {
                "vault": {
                    "status": "APPROVED",
                    "customer": {"id": customer_id},
                    "links": [self._link(f"/v2/checkout/orders/{order['id']}", "up")],
                }
            }
            return
        token_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(7))
        wallet = {k: copy.deepcopy(v) for k, v in paypal.items() if k != "attributes"}
        token = {
            "id": token_id,
            "customer": {"id": customer_id},
            "payment_source": {
                "paypal": {**wallet, "usage_type": "MERCHANT", "customer_type": "CONSUMER"}
            },
            "links": [
                self._link(f"/v3/vault/payment-tokens/{token_id}", "self"),
                self._link(f"/v3/vault/payment-tokens/{token_id}", "delete", "DELETE"),
            ],
        }
        self.payment_tokens[token_id] = token
        order["_vault_token"] = token_id
        paypal["attributes"] = {
            "vault": {
                "id": token_id,
                "status": "VAULTED",
                "customer": {"id": customer_id},
                "links": [
                    self._link(f"/v3/vault/payment-tokens/{token_id}", "self"),
                    self._link(f"/v3/vault/payment-tokens/{token_id}", "delete", "DELETE"),
                    self._link(f"/v2/checkout/orders/{order['id']}", "up"),
                ],
            }
        }
        self._event(
            "VAULT.PAYMENT-TOKEN.CREATED",
            "payment_token",
            {**token, "metadata": {"order_id": order["id"]}},
        )

    def finish_vaulting(self, order_id: str) -> str:
        """PayPal saves the wallet of a captured order after the capture answered
        (`vault_on_capture = False`): the token, and its VAULT.PAYMENT-TOKEN.CREATED."""
        with self.lock:
            self.vault_on_capture = True
            order = self.orders[order_id]
            self._vault(order)
            return str(order["_vault_token"])

    def _charge_vault(
        self, body: dict[str, Any], unit: dict[str, Any], vault_id: Any, context: dict[str, Any]
    ) -> Any:
        """An order that names a saved wallet: the merchant charges it (no approval page),
        unless PayPal wants the payer first."""
        token = self.payment_tokens.get(vault_id) if isinstance(vault_id, str) else None
        if token is None:
            return _error(
                404,
                "RESOURCE_NOT_FOUND",
                "The specified resource does not exist.",
                "INVALID_RESOURCE_ID",
                "Specified resource ID does not exist. Please check the resource ID and try again.",
            )
        outcome = self.next_vault_charge.popleft() if self.next_vault_charge else "COMPLETED"
        if outcome == "INSTRUMENT_DECLINED":
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                "The requested action could not be performed, semantically incorrect, or "
                "failed business validation.",
                "INSTRUMENT_DECLINED",
                "The instrument presented was either declined by the processor or bank.",
            )
        order_id = _pid()
        wallet = {
            k: copy.deepcopy(v)
            for k, v in token["payment_source"]["paypal"].items()
            if k not in ("usage_type", "customer_type")
        }
        order: dict[str, Any] = {
            "id": order_id,
            "intent": body["intent"],
            "status": "APPROVED",
            "payment_source": {"paypal": wallet},
            "payer": {
                "email_address": wallet.get("email_address"),
                "payer_id": wallet.get("account_id"),
            },
            "purchase_units": [unit],
            "create_time": _now(),
            "links": [self._link(f"/v2/checkout/orders/{order_id}", "self")],
            "_context": context,
            "_vault_id": vault_id,
        }
        self.orders[order_id] = order
        if outcome == "PAYER_ACTION_REQUIRED":
            order["status"] = "PAYER_ACTION_REQUIRED"
            order["links"].append(
                {
                    "href": f"{self.url}/checkoutnow?token={order_id}",
                    "rel": "payer-action",
                    "method": "GET",
                }
            )
            return _public(order)
        result = self._capture(order)
        if isinstance(result, tuple):
            return result
        return _public(order)

    # ------------------------------------------------------------ webhooks

    def _event(self, kind: str, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """Record the event PayPal would send (a snapshot of the resource now) and send it."""
        event = {
            "id": "WH-" + _pid(17) + "-" + _pid(17),
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": kind,
            "summary": kind.replace(".", " ").lower(),
            "resource": copy.deepcopy(resource),
            "links": [],
        }
        event["links"] = [
            {
                "href": f"{self.url}/v1/notifications/webhooks-events/{event['id']}",
                "rel": "self",
                "method": "GET",
            }
        ]
        self.events.append(event)
        if self.webhook_url and self.send_webhooks:
            self.deliver(event)
        return event

    def signed(
        self,
        event: dict[str, Any],
        *,
        bundle: SigningBundle | None = None,
        webhook_id: str | None = None,
        cert_url: str | None = None,
        when: datetime | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one transmission of `event`, signed like PayPal signs."""
        body = json.dumps(event).encode()
        transmission_id = str(uuid.uuid1())
        sent = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (
            f"{transmission_id}|{sent}|{webhook_id or self.webhook_id}|{zlib.crc32(body)}"
        ).encode()
        signature = (bundle or self.bundle).sign(message)
        self.transmissions[transmission_id] = body
        return body, {
            "Content-Type": "application/json",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": sent,
            "PAYPAL-TRANSMISSION-SIG": signature,
            "PAYPAL-CERT-URL": cert_url or self.cert_url,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }

    def deliver(self, *events: dict[str, Any]) -> None:
        """POST the events to webhook_url, in order, signed, in the background."""
        if not self.webhook_url:
            return
        built = [(e["event_type"], *self.signed(e)) for e in events]
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

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event_type"] == kind]

    # ------------------------------------------------------------ the API's effects

    def _link(self, path: str, rel: str, method: str = "GET") -> dict[str, str]:
        return {"href": f"{self.url}{path}", "rel": rel, "method": method}

    def _sync_order(self, payment: dict[str, Any]) -> None:
        """Keep the order's purchase_units[0].payments in step with the payment objects."""
        order_id = payment["supplementary_data"]["related_ids"]["order_id"]
        payments = self.orders[order_id]["purchase_units"][0].setdefault("payments", {})
        for kind, store in (
            ("captures", self.captures),
            ("authorizations", self.authorizations),
            ("refunds", self.refunds),
        ):
            listed = [
                copy.deepcopy(p)
                for p in store.values()
                if p["supplementary_data"]["related_ids"]["order_id"] == order_id
            ]
            if listed:
                payments[kind] = listed

    def _capture(self, order: dict[str, Any], amount: dict[str, str] | None = None) -> Any:
        unit = order["purchase_units"][0]
        outcome = self.next_capture.popleft() if self.next_capture else "COMPLETED"
        if outcome == "INSTRUMENT_DECLINED":
            return _error(
                422,
                "UNPROCESSABLE_ENTITY",
                "The requested action could not be performed.",
                "INSTRUMENT_DECLINED",
                "The instrument presented was either declined by the processor or bank.",
            )
        capture_id = _pid()
        capture: dict[str, Any] = {
            "id": capture_id,
            "status": outcome,
            "amount": copy.deepcopy(amount or unit["amount"]),
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "custom_id": unit.get("custom_id"),
            "invoice_id": unit.get("invoice_id"),
            "supplementary_data": {"related_ids": {"order_id": order["id"]}},
            "create_time": _now(),
            "update_time": _now(),
            "links": [
                self._link(f"/v2/payments/captures/{capture_id}", "self"),
                self._link(f"/v2/payments/captures/{capture_id}/refund", "refund", "POST"),
                self._link(f"/v2/checkout/orders/{order['id']}", "up"),
            ],
        }
        capture["amount"].pop("breakdown", None)
        if outcome == "PENDING":
            capture["status_details"] = {"reason": "PENDING_REVIEW"}
        self.captures[capture_id] = capture
        order["status"] = "COMPLETED"
        self._sync_order(capture)
        kind = {"COMPLETED": "COMPLETED", "PENDING": "PENDING", "DECLINED": "DECLINED"}[outcome]
        self._event(f"PAYMENT.CAPTURE.{kind}", "capture", capture)
        if outcome == "COMPLETED":
            self._event("CHECKOUT.ORDER.COMPLETED", "checkout-order", order)
            self._vault(order)
        return capture

    def _refund(self, capture: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        currency = capture["amount"]["currency_code"]
        refunded = sum(
            (
                _dec(r["amount"]["value"])
                for r in self.refunds.values()
                if _capture_of(r) == capture["id"] and r["status"] in ("COMPLETED", "PENDING")
            ),
            Decimal(0),
        )
        remaining = _dec(capture["amount"]["value"]) - refunded
        value = _dec(body["value"]) if body.get("value") else remaining
        refund_id = _pid()
        order_id = capture["supplementary_data"]["related_ids"]["order_id"]
        refund: dict[str, Any] = {
            "id": refund_id,
            "status": self.refund_status,
            "amount": {"currency_code": currency, "value": _fmt(value, currency)},
            "seller_payable_breakdown": {
                "gross_amount": {"currency_code": currency, "value": _fmt(value, currency)}
            },
            "supplementary_data": {"related_ids": {"order_id": order_id}},
            "create_time": _now(),
            "update_time": _now(),
            "links": [
                self._link(f"/v2/payments/refunds/{refund_id}", "self"),
                self._link(f"/v2/payments/captures/{capture['id']}", "up"),
            ],
        }
        for key in ("custom_id", "invoice_id", "note_to_payer"):
            if body.get(key):
                refund[key] = body[key]
        if self.refund_status == "PENDING":
            refund["status_details"] = {"reason": "ECHECK"}
        self.refunds[refund_id] = refund
        capture["status"] = "REFUNDED" if value >= remaining else "PARTIALLY_REFUNDED"
        self._sync_order(capture)
        self._sync_order(refund)
        if refund["status"] == "COMPLETED":
            self._event("PAYMENT.CAPTURE.REFUNDED", "refund", refund)
        return refund

    # ------------------------------------------------------------ the app

    def _make_app(self) -> Flask:
        app = Flask(__name__)
        fake = self

        def replay_or(run: Any) -> Any:
            """PayPal-Request-Id: the same id on the same path answers the first answer."""
            rid = request.headers.get("PayPal-Request-Id")
            key = (request.path, rid or "")
            with fake.lock:
                if rid and key in fake._replies:
                    status, body = fake._replies[key]
                    return jsonify(copy.deepcopy(body)), status
                result = run()
                if isinstance(result, tuple):
                    return result  # errors are not stored: PayPal lets them be retried
                status = 201 if request.path.endswith(("/orders", "/refund", "/capture")) else 200
                if rid:
                    fake._replies[key] = (status, copy.deepcopy(result))
                return jsonify(result), status

        @app.before_request
        def record_and_inject() -> Any:
            if request.path.startswith(("/checkoutnow", "/v1/notifications/certs/")):
                return None
            fake.requests.append(
                Recorded(
                    method=request.method,
                    path=request.path,
                    query=dict(request.args),
                    json=request.get_json(silent=True),
                    headers=dict(request.headers),
                    raw=request.get_data(),
                )
            )
            if request.path == "/v1/oauth2/token":
                auth = request.authorization
                if not auth or (auth.username, auth.password) != (
                    fake.client_id,
                    fake.client_secret,
                ):
                    return jsonify(
                        {
                            "error": "invalid_client",
                            "error_description": "Client Authentication failed",
                        }
                    ), 401
            else:
                header = request.headers.get("Authorization", "")
                with fake.lock:
                    ok = header.startswith("Bearer ") and header[7:] in fake.tokens
                if not ok:
                    return jsonify(
                        {
                            "error": "invalid_token",
                            "error_description": "Token signature verification failed",
                        }
                    ), 401
            inj = fake._take_injection()
            if inj is None:
                return None
            if inj.kind == "error":
                return jsonify(inj.body), inj.status
            if inj.kind == "reset":
                sock = request.environ.get("werkzeug.socket")
                if sock is not None:
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

        @app.post("/v1/oauth2/token")
        def token() -> Any:
            if request.form.get("grant_type") != "client_credentials":
                return jsonify({"error": "unsupported_grant_type"}), 400
            value = "A21AA" + secrets.token_urlsafe(40)
            with fake.lock:
                fake.tokens.add(value)
            return jsonify(
                {
                    "scope": "https://uri.paypal.com/services/payments/payment",
                    "access_token": value,
                    "token_type": "Bearer",
                    "app_id": "APP-80W284485P519543T",
                    "expires_in": fake.token_lifetime,
                    "nonce": _now() + secrets.token_hex(8),
                }
            )

        @app.post("/v2/checkout/orders")
        def create_order() -> Any:
            def run() -> Any:
                body = request.get_json(silent=True) or {}
                if body.get("intent") not in ("CAPTURE", "AUTHORIZE"):
                    return _error(400, "INVALID_REQUEST", "intent", "MISSING_REQUIRED_PARAMETER")
                units = body.get("purchase_units") or []
                if len(units) != 1:
                    return _error(
                        400, "INVALID_REQUEST", "purchase_units", "INVALID_PARAMETER_VALUE"
                    )
                unit = copy.deepcopy(units[0])
                amount = unit.get("amount") or {}
                cur = amount.get("currency_code")
                if not _valid_value(amount.get("value"), cur or ""):
                    return _error(
                        422,
                        "UNPROCESSABLE_ENTITY",
                        "amount",
                        "DECIMAL_PRECISION" if cur in NO_DECIMALS else "INVALID_PARAMETER_VALUE",
                    )
                items = unit.get("items") or []
                if items:
                    total = sum(
                        (_dec(i["unit_amount"]["value"]) * int(i["quantity"]) for i in items),
                        Decimal(0),
                    )
                    declared = (amount.get("breakdown") or {}).get("item_total") or {}
                    if _dec(declared.get("value", "-1")) != total:
                        return _error(422, "UNPROCESSABLE_ENTITY", "items", "ITEM_TOTAL_MISMATCH")
                source = (body.get("payment_source") or {}).get("paypal") or {}
                context = source.get("experience_context") or {}
                unit.setdefault("reference_id", "default")
                if "vault_id" in source:
                    unit["payee"] = {
                        "email_address": "merchant@example.com",
                        "merchant_id": "FAKEMERCHANT1",
                    }
                    return fake._charge_vault(body, unit, source["vault_id"], context)
                vault = (source.get("attributes") or {}).get("vault")
                if vault is not None and (
                    vault.get("store_in_vault") != "ON_SUCCESS"
                    or vault.get("usage_type") not in ("MERCHANT", "PLATFORM")
                ):
                    return _error(400, "INVALID_REQUEST", "vault", "INVALID_PARAMETER_VALUE")
                if not context.get("return_url") or not context.get("cancel_url"):
                    return _error(422, "UNPROCESSABLE_ENTITY", "urls", "MISSING_REQUIRED_PARAMETER")
                order_id = _pid()
                unit["payee"] = {
                    "email_address": "merchant@example.com",
                    "merchant_id": "FAKEMERCHANT1",
                }
                order = {
                    "id": order_id,
                    "intent": body["intent"],
                    "status": "PAYER_ACTION_REQUIRED",
                    "payment_source": {
                        "paypal": {
                            k: v
                            for k, v in (body["payment_source"]["paypal"]).items()
                            if k not in ("experience_context", "attributes")
                        }
                    },
                    "purchase_units": [unit],
                    "create_time": _now(),
                    "links": [
                        fake._link(f"/v2/checkout/orders/{order_id}", "self"),
                        {
                            "href": f"{fake.url}/checkoutnow?token={order_id}",
                            "rel": "payer-action",
                            "method": "GET",
                        },
                    ],
                    "_context": context,
                }
                if vault is not None:
                    customer = ((source.get("attributes") or {}).get("customer") or {}).get("id")
                    order["_vault"] = {"customer_id": customer}
                fake.orders[order_id] = order
                return _public(order)

            return replay_or(run)

        @app.get("/v2/checkout/orders/<order_id>")
        def get_order(order_id: str) -> Any:
            with fake.lock:
                order = fake.orders.get(order_id)
                if order is None:
                    return _error(404, "RESOURCE_NOT_FOUND", "order", "INVALID_RESOURCE_ID")
                return jsonify(_public(order))

        @app.post("/v2/checkout/orders/<order_id>/<action>")
        def complete(order_id: str, action: str) -> Any:
            def run() -> Any:
                order = fake.orders.get(order_id)
                if order is None or action not in ("capture", "authorize"):
                    return _error(404, "RESOURCE_NOT_FOUND", "order", "INVALID_RESOURCE_ID")
                want = "CAPTURE" if action == "capture" else "AUTHORIZE"
                if order["intent"] != want:
                    return _error(
                        422, "UNPROCESSABLE_ENTITY", "intent", "ACTION_DOES_NOT_MATCH_INTENT"
                    )
                if order["status"] == "COMPLETED":
                    issue = (
                        "ORDER_ALREADY_CAPTURED"
                        if want == "CAPTURE"
                        else "ORDER_ALREADY_AUTHORIZED"
                    )
                    return _error(422, "UNPROCESSABLE_ENTITY", "order", issue)
                if order["status"] != "APPROVED":
                    return _error(422, "UNPROCESSABLE_ENTITY", "order", "ORDER_NOT_APPROVED")
                if want == "CAPTURE":
                    result = fake._capture(order)
                    if isinstance(result, tuple):
                        return result
                else:
                    unit = order["purchase_units"][0]
                    auth_id = _pid()
                    auth = {
                        "id": auth_id,
                        "status": "CREATED",
                        "amount": {
                            "currency_code": unit["amount"]["currency_code"],
                            "value": unit["amount"]["value"],
                        },
                        "custom_id": unit.get("custom_id"),
                        "invoice_id": unit.get("invoice_id"),
                        "seller_protection": {"status": "ELIGIBLE"},
                        "supplementary_data": {"related_ids": {"order_id": order_id}},
                        "expiration_time": (datetime.now(UTC) + timedelta(days=29)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                        "create_time": _now(),
                        "update_time": _now(),
                        "links": [
                            fake._link(f"/v2/payments/authorizations/{auth_id}", "self"),
                            fake._link(
                                f"/v2/payments/authorizations/{auth_id}/capture", "capture", "POST"
                            ),
                            fake._link(
                                f"/v2/payments/authorizations/{auth_id}/void", "void", "POST"
                            ),
                            fake._link(f"/v2/checkout/orders/{order_id}", "up"),
                        ],
                    }
                    fake.authorizations[auth_id] = auth
                    order["status"] = "COMPLETED"
                    fake._sync_order(auth)
                    fake._event("PAYMENT.AUTHORIZATION.CREATED", "authorization", auth)
                return _public(order)

            return replay_or(run)

        @app.get("/v2/payments/<kind>/<obj_id>")
        def get_payment(kind: str, obj_id: str) -> Any:
            store = {
                "captures": fake.captures,
                "authorizations": fake.authorizations,
                "refunds": fake.refunds,
            }.get(kind)
            with fake.lock:
                if store is None or obj_id not in store:
                    return _error(404, "RESOURCE_NOT_FOUND", kind, "INVALID_RESOURCE_ID")
                return jsonify(store[obj_id])

        @app.post("/v2/payments/authorizations/<auth_id>/<action>")
        def authorization_action(auth_id: str, action: str) -> Any:
            def run() -> Any:
                auth = fake.authorizations.get(auth_id)
                if auth is None:
                    return _error(404, "RESOURCE_NOT_FOUND", "authorization", "INVALID_RESOURCE_ID")
                if auth["status"] == "VOIDED":
                    return _error(
                        422,
                        "UNPROCESSABLE_ENTITY",
                        "voided",
                        "AUTHORIZATION_ALREADY_VOIDED"
                        if action == "void"
                        else "AUTHORIZATION_VOIDED",
                    )
                if auth["status"] == "CAPTURED":
                    return _error(
                        422, "UNPROCESSABLE_ENTITY", "captured", "AUTHORIZATION_ALREADY_CAPTURED"
                    )
                order = fake.orders[auth["supplementary_data"]["related_ids"]["order_id"]]
                if action == "void":
                    auth.update(status="VOIDED", update_time=_now())
                    fake._sync_order(auth)
                    fake._event("PAYMENT.AUTHORIZATION.VOIDED", "authorization", auth)
                    return copy.deepcopy(auth)
                if action != "capture":
                    return _error(404, "RESOURCE_NOT_FOUND", action, "INVALID_RESOURCE_ID")
                body = request.get_json(silent=True) or {}
                amount = body.get("amount") or auth["amount"]
                if _dec(amount["value"]) > _dec(auth["amount"]["value"]):
                    return _error(
                        422, "UNPROCESSABLE_ENTITY", "amount", "MAX_CAPTURE_AMOUNT_EXCEEDED"
                    )
                result = fake._capture(order, amount)
                if isinstance(result, tuple):
                    return result
                auth.update(status="CAPTURED", update_time=_now())
                fake._sync_order(auth)
                return copy.deepcopy(result)

            return replay_or(run)

        @app.post("/v2/payments/captures/<capture_id>/refund")
        def refund(capture_id: str) -> Any:
            def run() -> Any:
                capture = fake.captures.get(capture_id)
                if capture is None:
                    return _error(404, "RESOURCE_NOT_FOUND", "capture", "INVALID_RESOURCE_ID")
                if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
                    return _error(422, "UNPROCESSABLE_ENTITY", "capture", "CAPTURE_FULLY_REFUNDED")
                body = request.get_json(silent=True) or {}
                amount = body.get("amount") or {}
                cur = capture["amount"]["currency_code"]
                if amount and (
                    amount.get("currency_code") != cur or not _valid_value(amount.get("value"), cur)
                ):
                    return _error(422, "UNPROCESSABLE_ENTITY", "amount", "CURRENCY_MISMATCH")
                refunded = sum(
                    (
                        _dec(r["amount"]["value"])
                        for r in fake.refunds.values()
                        if _capture_of(r) == capture_id and r["status"] in ("COMPLETED", "PENDING")
                    ),
                    Decimal(0),
                )
                if amount and _dec(amount["value"]) > _dec(capture["amount"]["value"]) - refunded:
                    return _error(422, "UNPROCESSABLE_ENTITY", "amount", "REFUND_AMOUNT_EXCEEDED")
                return fake._refund(capture, {**body, "value": amount.get("value")})

            return replay_or(run)

        @app.get("/v3/vault/payment-tokens/<token_id>")
        def get_payment_token(token_id: str) -> Any:
            with fake.lock:
                token = fake.payment_tokens.get(token_id)
                if token is None:
                    return _error(404, "RESOURCE_NOT_FOUND", "token", "INVALID_RESOURCE_ID")
                return jsonify(copy.deepcopy(token))

        @app.delete("/v3/vault/payment-tokens/<token_id>")
        def delete_payment_token(token_id: str) -> Any:
            with fake.lock:
                token = fake.payment_tokens.pop(token_id, None)
                if token is None:
                    return _error(404, "RESOURCE_NOT_FOUND", "token", "INVALID_RESOURCE_ID")
                fake._event("VAULT.PAYMENT-TOKEN.DELETED", "payment_token", token)
            return Response(status=204)

        @app.get("/v1/customer/disputes/<dispute_id>")
        def get_dispute(dispute_id: str) -> Any:
            with fake.lock:
                if dispute_id not in fake.disputes:
                    return _error(404, "RESOURCE_NOT_FOUND", "dispute", "INVALID_RESOURCE_ID")
                return jsonify(fake.disputes[dispute_id])

        @app.get("/v1/notifications/webhooks-events")
        def list_events() -> Any:
            start = _parse(request.args.get("start_time"))
            end = _parse(request.args.get("end_time"))
            size = int(request.args.get("page_size") or 10)
            offset = int(request.args.get("offset") or 0)
            with fake.lock:
                chosen = [
                    e
                    for e in fake.events
                    if (start is None or _when(e) >= start) and (end is None or _when(e) <= end)
                ]
                chosen = list(reversed(chosen))  # newest first, as PayPal lists
                page = chosen[offset : offset + size]
                links = []
                if offset + size < len(chosen):
                    args = dict(request.args)
                    args["offset"] = str(offset + size)
                    links.append(
                        {
                            "href": f"{fake.url}/v1/notifications/webhooks-events?{urlencode(args)}",
                            "rel": "next",
                            "method": "GET",
                        }
                    )
                return jsonify({"events": copy.deepcopy(page), "count": len(page), "links": links})

        @app.post("/v1/notifications/verify-webhook-signature")
        def verify_signature() -> Any:
            body = request.get_json(silent=True) or {}
            tid = body.get("transmission_id")
            raw = fake.transmissions.get(tid or "")
            ok = False
            if (
                raw is not None
                and body.get("webhook_id") == fake.webhook_id
                and body.get("cert_url") == fake.cert_url
                and json.loads(raw) == body.get("webhook_event")
            ):
                message = (
                    f"{tid}|{body.get('transmission_time')}|{fake.webhook_id}|{zlib.crc32(raw)}"
                ).encode()
                key = fake.bundle.leaf_key.public_key()
                try:
                    key.verify(
                        base64.b64decode(body.get("transmission_sig") or ""),
                        message,
                        padding.PKCS1v15(),
                        hashes.SHA256(),
                    )
                    ok = True
                except (InvalidSignature, ValueError):
                    ok = False
            return jsonify({"verification_status": "SUCCESS" if ok else "FAILURE"})

        @app.get("/v1/notifications/certs/<cert_id>")
        def cert(cert_id: str) -> Any:
            if cert_id != fake.cert_id:
                return _error(404, "RESOURCE_NOT_FOUND", "cert")
            return Response(fake.bundle.chain_pem, mimetype="application/x-pem-file")

        @app.get("/checkoutnow")
        def approve_page() -> Any:
            order_id = request.args.get("token", "")
            with fake.lock:
                order = fake.orders.get(order_id)
            if order is None:
                return "No such order", 404
            unit = order["purchase_units"][0]
            amount = f"{unit['amount']['value']} {unit['amount']['currency_code']}"
            brand = escape(order["_context"].get("brand_name") or "the merchant")
            return (
                "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width'>"
                f"<title>PayPal (fake) - pay {escape(amount)}</title></head><body>"
                f"<h1>Pay {brand} with PayPal</h1><p>Order {escape(order_id)}: "
                f"<strong>{escape(amount)}</strong></p>"
                f"<form method='post' action='/checkoutnow/approve'>"
                f"<input type='hidden' name='token' value='{escape(order_id)}'>"
                "<button type='submit'>Approve</button></form>"
                f"<form method='post' action='/checkoutnow/cancel'>"
                f"<input type='hidden' name='token' value='{escape(order_id)}'>"
                "<button type='submit'>Cancel and return to the store</button></form>"
                "</body></html>"
            )

        @app.post("/checkoutnow/<choice>")
        def approve_choice(choice: str) -> Any:
            order_id = request.form.get("token", "")
            with fake.lock:
                order = fake.orders.get(order_id)
                if order is None:
                    return "No such order", 404
                context = order["_context"]
            if choice == "approve":
                fake.approve(order_id)
                target = _with_query(
                    context["return_url"], {"token": order_id, "PayerID": "FAKEPAYER01"}
                )
            else:
                target = _with_query(context["cancel_url"], {"token": order_id})
            return redirect(target, code=302)

        return app


def _capture_of(refund: dict[str, Any]) -> str | None:
    for link in refund.get("links") or []:
        if link.get("rel") == "up":
            return str(link["href"]).rstrip("/").rsplit("/", 1)[-1]
    return None


def _public(order: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in order.items() if not k.startswith("_")})


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def _when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["create_time"])


def _with_query(url: str, args: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode(args)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@pytest.fixture
def paypal_api() -> Iterator[FakePayPal]:
    """A running fake PayPal API on a loopback port."""
    with FakePayPal().running() as fake:
        yield fake


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake PayPal API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--client-id", default="fake-client-id")
    parser.add_argument("--client-secret", default="fake-client-secret")
    parser.add_argument("--webhook-id", default="WH0FAKE0WEBHOOK0ID")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument(
        "--root-pem", default=None, help="write the test root certificate here (to trust it)"
    )
    args = parser.parse_args()
    fake = FakePayPal(args.client_id, args.client_secret, args.webhook_id, args.webhook_url)
    url = fake.start(args.host, args.port)
    if args.root_pem:
        with open(args.root_pem, "wb") as fh:
            fh.write(fake.bundle.root_pem)
    print(f"fake PayPal on {url}; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()


__all__ = ["FakePayPal", "Recorded", "paypal_api", "route_paypal_hosts"]
