"""The sandbox gateway: an offline stand-in that behaves like a hosted checkout.

It has two halves, kept apart as if they ran on different servers:
- `SandboxGateway` is the adapter the core talks to (the Gateway protocol);
- `SandboxProcessor` is the "gateway's server": it owns the sandbox_* tables (in its
  own database session, never the core's transaction), runs the hosted payment page's
  scenarios, and delivers HMAC-signed webhooks over HTTP after the redirect, at least
  once, optionally twice and newest-first to exercise duplicate and out-of-order handling.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.extensions import db
from app.gateways.base import (
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    InvoiceSnapshot,
    PaymentRef,
    PaymentUpdate,
    PlanSpec,
    RefundRequest,
    RefundResult,
    RefundUpdate,
    ReturnParams,
    SavedMethod,
    SignatureError,
    SubscriptionCheckout,
    SubscriptionEvent,
    SubscriptionRef,
    SubscriptionRequest,
    SubscriptionSnapshot,
    Update,
    VerifiedEvent,
)
from app.models import (
    PaymentStatus,
    RefundStatus,
    SandboxRefund,
    SandboxSession,
    SandboxSubscription,
    SubscriptionStatus,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Kassa-Signature"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    hint: str
    challenge: bool = False


# What the customer can pick on the hosted page, like test card numbers.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("succeed", "Pay successfully", "card 4242 4242 4242 4242"),
    Scenario("decline", "Card declined", "card 4000 0000 0000 0002"),
    Scenario("insufficient_funds", "Insufficient funds", "card 4000 0000 0000 9995"),
    Scenario(
        "3ds_succeed",
        "3-D Secure challenge, then success",
        "card 4000 0027 6000 3184",
        challenge=True,
    ),
    Scenario(
        "3ds_fail", "3-D Secure challenge, then failure", "card 4000 0084 0000 1629", challenge=True
    ),
    Scenario(
        "save_then_decline",
        "Pay successfully; later charges of the saved card are declined",
        "card 4000 0000 0000 0341",
    ),
    Scenario("abandon", "Abandon checkout", "close the page and go back to the shop"),
)
SCENARIO_KEYS = {s.key for s in SCENARIOS}

# A saved sandbox method behaves like the card it was saved from (its token names the
# scenario): 4242 charges succeed, 3184 asks for authentication every time, 0341 declines.
_SAVED_BEHAVIOUR = {
    "succeed": "succeed",
    "3ds_succeed": "authenticate",
    "save_then_decline": "decline",
}
_LAST4 = {"succeed": "4242", "3ds_succeed": "3184", "save_then_decline": "0341"}


def saved_token(scenario: str) -> str:
    """A sandbox saved method's token (sbx_pm_<behaviour>_<random>)."""
    return f"sbx_pm_{_SAVED_BEHAVIOUR[scenario]}_{secrets.token_urlsafe(12)}"


def token_behaviour(token: str) -> str | None:
    parts = token.split("_")
    if len(parts) < 4 or parts[:2] != ["sbx", "pm"]:
        return None
    behaviour = parts[2]
    return behaviour if behaviour in ("succeed", "authenticate", "decline") else None


FAILURES = {
    "decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("insufficient_funds", "Your card has insufficient funds."),
    "3ds_fail": (
        "authentication_failed",
        "The card's 3-D Secure authentication failed. Try another card.",
    ),
}

_STATUS_FROM_SESSION = {
    "open": PaymentStatus.PROCESSING,
    "processing": PaymentStatus.PROCESSING,
    "authorized": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.SUCCEEDED,
    "failed": PaymentStatus.FAILED,
    "expired": PaymentStatus.EXPIRED,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
}


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(
    secret: str, body: bytes, header: str | None, tolerance: int, now: float | None = None
) -> None:
    if not header:
        raise SignatureError("missing signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    raw_ts = parts.get("t", [""])[0]
    # Unix seconds: ASCII digits, at most 12 (a 309-digit one would overflow a float below).
    if not (raw_ts.isascii() and raw_ts.isdigit() and len(raw_ts) <= 12):
        raise SignatureError("malformed signature header")
    ts = int(raw_ts)
    current = time.time() if now is None else now
    if abs(int(current) - ts) > tolerance:
        raise SignatureError("timestamp outside the tolerance (replayed or clock skew)")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("signature mismatch")


@dataclass
class SandboxProcessor:
    """The sandbox's 'server side': hosted page scenarios, refunds, webhook delivery."""

    base_url: str
    webhook_url: str
    webhook_secret: str
    deliver: bool = True
    mode: str = "once"  # or "twice_out_of_order"
    delay: float = 0.3
    # Events built while delivery is off (tests post them through the test client).
    undelivered: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    # (event id, HTTP status or 0 for a connection error) of every delivery attempt.
    deliveries: list[tuple[str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Subscriptions: None gives each period its plan's real length; a number makes a
    # period (and a trial day) pass in that many seconds.
    period_seconds: float | None = None
    # The renewal clock: a thread that renews due subscriptions (off: tests call advance()).
    clock: bool = True
    clock_tick: float = 1.0
    app: Flask | None = None  # the clock's thread reaches the database through it
    _clock_thread: threading.Thread | None = None

    def session(self) -> Session:
        # Its own session and transactions: the sandbox is "another server". Its
        # transactions write, so on SQLite they start with BEGIN IMMEDIATE (app/db.py).
        return Session(db.engine.execution_options(kassa_write=True), expire_on_commit=False)

    # -- checkout ----------------------------------------------------------------
    def create(self, request: CheckoutRequest) -> SandboxSession:
        with self.session() as s:
            existing = s.execute(
                select(SandboxSession).where(
                    SandboxSession.idempotency_key == request.idempotency_key
                )
            ).scalar_one_or_none()
            if existing is not None:
                return existing
            sid = "sbx_cs_" + secrets.token_urlsafe(18)
            row = SandboxSession(
                id=sid,
                idempotency_key=request.idempotency_key,
                amount=request.amount,
                currency=request.currency,
                description=request.description,
                customer_email=request.customer_email,
                metadata_json={
                    "order_id": request.order_id,
                    "payment_id": request.payment_id,
                    "save_payment_method": request.save_payment_method,
                },
                success_url=request.success_url.replace("{CHECKOUT_SESSION_ID}", sid),
                cancel_url=request.cancel_url,
                capture_method=request.capture_method,
                expires_at=request.expires_at,
            )
            s.add(row)
            s.commit()
            return row

    def get(self, session_id: str) -> SandboxSession | None:
        with self.session() as s:
            return s.get(SandboxSession, session_id)

    def complete(self, session_id: str, scenario: str) -> str:
        """The customer picked a scenario on the hosted page: returns where to redirect."""
        if scenario not in SCENARIO_KEYS:
            raise ValueError("unknown scenario")
        with self._lock, self.session() as s:
            row = s.get(SandboxSession, session_id, with_for_update=True)
            if row is None:
                raise LookupError(session_id)
            if row.status == "requires_action":
                if scenario not in ("3ds_succeed", "3ds_fail"):
                    raise ValueError("this charge only completes by authentication")
            elif row.status != "open":
                # Paying twice (back button, double click) changes nothing.
                return row.cancel_url if row.status == "expired" else row.success_url
            if datetime.now(UTC) > row.expires_at:
                row.status = "expired"
                events = [self._event("checkout.expired", row)]
                s.commit()
                self._send(events)
                return row.cancel_url
            events = []
            if scenario == "abandon":
                # Abandoning: what a gateway reports once the session times out.
                row.status = "expired"
                events.append(self._event("checkout.expired", row))
                target = row.cancel_url
            elif scenario in FAILURES:
                row.failure_code, row.failure_message = FAILURES[scenario]
                row.status = "failed"
                row.payment_id = row.payment_id or "sbx_pay_" + secrets.token_urlsafe(12)
                events.append(self._event("payment.processing", row))
                events.append(self._event("payment.failed", row))
                target = row.success_url
            else:
                row.payment_id = row.payment_id or "sbx_pay_" + secrets.token_urlsafe(12)
                row.card_last4 = row.card_last4 or _LAST4.get(scenario, "4242")
                if row.metadata_json.get("save_payment_method") and "saved_token" not in (
                    row.metadata_json
                ):
                    row.metadata_json = {**row.metadata_json, "saved_token": saved_token(scenario)}
                events.append(self._event("payment.processing", row))
                if row.capture_method == "manual":
                    row.status = "authorized"
                    events.append(self._event("payment.authorized", row))
                else:
                    row.status = "succeeded"
                    events.append(self._event("payment.succeeded", row))
                target = row.success_url
            # Rebuild event snapshots after the final state so each carries its own status.
            s.commit()
        self._send(events)
        return target

    def expire(self, session_id: str) -> None:
        with self.session() as s:
            row = s.get(SandboxSession, session_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox session.", http_status=404)
            if row.status in ("authorized", "succeeded"):
                # Like Stripe: a completed checkout cannot be expired.
                raise GatewayError("invalid_request", "This checkout is already paid.")
            if row.status == "open":
                row.status = "expired"
                s.commit()

    def capture(self, session_id: str) -> SandboxSession:
        with self.session() as s:
            row = s.get(SandboxSession, session_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox session.", http_status=404)
            if row.status == "authorized":
                row.status = "succeeded"
                events = [self._event("payment.succeeded", row)]
                s.commit()
                self._send(events)
            elif row.status != "succeeded":
                raise GatewayError("invalid_request", "This payment cannot be captured.")
            return row

    def refund(self, request: RefundRequest) -> SandboxRefund:
        with self._lock, self.session() as s:
            existing = s.execute(
                select(SandboxRefund).where(
                    SandboxRefund.idempotency_key == request.idempotency_key
                )
            ).scalar_one_or_none()
            if existing is not None:
                return existing
            row = s.get(SandboxSession, request.reference or "", with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox payment.", http_status=404)
            if row.status != "succeeded":
                raise GatewayError("invalid_request", "This payment has not been captured.")
            if request.amount > row.amount - row.amount_refunded:
                raise GatewayError(
                    "invalid_request", "Refund amount exceeds the amount left on the charge."
                )
            row.amount_refunded += request.amount
            refund = SandboxRefund(
                id="sbx_re_" + secrets.token_urlsafe(12),
                session_id=row.id,
                idempotency_key=request.idempotency_key,
                amount=request.amount,
                status="succeeded",
                reason=request.reason,
                metadata_json={"refund_id": request.refund_id, "payment_id": request.payment_id},
            )
            s.add(refund)
            s.flush()
            events = [self._refund_event("refund.succeeded", row, refund)]
            s.commit()
            # The API answers "pending"; the outcome comes by webhook, as with real gateways.
            refund.status = "pending"
        self._send(events)
        return refund

    # -- saved methods -------------------------------------------------------------
    def charge_saved(self, request: ChargeRequest) -> SandboxSession:
        """An off-session charge of a saved method: succeeds, declines, or waits for the
        customer to authenticate (status requires_action), as the card it came from did."""
        behaviour = token_behaviour(request.token)
        if behaviour is None:
            raise GatewayError("not_found", "No such saved sandbox method.", http_status=404)
        with self._lock, self.session() as s:
            existing = s.execute(
                select(SandboxSession).where(
                    SandboxSession.idempotency_key == request.idempotency_key
                )
            ).scalar_one_or_none()
            if existing is not None:
                if existing.status == "failed":
                    raise GatewayError(
                        existing.failure_code or "card_declined",
                        existing.failure_message or "Your card was declined.",
                        http_status=402,
                        decline_code=existing.failure_code,
                    )
                return existing
            sid = "sbx_cs_" + secrets.token_urlsafe(18)
            row = SandboxSession(
                id=sid,
                idempotency_key=request.idempotency_key,
                amount=request.amount,
                currency=request.currency,
                description=request.description,
                customer_email="",
                metadata_json={
                    "order_id": request.order_id,
                    "payment_id": request.payment_id,
                    "saved_token": request.token,
                },
                success_url=request.return_url,
                cancel_url=request.return_url,
                capture_method="automatic",
                expires_at=datetime.now(UTC) + timedelta(days=1),
                payment_id="sbx_pay_" + secrets.token_urlsafe(12),
                card_last4={"succeed": "4242", "authenticate": "3184", "decline": "0341"}[
                    behaviour
                ],
            )
            events = []
            if behaviour == "decline":
                row.status = "failed"
                row.failure_code, row.failure_message = FAILURES["decline"]
            elif behaviour == "authenticate":
                row.status = "requires_action"
                events.append(self._event("payment.requires_action", row))
            else:
                row.status = "succeeded"
                events.append(self._event("payment.succeeded", row))
            s.add(row)
            s.commit()
        self._send(events)
        if row.status == "failed":
            raise GatewayError(
                "card_declined", row.failure_message or "", http_status=402, decline_code="generic"
            )
        return row

    # -- subscriptions -------------------------------------------------------------
    def create_subscription(self, request: SubscriptionRequest) -> SandboxSubscription:
        with self.session() as s:
            existing = s.execute(
                select(SandboxSubscription).where(
                    SandboxSubscription.idempotency_key == request.idempotency_key
                )
            ).scalar_one_or_none()
            if existing is not None:
                return existing
            sid = "sbx_sub_" + secrets.token_urlsafe(18)
            period = self.period_length(request.plan.interval, request.plan.interval_count)
            row = SandboxSubscription(
                id=sid,
                idempotency_key=request.idempotency_key,
                amount=request.plan.amount,
                currency=request.plan.currency,
                description=request.plan.name,
                customer_email=request.customer_email,
                metadata_json={"subscription_id": request.subscription_id},
                success_url=request.success_url.replace("{CHECKOUT_SESSION_ID}", sid),
                cancel_url=request.cancel_url,
                period_seconds=max(1, round(period)),
                trial_seconds=round(request.trial_days * self._day_seconds()),
            )
            s.add(row)
            s.commit()
        self.start_clock()
        return row

    def _day_seconds(self) -> float:
        return self.period_seconds if self.period_seconds is not None else 86400.0

    def period_length(self, interval: str, count: int) -> float:
        if self.period_seconds is not None:
            return self.period_seconds * count
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[interval]
        return days * 86400.0 * count

    def get_subscription(self, sub_id: str) -> SandboxSubscription | None:
        with self.session() as s:
            return s.get(SandboxSubscription, sub_id)

    def subscribe(self, sub_id: str, scenario: str) -> str:
        """The customer chose what their card does on the hosted subscribe page."""
        if scenario not in SUBSCRIBE_SCENARIO_KEYS:
            raise ValueError("unknown scenario")
        now = datetime.now(UTC)
        events: list[dict[str, Any]] = []
        with self._lock, self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                raise LookupError(sub_id)
            if row.status != "incomplete":
                return row.success_url
            if scenario == "decline":
                row.latest_invoice_id = self._new_invoice_id(row)
                row.latest_invoice_status = "open"
                events.append(self._sub_event("invoice.payment_failed", row))
                s.commit()
                self._send(events)
                return row.cancel_url
            row.failures_left = 1 if scenario == "renewal_fails" else 0
            if row.trial_seconds:
                row.status = "trialing"
                row.trial_end = now + timedelta(seconds=row.trial_seconds)
                row.current_period_start, row.current_period_end = now, row.trial_end
            else:
                row.status = "active"
                row.current_period_start = now
                row.current_period_end = now + timedelta(seconds=row.period_seconds)
                self._pay_invoice(s, row)
                events.append(self._sub_event("invoice.paid", row))
            events.insert(0, self._sub_event("customer.subscription.created", row))
            s.commit()
        self._send(events)
        return row.success_url

    def _new_invoice_id(self, row: SandboxSubscription) -> str:
        row.invoices += 1
        return f"sbx_in_{row.id[8:20]}_{row.invoices}"

    def _pay_invoice(self, s: Session, row: SandboxSubscription) -> None:
        """The current period's invoice is paid: a completed 'session' (what refunds of
        the sandbox look up) carries its charge."""
        if row.latest_invoice_status != "open":
            row.latest_invoice_id = self._new_invoice_id(row)
        assert row.latest_invoice_id is not None
        s.add(
            SandboxSession(
                id=row.latest_invoice_id,
                idempotency_key=f"sbx-invoice-{row.latest_invoice_id}",
                amount=row.amount,
                currency=row.currency,
                description=row.description,
                customer_email=row.customer_email,
                metadata_json={
                    "subscription": row.id,
                    "period_start": _ts(row.current_period_start),
                    "period_end": _ts(row.current_period_end),
                },
                success_url=row.success_url,
                cancel_url=row.cancel_url,
                status="succeeded",
                payment_id="sbx_pay_" + secrets.token_urlsafe(12),
                card_last4="4242",
                expires_at=datetime.now(UTC),
            )
        )
        row.latest_invoice_status = "paid"
        row.next_payment_attempt = None
        row.attempts = 0

    def advance(self, now: datetime | None = None) -> int:
        """The gateway's clock: renew, retry or end every subscription that is due.
        Returns how many moved."""
        now = now or datetime.now(UTC)
        moved = 0
        with self.session() as s:
            due = list(
                s.execute(
                    select(SandboxSubscription.id).where(
                        SandboxSubscription.status.in_(("active", "trialing", "past_due")),
                        (SandboxSubscription.current_period_end <= now)
                        | (SandboxSubscription.next_payment_attempt <= now),
                    )
                ).scalars()
            )
        for sub_id in due:
            moved += self._advance_one(sub_id, now)
        return moved

    def _advance_one(self, sub_id: str, now: datetime) -> int:
        events: list[dict[str, Any]] = []
        with self._lock, self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                return 0
            end = row.current_period_end
            if row.status == "past_due":
                if row.next_payment_attempt is None or row.next_payment_attempt > now:
                    return 0
                self._charge(s, row, now, events)
            elif end is not None and end <= now:
                if row.cancel_at_period_end:
                    row.status = "canceled"
                    row.ended_at = end
                    events.append(self._sub_event("customer.subscription.deleted", row))
                else:
                    row.current_period_start = end
                    row.current_period_end = end + timedelta(seconds=row.period_seconds)
                    row.latest_invoice_id = self._new_invoice_id(row)
                    row.latest_invoice_status = "open"
                    self._charge(s, row, now, events)
            else:
                return 0
            s.commit()
        self._send(events)
        return 1

    def _charge(
        self, s: Session, row: SandboxSubscription, now: datetime, events: list[dict[str, Any]]
    ) -> None:
        if row.failures_left > 0:
            row.failures_left -= 1
            row.attempts += 1
            if row.attempts >= SANDBOX_RETRIES:
                row.status = "unpaid"
                row.next_payment_attempt = None
            else:
                row.status = "past_due"
                row.next_payment_attempt = now + timedelta(seconds=row.period_seconds / 4)
            events.append(self._sub_event("invoice.payment_failed", row))
            events.append(self._sub_event("customer.subscription.updated", row))
            return
        was = row.status
        row.status = "active"
        self._pay_invoice(s, row)
        events.append(self._sub_event("invoice.paid", row))
        if was != "active":
            events.append(self._sub_event("customer.subscription.updated", row))

    def fail_next_renewals(self, sub_id: str, count: int = 1) -> None:
        """Test hook and scenario: the card declines the next `count` charges."""
        with self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox subscription.", http_status=404)
            row.failures_left = count
            s.commit()

    def cancel_subscription(self, sub_id: str, *, at_period_end: bool) -> SandboxSubscription:
        events: list[dict[str, Any]] = []
        with self._lock, self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox subscription.", http_status=404)
            if row.status in ("canceled", "incomplete_expired"):
                raise GatewayError("invalid_request", "This subscription has ended.")
            now = datetime.now(UTC)
            row.canceled_at = now
            if at_period_end and row.status not in ("incomplete", "unpaid"):
                row.cancel_at_period_end = True
                events.append(self._sub_event("customer.subscription.updated", row))
            else:
                row.status = "canceled" if row.status != "incomplete" else "incomplete_expired"
                row.ended_at = now
                row.next_payment_attempt = None
                events.append(self._sub_event("customer.subscription.deleted", row))
            s.commit()
        self._send(events)
        return row

    def change_amount(
        self, sub_id: str, amount: int, currency: str, period: float
    ) -> SandboxSubscription:
        events: list[dict[str, Any]] = []
        with self._lock, self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox subscription.", http_status=404)
            if currency != row.currency:
                raise GatewayError("invalid_request", "A plan change keeps the currency.")
            row.amount, row.period_seconds = amount, max(1, round(period))
            events.append(self._sub_event("customer.subscription.updated", row))
            s.commit()
        self._send(events)
        return row

    def resume_subscription(self, sub_id: str) -> SandboxSubscription:
        events: list[dict[str, Any]] = []
        with self._lock, self.session() as s:
            row = s.get(SandboxSubscription, sub_id, with_for_update=True)
            if row is None:
                raise GatewayError("not_found", "No such sandbox subscription.", http_status=404)
            if row.status in ("canceled", "incomplete_expired"):
                raise GatewayError("invalid_request", "An ended subscription cannot resume.")
            if row.cancel_at_period_end:
                row.cancel_at_period_end = False
                row.canceled_at = None
                events.append(self._sub_event("customer.subscription.updated", row))
                s.commit()
        self._send(events)
        return row

    def start_clock(self) -> None:
        if not self.clock or self.app is None:
            return
        if self._clock_thread and self._clock_thread.is_alive():
            return
        thread = threading.Thread(target=self._run_clock, daemon=True, name="sandbox-clock")
        self._clock_thread = thread
        thread.start()

    def _run_clock(self) -> None:
        while True:
            time.sleep(self.clock_tick)
            try:
                assert self.app is not None
                with self.app.app_context():
                    self.advance()
            except Exception:  # the clock keeps going, like a gateway's scheduler
                log.exception("sandbox renewal clock failed")

    def _sub_event(self, event_type: str, row: SandboxSubscription) -> dict[str, Any]:
        # Like Stripe's events: a snapshot of the object as it was, which the core never
        # applies (it re-fetches); it only names the subscription.
        return {
            "id": "evt_sbx_" + secrets.token_urlsafe(12),
            "type": event_type,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": row.latest_invoice_id if event_type.startswith("invoice.") else row.id,
                    "object": "invoice" if event_type.startswith("invoice.") else "subscription",
                    "subscription": row.id,
                    "status": row.status,
                    "metadata": dict(row.metadata_json),
                }
            },
        }

    def snapshot(self, row: SandboxSubscription) -> SubscriptionSnapshot:
        with self.session() as s:
            paid = s.execute(
                select(SandboxSession)
                .where(SandboxSession.idempotency_key.like(f"sbx-invoice-sbx_in_{row.id[8:20]}_%"))
                .order_by(SandboxSession.created_at)
            ).scalars()
            invoices = tuple(
                InvoiceSnapshot(
                    invoice_id=inv.id,
                    amount=inv.amount,
                    currency=inv.currency,
                    gateway_payment_id=inv.payment_id,
                    reference=inv.id,
                    period_start=_from_ts(inv.metadata_json.get("period_start")),
                    period_end=_from_ts(inv.metadata_json.get("period_end")),
                    paid_at=inv.created_at,
                )
                for inv in paid
                if inv.metadata_json.get("subscription") == row.id
            )
        return SubscriptionSnapshot(
            ref=SubscriptionRef(
                subscription_id=row.metadata_json.get("subscription_id"),
                reference=row.id,
                gateway_subscription_id=row.id,
            ),
            status=SubscriptionStatus(row.status),
            gateway_status=row.status,
            customer_email=row.customer_email,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            cancel_at_period_end=row.cancel_at_period_end,
            canceled_at=row.canceled_at,
            ended_at=row.ended_at,
            trial_end=row.trial_end,
            latest_invoice_id=row.latest_invoice_id,
            latest_invoice_status=row.latest_invoice_status,
            next_payment_attempt=row.next_payment_attempt,
            paid_invoices=invoices,
        )

    # -- webhooks ----------------------------------------------------------------
    def _event(self, event_type: str, row: SandboxSession) -> dict[str, Any]:
        status = {
            "payment.processing": "processing",
            "payment.requires_action": "requires_action",
            "payment.succeeded": "succeeded",
            "payment.authorized": "authorized",
            "payment.failed": "failed",
            "checkout.expired": "expired",
        }[event_type]
        return {
            "id": "evt_sbx_" + secrets.token_urlsafe(12),
            "type": event_type,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": row.id,
                    "object": "checkout.session",
                    "status": status,
                    "amount": row.amount,
                    "currency": row.currency,
                    "payment_id": row.payment_id,
                    "metadata": dict(row.metadata_json),
                    "failure_code": row.failure_code if status == "failed" else None,
                    "failure_message": row.failure_message if status == "failed" else None,
                    "card": {"brand": "visa", "last4": row.card_last4} if row.card_last4 else None,
                    "capture_method": row.capture_method,
                    "saved_method": _saved_method_data(row) if status == "succeeded" else None,
                }
            },
        }

    def _refund_event(
        self, event_type: str, row: SandboxSession, refund: SandboxRefund
    ) -> dict[str, Any]:
        return {
            "id": "evt_sbx_" + secrets.token_urlsafe(12),
            "type": event_type,
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": refund.id,
                    "object": "refund",
                    "status": "succeeded",
                    "amount": refund.amount,
                    "currency": row.currency,
                    "session": row.id,
                    "payment_id": row.payment_id,
                    "metadata": dict(refund.metadata_json or {}),
                    "session_metadata": dict(row.metadata_json),
                }
            },
        }

    def signed(
        self, event: dict[str, Any], timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event, separators=(",", ":")).encode()
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.webhook_secret, body, timestamp),
        }

    def _send(self, events: list[dict[str, Any]]) -> None:
        if self.mode == "twice_out_of_order":
            plan = list(reversed(events)) + list(events)
        else:
            plan = list(events)
        if not self.deliver:
            self.undelivered.extend(self.signed(e) for e in plan)
            return
        thread = threading.Thread(
            target=self._deliver_all, args=(plan,), daemon=True, name="sandbox-webhooks"
        )
        thread.start()

    def _deliver_all(self, plan: list[dict[str, Any]]) -> None:
        time.sleep(self.delay)
        for event in plan:
            self._deliver_one(event)

    def _deliver_one(self, event: dict[str, Any]) -> None:
        # At least once: retry with backoff until a 2xx, like a real gateway (bounded here).
        for attempt in range(6):
            body, headers = self.signed(event)  # fresh timestamp per attempt
            try:
                response = requests.post(self.webhook_url, data=body, headers=headers, timeout=5)
                self.deliveries.append((event["id"], response.status_code))
                if 200 <= response.status_code < 300:
                    return
                log.warning("sandbox webhook answered %s", response.status_code)
            except requests.RequestException as exc:  # a gateway keeps trying
                self.deliveries.append((event["id"], 0))
                log.warning("sandbox webhook delivery failed: %s", type(exc).__name__)
            time.sleep(min(8.0, 0.25 * 2**attempt))


def _saved_method_data(row: SandboxSession) -> dict[str, Any] | None:
    token = row.metadata_json.get("saved_token")
    if not token:
        return None
    return {
        "id": token,
        "brand": "visa",
        "last4": row.card_last4,
        "exp_month": 12,
        "exp_year": datetime.now(UTC).year + 3,
    }


def _saved_method(data: Mapping[str, Any] | None) -> SavedMethod | None:
    if not data:
        return None
    return SavedMethod(
        token=str(data["id"]),
        brand=data.get("brand"),
        last4=data.get("last4"),
        exp_month=data.get("exp_month"),
        exp_year=data.get("exp_year"),
    )


SUBSCRIBE_SCENARIOS = [
    Scenario("succeed", "Pay and renew", "Every renewal is paid."),
    Scenario(
        "renewal_fails",
        "Pay, then decline one renewal",
        "The first renewal is declined; the retry succeeds.",
    ),
    Scenario("decline", "Decline", "The first payment is declined."),
]
SUBSCRIBE_SCENARIO_KEYS = {s.key for s in SUBSCRIBE_SCENARIOS}
# Declined charges in a row before a subscription is unpaid (Stripe's default is 4 tries).
SANDBOX_RETRIES = 4


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _from_ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value is not None else None


class SandboxGateway:
    """The adapter the core talks to."""

    name = "sandbox"
    display_name = "Sandbox (test payments)"

    def __init__(self, processor: SandboxProcessor, tolerance: int = 300) -> None:
        self.processor = processor
        self.tolerance = tolerance

    @classmethod
    def from_app(cls, app: Flask) -> SandboxGateway:
        cfg = app.config
        secret = (
            cfg.get("SANDBOX_WEBHOOK_SECRET")
            or hmac.new(
                str(cfg["SECRET_KEY"]).encode(), b"kassa-sandbox-webhooks", hashlib.sha256
            ).hexdigest()
        )
        base = cfg["PUBLIC_BASE_URL"]
        processor = SandboxProcessor(
            base_url=base,
            webhook_url=cfg.get("SANDBOX_WEBHOOK_URL") or f"{base}/webhooks/sandbox",
            webhook_secret=secret,
            deliver=bool(cfg.get("SANDBOX_DELIVER_WEBHOOKS", True)),
            mode=cfg.get("SANDBOX_WEBHOOK_MODE") or "once",
            delay=float(cfg.get("SANDBOX_WEBHOOK_DELAY_SECONDS", 0.3)),
            period_seconds=(
                float(cfg["SANDBOX_PERIOD_SECONDS"]) if cfg.get("SANDBOX_PERIOD_SECONDS") else None
            ),
            clock=bool(cfg.get("SANDBOX_RENEWAL_CLOCK", True)),
            app=app,
        )
        return cls(processor, int(cfg.get("WEBHOOK_TOLERANCE_SECONDS", 300)))

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        row = self.processor.create(request)
        return CheckoutSession(
            reference=row.id,
            redirect_url=f"{self.processor.base_url}/sandbox/pay/{row.id}",
            expires_at=row.expires_at,
        )

    def _update_from_row(self, row: SandboxSession) -> PaymentUpdate:
        return PaymentUpdate(
            ref=PaymentRef(payment_id=row.metadata_json.get("payment_id"), reference=row.id),
            status=_STATUS_FROM_SESSION[row.status],
            amount=row.amount,
            currency=row.currency,
            gateway_payment_id=row.payment_id,
            failure_code=row.failure_code,
            failure_message=row.failure_message,
            payment_method={"brand": "visa", "last4": row.card_last4} if row.card_last4 else None,
            saved_method=_saved_method(_saved_method_data(row))
            if row.status == "succeeded"
            else None,
        )

    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        row = self.processor.charge_saved(request)
        action = None
        if row.status == "requires_action":
            action = (
                f"{self.processor.base_url}/sandbox/pay/{row.id}/challenge?scenario=3ds_succeed"
            )
        return ChargeResult(update=self._update_from_row(row), reference=row.id, action_url=action)

    def detach_method(self, token: str) -> None:
        if token_behaviour(token) is None:
            raise GatewayError("not_found", "No such saved sandbox method.", http_status=404)

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        row = self.processor.get(ref.reference or "")
        if row is None:
            raise GatewayError("not_found", "No such sandbox session.", http_status=404)
        return self._update_from_row(row)

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        # The sandbox confirms by webhook, like an asynchronous gateway: the return page
        # shows "confirming" until it lands.
        return None

    def cancel_checkout(self, ref: PaymentRef) -> None:
        self.processor.expire(ref.reference or "")

    def refund(self, request: RefundRequest) -> RefundResult:
        row = self.processor.refund(request)
        return RefundResult(gateway_refund_id=row.id, status=RefundStatus(row.status))

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        return self._update_from_row(self.processor.capture(request.reference or ""))

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        verify_signature(
            self.processor.webhook_secret, body, headers.get(SIGNATURE_HEADER), self.tolerance
        )
        try:
            payload = json.loads(body)
            return VerifiedEvent(str(payload["id"]), str(payload["type"]), payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureError("signed body is not a sandbox event") from exc

    def interpret(self, event: VerifiedEvent) -> list[Update]:
        obj = event.payload.get("data", {}).get("object", {})
        if event.event_type.startswith("refund."):
            meta = obj.get("session_metadata") or {}
            status = {
                "refund.succeeded": RefundStatus.SUCCEEDED,
                "refund.failed": RefundStatus.FAILED,
            }.get(event.event_type)
            if status is None:
                return []
            return [
                RefundUpdate(
                    ref=PaymentRef(payment_id=meta.get("payment_id"), reference=obj.get("session")),
                    gateway_refund_id=obj["id"],
                    amount=int(obj["amount"]),
                    currency=str(obj["currency"]),
                    status=status,
                    refund_id=(obj.get("metadata") or {}).get("refund_id"),
                )
            ]
        payment_status = {
            "payment.processing": PaymentStatus.PROCESSING,
            "payment.requires_action": PaymentStatus.REQUIRES_ACTION,
            "payment.authorized": PaymentStatus.AUTHORIZED,
            "payment.succeeded": PaymentStatus.SUCCEEDED,
            "payment.failed": PaymentStatus.FAILED,
            "checkout.expired": PaymentStatus.EXPIRED,
        }.get(event.event_type)
        if payment_status is None:
            return []
        meta = obj.get("metadata") or {}
        card = obj.get("card")
        deadline = None
        if payment_status == PaymentStatus.AUTHORIZED:
            deadline = datetime.fromtimestamp(
                event.payload.get("created", time.time()), UTC
            ) + timedelta(days=7)
        return [
            PaymentUpdate(
                ref=PaymentRef(payment_id=meta.get("payment_id"), reference=obj.get("id")),
                status=payment_status,
                amount=obj.get("amount"),
                currency=obj.get("currency"),
                gateway_payment_id=obj.get("payment_id"),
                failure_code=obj.get("failure_code"),
                failure_message=obj.get("failure_message"),
                payment_method={"brand": card["brand"], "last4": card["last4"]} if card else None,
                capture_deadline=deadline,
                saved_method=_saved_method(obj.get("saved_method")),
            )
        ]

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload  # the sandbox sends no secrets

    # -- subscriptions (app/gateways/base.Subscriptions) -------------------------------
    def create_subscription(self, request: SubscriptionRequest) -> SubscriptionCheckout:
        row = self.processor.create_subscription(request)
        return SubscriptionCheckout(
            reference=row.id,
            redirect_url=f"{self.processor.base_url}/sandbox/subscribe/{row.id}",
            gateway_subscription_id=row.id,
        )

    def _row(self, ref: SubscriptionRef) -> SandboxSubscription:
        row = self.processor.get_subscription(ref.gateway_subscription_id or ref.reference or "")
        if row is None:
            raise GatewayError("not_found", "No such sandbox subscription.", http_status=404)
        return row

    def retrieve_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        self.processor.start_clock()  # after a restart, the first look starts renewals again
        return self.processor.snapshot(self._row(ref))

    def cancel_subscription(
        self, ref: SubscriptionRef, *, at_period_end: bool
    ) -> SubscriptionSnapshot:
        row = self.processor.cancel_subscription(self._row(ref).id, at_period_end=at_period_end)
        return self.processor.snapshot(row)

    def resume_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        return self.processor.snapshot(self.processor.resume_subscription(self._row(ref).id))

    def change_plan(self, ref: SubscriptionRef, plan: PlanSpec) -> SubscriptionSnapshot:
        """The next renewal bills the new plan's amount (the sandbox does not prorate)."""
        row = self.processor.change_amount(
            self._row(ref).id,
            plan.amount,
            plan.currency,
            self.processor.period_length(plan.interval, plan.interval_count),
        )
        return self.processor.snapshot(row)

    def billing_portal_url(self, ref: SubscriptionRef, return_url: str) -> str:
        return f"{self.processor.base_url}/sandbox/billing/{self._row(ref).id}"

    def subscription_events(self, event: VerifiedEvent) -> list[SubscriptionEvent]:
        if not event.event_type.startswith(("customer.subscription.", "invoice.")):
            return []
        obj = event.payload.get("data", {}).get("object", {})
        sub_id = obj.get("subscription")
        if not sub_id:
            return []
        meta = obj.get("metadata") or {}
        ref = SubscriptionRef(
            subscription_id=meta.get("subscription_id"), gateway_subscription_id=str(sub_id)
        )
        return [SubscriptionEvent(ref=ref, event_type=event.event_type)]
