"""A fake of the gateway port (app/gateways/base.py's Gateway protocol), in process: it
records every call, and fails with a configured GatewayError code, crashes like a buggy
adapter, or holds create_checkout until released (to keep a request in flight).

Register it on an app with `app.extensions["kassa_gateways"]["fake"] = FakeGateway()`
(the API tests' `fake_gateway` fixture does). For the real SDKs over HTTP, see stripe_api.py
and razorpay_api.py beside this file.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from app.gateways.base import (
    CaptureRequest,
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundResult,
    ReturnParams,
    VerifiedEvent,
)
from app.models import PaymentStatus, RefundStatus


@dataclass
class FakeGateway:
    """The gateway port's fake: records calls; fails with a configured GatewayError code,
    or holds create_checkout until released (to keep a request in flight)."""

    name: str = "fake"
    display_name: str = "Fake gateway"
    fail_with: str | None = None
    retryable: bool = False
    crash: bool = False
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _call(self, name: str, arg: Any) -> None:
        with self._lock:
            self.calls.append((name, arg))
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "test never released the fake gateway"
        if self.crash:
            raise RuntimeError("a bug in an adapter")
        if self.fail_with:
            raise GatewayError(self.fail_with, f"fake {self.fail_with}", retryable=self.retryable)

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        self._call("create_checkout", request)
        return CheckoutSession(
            reference=f"fake_cs_{secrets.token_hex(6)}", redirect_url="https://fake.example.com/pay"
        )

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        self._call("retrieve", ref)
        return PaymentUpdate(ref=ref, status=PaymentStatus.PROCESSING)

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        self._call("confirm_return", params)
        return None

    def cancel_checkout(self, ref: PaymentRef) -> None:
        self._call("cancel_checkout", ref)

    def refund(self, request: RefundRequest) -> RefundResult:
        self._call("refund", request)
        return RefundResult(
            gateway_refund_id=f"fake_re_{secrets.token_hex(4)}", status=RefundStatus.PENDING
        )

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        self._call("capture", request)
        return PaymentUpdate(ref=PaymentRef(request.payment_id), status=PaymentStatus.SUCCEEDED)

    def verify_webhook(self, body: bytes, headers: Any) -> VerifiedEvent:
        raise NotImplementedError

    def interpret(self, event: VerifiedEvent) -> list[Any]:
        return []

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload
