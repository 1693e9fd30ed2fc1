"""Resilient gateway calls: timeouts, bounded retries with backoff, a circuit breaker.

The registry wraps every adapter in `ResilientGateway`. Only failures the adapter marks
`retryable` are retried (connection errors, timeouts, 429, 5xx: adapters set it when a
repeat with the same idempotency key is safe), and always with the very same request object, so the idempotency key the
gateway deduplicates on never changes between attempts: a retry can never make a second
session, capture or refund. Definitive answers (a decline, a bad request) are returned
at once and count as the gateway answering.

A gateway that keeps failing opens its breaker: calls then fail immediately with
GatewayError("gateway_unavailable") instead of tying up request threads and workers on
timeouts. After the cool-down one trial call is let through (half-open); its success
closes the breaker, its failure opens it again.

Timeouts: adapters give their HTTP clients `timeout` (GATEWAY_TIMEOUT_SECONDS); a
timeout that escapes an adapter unmapped is still treated as transient here.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import requests

from app.gateways.base import (
    AuthenticationRequest,
    AuthenticationStart,
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    Gateway,
    GatewayError,
    MethodSetupRequest,
    MethodSetupSession,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundResult,
    ReturnParams,
    VerifiedEvent,
    gateway_code,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    timeout: float = 8.0  # seconds, per HTTP call (adapters apply it)
    max_attempts: int = 3  # including the first
    backoff: float = 0.5  # first delay; doubles per attempt
    backoff_max: float = 5.0
    breaker_threshold: int = 5  # consecutive transient failures that open the breaker
    breaker_cooldown: float = 30.0  # seconds open before one trial call
    deadline: float = 25.0  # no new attempt that could end after this (seconds)

    @classmethod
    def from_config(cls, config: Any) -> Policy:
        return cls(
            timeout=float(config.get("GATEWAY_TIMEOUT_SECONDS", 8)),
            max_attempts=max(1, int(config.get("GATEWAY_MAX_ATTEMPTS", 3))),
            backoff=float(config.get("GATEWAY_BACKOFF_SECONDS", 0.5)),
            backoff_max=float(config.get("GATEWAY_BACKOFF_MAX_SECONDS", 5)),
            breaker_threshold=max(1, int(config.get("GATEWAY_BREAKER_THRESHOLD", 5))),
            breaker_cooldown=float(config.get("GATEWAY_BREAKER_COOLDOWN_SECONDS", 30)),
            deadline=float(config.get("GATEWAY_DEADLINE_SECONDS", 25)),
        )


def as_gateway_error(exc: BaseException) -> GatewayError | None:
    """Map what an adapter raised to a GatewayError; None for programming errors."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, requests.Timeout | socket.timeout | TimeoutError):
        return GatewayError(
            "gateway_unavailable", "The payment provider timed out.", retryable=True
        )
    if isinstance(exc, requests.ConnectionError | ConnectionError):
        return GatewayError(
            "gateway_unavailable", "Could not reach the payment provider.", retryable=True
        )
    return None


def is_transient(exc: GatewayError) -> bool:
    status = exc.http_status
    return bool(
        exc.retryable
        or gateway_code(exc.code).transient
        or (status is not None and (status == 429 or status >= 500))
    )


class CircuitBreaker:
    """Per-gateway, per-process: closed → open after K transient failures → half-open."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self.opened_at is None:
                return "closed"
            if self.clock() - self.opened_at >= self.cooldown:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        with self._lock:
            if self.opened_at is None:
                return True
            if self.clock() - self.opened_at < self.cooldown or self.trial_running:
                return False
            self.trial_running = True  # exactly one trial call while half-open
            return True

    def success(self) -> None:
        with self._lock:
            if self.opened_at is not None:
                log.info("gateway circuit closed")
            self.failures = 0
            self.opened_at = None
            self.trial_running = False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.trial_running or self.failures >= self.threshold:
                if self.opened_at is None or self.trial_running:
                    log.warning("gateway circuit opened after %s transient failures", self.failures)
                self.opened_at = self.clock()
            self.trial_running = False

    def release(self) -> None:
        """A trial call ended without telling us anything about the gateway."""
        with self._lock:
            self.trial_running = False


class ResilientGateway:
    """Wraps any Gateway; network methods get retries and the breaker, the rest pass."""

    def __init__(
        self, inner: Gateway, policy: Policy, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.name = inner.name
        self.display_name = inner.display_name
        self.breaker = CircuitBreaker(policy.breaker_threshold, policy.breaker_cooldown)
        self.sleep = sleep
        # (method, attempt number, error code) of recent failed attempts: for logs and tests.
        self.failures: deque[tuple[str, int, str]] = deque(maxlen=200)

    def __getattr__(self, item: str) -> Any:
        # verify_webhook, interpret, redact, processor...: local work, no network.
        return getattr(self.inner, item)

    def _delay(self, attempt: int) -> float:
        # Full jitter: spread retries from many workers so they don't arrive together.
        cap = min(self.policy.backoff_max, self.policy.backoff * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)

    def call(self, method: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        for attempt in range(1, self.policy.max_attempts + 1):
            if not self.breaker.allow():
                raise GatewayError(
                    "gateway_unavailable",
                    f"{self.display_name} is not answering; try again shortly.",
                    retryable=True,
                )
            try:
                result = fn()
            except Exception as exc:
                error = as_gateway_error(exc)
                if error is None:
                    self.breaker.release()
                    raise
                if not is_transient(error):
                    self.breaker.success()  # it answered, definitively
                    if error is exc:
                        raise
                    raise error from exc
                self.breaker.failure()
                if not error.retryable:
                    # The adapter knows when a repeat could act twice (no idempotency key
                    # for this call): the gateway is struggling, but we must not retry.
                    self.failures.append((method, attempt, error.code))
                    if error is exc:
                        raise
                    raise error from exc
                self.failures.append((method, attempt, error.code))
                log.warning(
                    "gateway %s.%s attempt %s/%s failed: %s",
                    self.name,
                    method,
                    attempt,
                    self.policy.max_attempts,
                    error.code,
                )
                delay = self._delay(attempt)
                # A request thread must answer before the server gives up on it (gunicorn's
                # timeout): no attempt that could run past the deadline.
                out_of_time = (
                    time.monotonic() - started + delay + self.policy.timeout > self.policy.deadline
                )
                if attempt == self.policy.max_attempts or out_of_time:
                    raise GatewayError(
                        error.code,
                        f"{self.display_name} did not answer after {attempt} attempts "
                        f"({error.message})",
                        retryable=True,
                        http_status=error.http_status,
                    ) from exc
                self.sleep(delay)
                continue
            self.breaker.success()
            return result
        raise AssertionError("unreachable")

    # -- the network methods of the Gateway protocol ------------------------------------
    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        return self.call("create_checkout", lambda: self.inner.create_checkout(request))

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        return self.call("retrieve", lambda: self.inner.retrieve(ref))

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        return self.call("confirm_return", lambda: self.inner.confirm_return(ref, params))

    def cancel_checkout(self, ref: PaymentRef) -> None:
        return self.call("cancel_checkout", lambda: self.inner.cancel_checkout(ref))

    def refund(self, request: RefundRequest) -> RefundResult:
        return self.call("refund", lambda: self.inner.refund(request))

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        return self.call("capture", lambda: self.inner.capture(request))

    @property
    def can_void_payments(self) -> bool:
        return callable(getattr(self.inner, "void_payment", None))

    def void_payment(self, request: CaptureRequest) -> PaymentUpdate:
        """Optional protocol method (Stripe, PayPal): release an uncaptured authorization."""
        voider = getattr(self.inner, "void_payment", None)
        if not callable(voider):
            raise NotImplementedError(f"{self.name} cannot void authorizations")
        update: PaymentUpdate = self.call("void_payment", lambda: voider(request))
        return update

    @property
    def can_save_methods(self) -> bool:
        return callable(getattr(self.inner, "charge_saved_method", None))

    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        """Optional protocol method (SavesMethods): an off-session charge, retried with the
        same idempotency key."""
        charge = getattr(self.inner, "charge_saved_method", None)
        if not callable(charge):
            raise GatewayError(
                "invalid_request", f"{self.display_name} cannot charge saved methods."
            )
        result: ChargeResult = self.call("charge_saved_method", lambda: charge(request))
        return result

    def detach_method(self, token: str) -> None:
        detach = getattr(self.inner, "detach_method", None)
        if not callable(detach):
            raise GatewayError(
                "invalid_request", f"{self.display_name} cannot remove saved methods."
            )
        self.call("detach_method", lambda: detach(token))

    def start_authentication(self, request: AuthenticationRequest) -> AuthenticationStart:
        """Optional protocol method (AuthenticatesCharges): confirm a waiting charge
        on-session, retried with the same idempotency key."""
        start = getattr(self.inner, "start_authentication", None)
        if not callable(start):
            raise GatewayError(
                "invalid_request", f"{self.display_name} cannot authenticate charges here."
            )
        result: AuthenticationStart = self.call("start_authentication", lambda: start(request))
        return result

    def create_method_setup(self, request: MethodSetupRequest) -> MethodSetupSession:
        """Optional protocol method (SetsUpMethods): a page that saves a method unpaid."""
        create = getattr(self.inner, "create_method_setup", None)
        if not callable(create):
            raise GatewayError(
                "invalid_request", f"{self.display_name} cannot save a method without a payment."
            )
        result: MethodSetupSession = self.call("create_method_setup", lambda: create(request))
        return result

    @property
    def can_list_events(self) -> bool:
        return callable(getattr(self.inner, "list_events", None))

    def list_events(self, since: datetime) -> list[VerifiedEvent]:
        """Optional protocol method (Stripe): events since a time, for reconciliation."""
        lister = getattr(self.inner, "list_events", None)
        if not callable(lister):
            return []
        return self.call("list_events", lambda: list(lister(since)))

    def retrieve_refund(self, ref: PaymentRef, gateway_refund_id: str) -> Any:
        """Optional protocol method: one refund's current state."""
        getter = getattr(self.inner, "retrieve_refund", None)
        if not callable(getter):
            raise NotImplementedError(f"{self.name} cannot retrieve refunds")
        return self.call("retrieve_refund", lambda: getter(ref, gateway_refund_id))

    @property
    def can_retrieve_refunds(self) -> bool:
        return callable(getattr(self.inner, "retrieve_refund", None))
