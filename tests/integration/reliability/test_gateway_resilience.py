"""Gateway calls over real HTTP against a flaky fake: timeouts, connection resets, 429 and
5xx are retried a bounded number of times with one idempotency key and never make a
duplicate; giving up is a clear error; the circuit breaker opens and recovers."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app.crypto import email_hash
from app.extensions import db
from app.gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    LineItem,
    PaymentRef,
    PaymentUpdate,
)
from app.gateways.resilience import Policy, ResilientGateway
from app.models import AuditEntry, Payment, PaymentStatus
from app.payments.audit import CUSTOMER
from app.payments.checkout import create_checkout
from app.payments.errors import PaymentGatewayFailed
from app.payments.orders import ItemRequest
from app.payments.reconcile import reconcile


class FlakyGatewayServer:
    """An HTTP 'gateway' on a loopback port that misbehaves as scripted, request by request.

    Behaviours: "ok", "timeout" (acts, then answers too late), "reset" (acts, then resets
    the connection), "429", "500", "503". Like a real gateway it acts at most once per
    Idempotency-Key: a repeated key gets the object made the first time.
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.requests: list[tuple[str, str | None]] = []  # (path, idempotency key)
        self.objects: dict[str, dict[str, Any]] = {}  # idempotency key -> object
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> tuple[str, dict[str, str], bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += conn.recv(65536)
        return lines[0].split(" ")[1], headers, body

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            path, headers, body = self._read_request(conn)
            key = headers.get("idempotency-key")
            with self._lock:
                self.requests.append((path, key))
                behaviour = self.script.pop(0) if self.script else "ok"
                if behaviour in ("ok", "timeout", "reset") and key:
                    # The gateway acts; whether we hear about it is another matter.
                    self.objects.setdefault(
                        key, {"id": f"fk_{len(self.objects) + 1}", **json.loads(body or b"{}")}
                    )
                obj = self.objects.get(key or "", {"id": "fk_none"})
            if behaviour == "timeout":
                time.sleep(1.0)
            if behaviour == "reset":
                # RST instead of FIN: the client sees "connection reset by peer".
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            status = {"ok": 200, "timeout": 200, "429": 429, "500": 500, "503": 503}[behaviour]
            payload = json.dumps(obj if status == 200 else {"error": behaviour}).encode()
            try:
                conn.sendall(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (status, len(payload), payload)
                )
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class HttpGateway:
    """A minimal adapter over HTTP, shaped like the real ones: its HTTP client has a timeout,
    HTTP errors become GatewayErrors, and network errors propagate for the wrapper to map."""

    name = "fakehttp"
    display_name = "Fake HTTP gateway"

    def __init__(self, base_url: str, timeout: float) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def _post(self, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            self.base_url + path, json=body, timeout=self.timeout, headers={"Idempotency-Key": key}
        )
        if response.status_code == 429:
            raise GatewayError(
                "rate_limited", "Too many requests.", retryable=True, http_status=429
            )
        if response.status_code >= 500:
            raise GatewayError(
                "gateway_unavailable",
                "Server error.",
                retryable=True,
                http_status=response.status_code,
            )
        if response.status_code >= 400:
            raise GatewayError("invalid_request", "Bad request.", http_status=400)
        return response.json()  # type: ignore[no-any-return]

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        obj = self._post(
            "/sessions",
            request.idempotency_key,
            {"amount": request.amount, "currency": request.currency},
        )
        return CheckoutSession(reference=obj["id"], redirect_url=f"{self.base_url}/pay/{obj['id']}")

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        return PaymentUpdate(ref=ref, status=PaymentStatus.PROCESSING)

    def cancel_checkout(self, ref: PaymentRef) -> None:
        return None


def _request(key: str = "kassa-checkout-pay_1") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay_1",
        order_id="ord_1",
        amount=2500,
        currency="USD",
        line_items=(LineItem("Tee", 2500, 1),),
        customer_email="a@example.com",
        customer_name="A",
        success_url="http://x/s",
        cancel_url="http://x/c",
        idempotency_key=key,
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )


@pytest.fixture
def fake() -> Iterator[FlakyGatewayServer]:
    server = FlakyGatewayServer()
    yield server
    server.close()


def _wrapped(fake: FlakyGatewayServer, **policy: Any) -> ResilientGateway:
    settings = {
        "timeout": 0.3,
        "max_attempts": 5,
        "backoff": 0.01,
        "backoff_max": 0.05,
        "breaker_threshold": 10,
        "breaker_cooldown": 0.5,
    }
    settings.update(policy)
    return ResilientGateway(HttpGateway(fake.url, settings["timeout"]), Policy(**settings))


def test_transient_failures_are_retried_with_one_key_and_make_one_object(
    fake: FlakyGatewayServer,
) -> None:
    gateway = _wrapped(fake)
    fake.script = ["timeout", "reset", "429", "503", "ok"]
    session = gateway.create_checkout(_request())
    assert session.reference == "fk_1"
    assert [key for _, key in fake.requests] == ["kassa-checkout-pay_1"] * 5
    assert len(fake.objects) == 1  # acted on the first try, never again
    assert [code for _, _, code in gateway.failures] == [
        "gateway_unavailable",
        "gateway_unavailable",
        "rate_limited",
        "gateway_unavailable",
    ]
    assert gateway.breaker.state == "closed"


def test_definitive_errors_are_not_retried(fake: FlakyGatewayServer) -> None:
    gateway = _wrapped(fake)

    class Refusing(HttpGateway):
        def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
            raise GatewayError("card_declined", "Your card was declined.", http_status=402)

    gateway.inner = Refusing(fake.url, 0.3)
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(_request())
    assert caught.value.code == "card_declined" and not gateway.failures


def test_gives_up_after_bounded_attempts_with_a_clear_error(fake: FlakyGatewayServer) -> None:
    gateway = _wrapped(fake, max_attempts=3)
    fake.script = ["500", "timeout", "503", "ok"]
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(_request())
    assert time.monotonic() - started < 3
    assert caught.value.code == "gateway_unavailable"
    assert "did not answer after 3 attempts" in caught.value.message
    assert len(fake.requests) == 3 and {k for _, k in fake.requests} == {"kassa-checkout-pay_1"}
    # The timed-out attempt did act; the next call with the same key gets that object.
    assert gateway.create_checkout(_request()).reference == "fk_1"
    assert len(fake.objects) == 1


def test_circuit_breaker_opens_fails_fast_and_recovers(fake: FlakyGatewayServer) -> None:
    gateway = _wrapped(fake, max_attempts=2, breaker_threshold=3, breaker_cooldown=0.4)
    fake.script = ["503"] * 3
    with pytest.raises(GatewayError):
        gateway.create_checkout(_request("k1"))  # failures 1 and 2
    with pytest.raises(GatewayError):
        gateway.create_checkout(_request("k2"))  # failure 3: the breaker opens
    assert gateway.breaker.state == "open"
    sent = len(fake.requests)
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(_request("k3"))
    assert time.monotonic() - started < 0.05  # failed fast...
    assert len(fake.requests) == sent  # ...without calling the gateway
    assert caught.value.code == "gateway_unavailable"
    assert caught.value.message == "Fake HTTP gateway is not answering; try again shortly."

    time.sleep(0.45)
    assert gateway.breaker.state == "half_open"
    assert gateway.create_checkout(_request("k3")).reference  # the trial call succeeds
    assert gateway.breaker.state == "closed"

    fake.script = ["503", "503"]  # a failed trial re-opens it
    gateway.breaker.failures = gateway.breaker.threshold - 1
    with pytest.raises(GatewayError):
        gateway.create_checkout(_request("k4"))
    assert gateway.breaker.state == "open"


def test_through_the_core_a_checkout_survives_a_flaky_gateway_and_an_outage(
    make_app: Callable[..., Flask], fake: FlakyGatewayServer
) -> None:
    app = make_app(RECONCILE_GRACE_SECONDS=0)
    gateway = _wrapped(fake, max_attempts=3)
    app.extensions["kassa_gateways"]["fakehttp"] = gateway

    fake.script = ["reset", "429", "ok"]
    with app.test_request_context():
        payment = create_checkout(
            [ItemRequest("tee-usd", 1)], "a@example.com", "A", "fakehttp", CUSTOMER
        )
        assert payment.status == "processing" and payment.gateway_reference == "fk_1"

    # An outage: the customer gets a clear message, the attempt stays open for reconcile.
    fake.script = ["503", "timeout", "500"]
    with app.test_request_context(), pytest.raises(PaymentGatewayFailed) as caught:
        create_checkout([ItemRequest("tee-usd", 1)], "b@example.com", "B", "fakehttp", CUSTOMER)
    assert "not answering right now" in str(caught.value.message)
    with app.app_context():
        stuck = db.session.execute(
            select(Payment).where(Payment.customer_email_hash == email_hash("b@example.com"))
        ).scalar_one()
        assert stuck.status == "created" and stuck.gateway_reference is None
        assert db.session.execute(
            select(AuditEntry.action).where(
                AuditEntry.payment_id == stuck.id, AuditEntry.action == "payment.gateway_error"
            )
        ).scalar_one()
        stuck_key = stuck.idempotency_key
    assert len(fake.objects) == 2  # the timed-out attempt acted at the gateway

    # The gateway is back: reconcile opens the attempt with its own key, no new session.
    with app.test_request_context():
        report = reconcile()
    with app.app_context():
        stuck = db.session.execute(
            select(Payment).where(Payment.customer_email_hash == email_hash("b@example.com"))
        ).scalar_one()
        assert stuck.status == "processing"
        assert stuck.gateway_reference == fake.objects[stuck_key]["id"]
    assert len(fake.objects) == 2
    assert any("created → processing" in c for c in report.changes)


def test_retries_stop_at_the_deadline(fake: FlakyGatewayServer) -> None:
    # A request thread has to answer before the server's own timeout: no late attempts.
    gateway = _wrapped(fake, max_attempts=10, deadline=0.5, backoff=0.05, backoff_max=0.05)
    fake.script = ["503"] * 10
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(_request())
    assert time.monotonic() - started < 0.6
    assert len(fake.requests) < 10 and "did not answer after" in caught.value.message


def test_a_call_the_adapter_says_is_unsafe_to_repeat_is_not_retried(
    fake: FlakyGatewayServer,
) -> None:
    # A 5xx for a call without an idempotency key: repeating it might act twice.
    gateway = _wrapped(fake, breaker_threshold=2)

    class NoKey(HttpGateway):
        def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
            raise GatewayError(
                "gateway_unavailable", "Server error.", retryable=False, http_status=502
            )

    gateway.inner = NoKey(fake.url, 0.3)
    for _ in range(2):
        with pytest.raises(GatewayError) as caught:
            gateway.create_checkout(_request())
        assert caught.value.message == "Server error."
    assert len(gateway.failures) == 2 and gateway.breaker.state == "open"  # one try each
