"""Reconciliation and expiry: make our records agree with the gateway's.

Webhooks get lost and processes die between a gateway call and our commit. Reconcile
(`flask --app wsgi reconcile`, and a periodic job) walks the records that may be behind:

- payments still created (crash before the session was recorded: the checkout is opened
  again with the same idempotency key, so the gateway answers with the same session),
- payments processing or authorized (the gateway is asked; its answer goes through the
  state machine; a capture that was never recorded shows up here as succeeded),
- refunds pending (re-sent with their own idempotency key while the gateway still
  remembers it, or retrieved when the adapter can),
- and, for gateways that can list their events (Stripe), recent events go through the
  inbox's insert-or-ignore path, so only the ones never delivered are applied.

Expiry closes checkouts whose window has passed: the session is expired at the gateway
first (so it can no longer be paid), the gateway's final word is applied, and whatever is
still open becomes expired, which expires the order and releases its stock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from flask import current_app, has_request_context
from sqlalchemy import and_, func, or_, select

from app import jobs
from app.extensions import db
from app.gateways import registry
from app.gateways.base import GatewayError, ListsEvents, PaymentRef, RetrievesRefunds
from app.models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus
from app.models.base import utcnow
from app.models.enums import PAYABLE, STILL_OPEN
from app.payments import state
from app.payments.audit import Actor
from app.payments.errors import KassaError
from app.payments.gateway_calls import gateway_errors
from app.payments.uow import lock, unit_of_work
from app.payments.updates import apply_update_now

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

RECONCILER = Actor("job", "reconcile")
EXPIRER = Actor("job", "expire")


@dataclass
class Report:
    """What one run looked at and what it changed."""

    checked_payments: int = 0
    checked_refunds: int = 0
    checked_subscriptions: int = 0
    events_listed: int = 0
    events_new: int = 0
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = (
            f"Checked {self.checked_payments} payment(s) and {self.checked_refunds} "
            f"refund(s), {self.checked_subscriptions} subscription(s); {self.events_new} new of {self.events_listed} listed event(s); "
            f"{len(self.changes)} change(s), {len(self.errors)} error(s)."
        )
        return [
            head,
            *(f"  changed: {c}" for c in self.changes),
            *(f"  error: {e}" for e in self.errors),
        ]


def _grace_cutoff() -> timedelta:
    return timedelta(seconds=int(current_app.config.get("RECONCILE_GRACE_SECONDS", 120)))


def _in_request_context(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """open_checkout builds return URLs with url_for: give jobs and the CLI a request
    context on the public base URL, so the rebuilt request is identical to the first one."""
    if has_request_context():
        return fn(*args, **kwargs)
    with current_app.test_request_context(base_url=current_app.config["PUBLIC_BASE_URL"]):
        return fn(*args, **kwargs)


def _payment_state(payment_id: int) -> tuple[str, str]:
    row = db.session.execute(
        select(Payment.status, Order.status)
        .join(Order, Payment.order_id == Order.id)
        .where(Payment.id == payment_id)
    ).one()
    db.session.rollback()
    return str(row[0]), str(row[1])


def reconcile_payment(payment_id: int, report: Report) -> None:
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        return
    public_id, before = payment.public_id, _payment_state(payment_id)
    payment = db.session.get(Payment, payment_id)
    assert payment is not None
    report.checked_payments += 1
    try:
        if payment.status == PaymentStatus.CREATED and not payment.gateway_reference:
            if payment.expires_at and payment.expires_at <= utcnow():
                # Its session (if the gateway made one) expires with our window: it can no
                # longer be paid, and a late payment would still be applied (money wins).
                _expire_payment(payment_id, EXPIRER, "never opened; window passed")
            else:
                from app.payments.checkout import open_checkout

                # Same idempotency key: the gateway answers with the session it made
                # before we crashed, or makes the one we never asked for.
                _in_request_context(open_checkout, payment_id, RECONCILER)
        else:
            gateway = registry.get_gateway(payment.gateway)
            update = gateway.retrieve(
                PaymentRef(payment.public_id, payment.gateway_reference, payment.gateway_payment_id)
            )
            apply_update_now(payment.gateway, update, RECONCILER, source="reconcile")
    except Exception as exc:  # one bad record must not stop the run
        db.session.rollback()
        report.errors.append(f"payment {public_id}: {getattr(exc, 'message', exc)}")
        log.exception("reconcile payment %s failed", public_id)
        return
    after = _payment_state(payment_id)
    if after != before:
        report.changes.append(
            f"payment {public_id}: {before[0]} → {after[0]} (order {before[1]} → {after[1]})"
        )


def reconcile_refund(refund_id: int, report: Report) -> None:
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        return
    public_id, before = refund.public_id, refund.status
    report.checked_refunds += 1
    gateway = registry.get_gateway(refund.gateway)
    max_age = timedelta(hours=int(current_app.config.get("REFUND_RESEND_MAX_HOURS", 23)))
    try:
        if (
            refund.gateway_refund_id
            and getattr(gateway, "can_retrieve_refunds", False)
            and isinstance(gateway, RetrievesRefunds)
        ):
            payment = refund.payment
            update = gateway.retrieve_refund(
                PaymentRef(
                    payment.public_id, payment.gateway_reference, payment.gateway_payment_id
                ),
                refund.gateway_refund_id,
            )
            apply_update_now(refund.gateway, update, RECONCILER, source="reconcile")
        elif refund.created_at > utcnow() - max_age:
            from app.payments.refunds import send_refund

            # Same idempotency key: the gateway returns the refund it already made.
            send_refund(refund_id, RECONCILER)
        else:
            report.errors.append(
                f"refund {public_id}: pending for over {max_age}; "
                "check it in the gateway's dashboard"
            )
            return
    except Exception as exc:
        db.session.rollback()
        report.errors.append(f"refund {public_id}: {getattr(exc, 'message', exc)}")
        log.exception("reconcile refund %s failed", public_id)
        return
    db.session.expire_all()
    after = db.session.execute(select(Refund.status).where(Refund.id == refund_id)).scalar_one()
    db.session.rollback()
    if after != before:
        report.changes.append(f"refund {public_id}: {before} → {after}")


def pull_events(report: Report) -> None:
    """Gateways that can list events: store any we never received (duplicates ignored)."""
    from app.payments import events

    since = utcnow() - timedelta(
        hours=int(current_app.config.get("RECONCILE_EVENTS_LOOKBACK_HOURS", 72))
    )
    for name, gateway in registry.gateways().items():
        if not getattr(gateway, "can_list_events", False) or not isinstance(gateway, ListsEvents):
            continue
        try:
            listed = gateway.list_events(since)
        except GatewayError as exc:
            report.errors.append(f"{name} events: {exc.message}")
            continue
        report.events_listed += len(listed)
        for event in listed:
            if events.store(name, event) is not None:
                report.events_new += 1
                report.changes.append(
                    f"{name} event {event.event_id} ({event.event_type}) "
                    "was never delivered; applied"
                )


def reconcile_subscriptions(report: Report, limit: int = 500) -> None:
    """Open subscriptions re-fetched from their gateway: a renewal, a failure or a portal
    cancellation whose event never came is mirrored now (and its paid periods recorded)."""
    from app.payments import subscriptions

    public_ids = subscriptions.open_subscription_ids(limit)
    db.session.rollback()
    for public_id in public_ids:
        report.checked_subscriptions += 1
        before = _subscription_state(public_id)
        try:
            subscriptions.sync(public_id, RECONCILER, reason="reconcile")
        except KassaError as exc:
            report.errors.append(f"subscription {public_id}: {exc.message}")
            continue
        after = _subscription_state(public_id)
        if after != before:
            report.changes.append(f"subscription {public_id}: {before} -> {after}")


def _subscription_state(public_id: str) -> str:
    from app.models import Subscription

    row = db.session.execute(
        select(
            Subscription.status, Subscription.current_period_end, Subscription.cancel_at_period_end
        ).where(Subscription.public_id == public_id)
    ).one()
    db.session.rollback()
    end = row[1].isoformat() if row[1] else "-"
    return f"{row[0]} until {end}{' (canceling)' if row[2] else ''}"


def reconcile(limit: int = 1000) -> Report:
    """One pass over everything that may be behind (oldest first, at most `limit` payments
    and `limit` refunds, so one run stays bounded). Safe to run at any time, repeatedly."""
    report = Report()
    pull_events(report)
    cutoff = utcnow() - _grace_cutoff()
    payment_ids = (
        db.session.execute(
            select(Payment.id)
            .where(
                Payment.status.in_(STILL_OPEN),
                Payment.updated_at <= cutoff,
            )
            .order_by(Payment.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    refund_ids = (
        db.session.execute(
            select(Refund.id)
            .where(Refund.status == RefundStatus.PENDING, Refund.updated_at <= cutoff)
            .order_by(Refund.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
    db.session.rollback()
    for payment_id in payment_ids:
        reconcile_payment(payment_id, report)
    for refund_id in refund_ids:
        reconcile_refund(refund_id, report)
    reconcile_subscriptions(report, limit)
    for line in report.lines():
        log.info("reconcile: %s", line.strip())
    return report


@jobs.task("payments.reconcile")
def reconcile_job() -> list[str]:
    return reconcile().lines()


# --- expiry ---------------------------------------------------------------------------


def _expire_payment(payment_id: int, actor: Actor, reason: str) -> None:
    with unit_of_work():
        payment = lock(Payment, id=payment_id)
        if payment is not None and payment.status in PAYABLE:
            state.transition_payment(payment, PaymentStatus.EXPIRED, actor, reason=reason)


def expire_order(order_id: int) -> bool:
    """Close every open attempt of an overdue order at the gateway, then expire what is
    still open (the order follows and releases its stock). True if the order expired."""
    order = db.session.get(Order, order_id)
    if order is None or order.status != OrderStatus.PENDING:
        return False
    attempts = [
        (p.id, p.gateway, p.public_id, p.gateway_reference, p.gateway_payment_id)
        for p in order.payments
        if p.status in PAYABLE
    ]
    db.session.rollback()
    for payment_id, gateway_name, public_id, reference, gateway_payment_id in attempts:
        if reference:
            gateway = registry.get_gateway(gateway_name)
            ref = PaymentRef(public_id, reference, gateway_payment_id)
            with gateway_errors(
                (Payment, payment_id), EXPIRER, "payment.expire_failed", raises=False
            ) as call:
                try:
                    gateway.cancel_checkout(ref)
                finally:
                    # Its final word either way: a payment completed just before the close
                    # (the gateway then refuses to expire it) is applied as paid.
                    apply_update_now(gateway_name, gateway.retrieve(ref), EXPIRER, source="expiry")
            if call.error is not None:
                # The gateway is down or refused: never expire what we could not close;
                # the next run or a webhook decides.
                continue
        _expire_payment(payment_id, EXPIRER, "checkout window passed")
    with unit_of_work():
        order = lock(Order, id=order_id)
        if order is None or order.status != OrderStatus.PENDING:
            return order is not None and order.status == OrderStatus.EXPIRED
        if any(p.status in PAYABLE for p in order.payments):
            return False  # an attempt we could not close: try again next run
        if not order.payments:
            # No attempt was ever made: expire the order itself.
            state.transition_order(order, EXPIRER, OrderStatus.EXPIRED)
        else:
            state.transition_order(order, EXPIRER)
        return order.status == OrderStatus.EXPIRED


@dataclass(frozen=True)
class ExpiryRun:
    """One expiry run: orders expired, and overdue orders still pending when it ended
    (ones whose gateway could not close the checkout, or ones a stopped run never reached)."""

    expired: int
    left: int
    stopped: bool  # the run ran out of time before it had looked at every due order

    def lines(self) -> list[str]:
        lines = [f"Expired {self.expired} order(s)."]
        if self.left:
            why = "the run stopped at its time limit" if self.stopped else "not closed yet"
            lines.append(
                f"{self.left} overdue order(s) still pending ({why}); the next run goes on."
            )
        return lines


def _due() -> Any:
    return (
        Order.status == OrderStatus.PENDING,
        Order.expires_at <= utcnow(),
        # Authorized money waits for capture, not for the window.
        ~Order.payments.any(Payment.status == PaymentStatus.AUTHORIZED),
    )


def expire_due(batch: int = 200, max_seconds: float | None = None) -> ExpiryRun:
    """Expire every due order, `batch` at a time (each batch one short read), until none
    is left or `max_seconds` have gone by (then what is left is reported)."""
    started = time.monotonic()
    expired = 0
    stopped = False
    after: tuple[Any, int] | None = None  # keyset: each run looks at every due order once
    while True:
        query = select(Order.id, Order.expires_at).where(*_due())
        if after is not None:
            query = query.where(
                or_(
                    Order.expires_at > after[0],
                    and_(Order.expires_at == after[0], Order.id > after[1]),
                )
            )
        rows = db.session.execute(query.order_by(Order.expires_at, Order.id).limit(batch)).all()
        db.session.rollback()
        if not rows:
            break
        for order_id, expires_at in rows:
            after = (expires_at, order_id)
            try:
                expired += expire_order(order_id)
            except Exception:
                db.session.rollback()
                log.exception("expiring order %s failed", order_id)
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                stopped = True
                break
        if stopped or len(rows) < batch:
            break
    left = db.session.execute(select(func.count(Order.id)).where(*_due())).scalar_one()
    db.session.rollback()
    run = ExpiryRun(expired=expired, left=int(left), stopped=stopped)
    if run.left:
        log.warning("expiry: %s", " ".join(run.lines()))
    return run


@jobs.task("checkouts.expire")
def expire_overdue(batch: int = 200) -> int:
    """Periodic: expire every pending order whose checkout window has passed, in batches,
    within the task's interval (EXPIRE_INTERVAL_SECONDS) so runs never pile up."""
    budget = float(current_app.config.get("EXPIRE_INTERVAL_SECONDS") or 60) * 0.8
    return expire_due(batch, max_seconds=budget).expired
