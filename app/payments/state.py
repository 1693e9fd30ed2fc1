"""The payment, order, refund and dispute state machines.

Gateways deliver events at least once and in any order, so every table here is
monotonic: a state can only move "forward", repeated events are duplicates and
older news is stale. Because the order is total, the final state after any set of
events is the same whatever order they arrived in. One exception is deliberate:
money beats everything — a payment that failed or expired and later turns out to
have been captured becomes succeeded (the money was taken; the merchant must see it).

One transition function per entity: transition_payment, transition_order,
transition_refund, transition_dispute, transition_subscription. Each is called inside a unit of work with the row
locked (or, for opening a payment attempt, with the row not read at all: the move is then
stored as one compare-and-set, app/payments/store.move_payment), and writes its audit entry
in that same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect

from app.models import (
    Dispute,
    DisputeStatus,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
)
from app.models.base import utcnow
from app.models.enums import CAPTURED, ORDER_UNPAID_ENDS, STILL_OPEN, UNPAID_ENDS
from app.payments import audit, outbox, store
from app.payments.audit import Actor
from app.payments.uow import lock

if TYPE_CHECKING:
    from app.gateways.base import SubscriptionSnapshot

P = PaymentStatus

# current state -> states a gateway event may move it to
PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.CREATED: frozenset(
        {
            P.PROCESSING,
            P.REQUIRES_ACTION,
            P.FAILED,
            P.EXPIRED,
            P.CANCELED,
            P.AUTHORIZED,
            P.SUCCEEDED,
        }
    ),
    P.PROCESSING: frozenset(
        {P.REQUIRES_ACTION, P.FAILED, P.EXPIRED, P.CANCELED, P.AUTHORIZED, P.SUCCEEDED}
    ),
    # A charge of a saved method waiting for the customer to authenticate; a later
    # "processing" report is older news (the table only moves forward).
    P.REQUIRES_ACTION: frozenset({P.FAILED, P.EXPIRED, P.CANCELED, P.AUTHORIZED, P.SUCCEEDED}),
    # A declined attempt whose checkout then closes is expired; late money still wins.
    P.FAILED: frozenset({P.EXPIRED, P.CANCELED, P.AUTHORIZED, P.SUCCEEDED}),
    P.EXPIRED: frozenset({P.CANCELED, P.AUTHORIZED, P.SUCCEEDED}),
    P.CANCELED: frozenset({P.AUTHORIZED, P.SUCCEEDED}),
    # Only an authorization's own end (voided: canceled; lapsed: expired) leaves it
    # unpaid; a checkout's cancel or expiry is older news (see AUTHORIZATION_END_RANK).
    P.AUTHORIZED: frozenset({P.SUCCEEDED, P.CANCELED, P.EXPIRED}),
    P.SUCCEEDED: frozenset(),
    P.PARTIALLY_REFUNDED: frozenset(),
    P.REFUNDED: frozenset(),
}

# The order in which gateway news supersedes older news (used to tell stale from invalid).
PAYMENT_RANK: dict[PaymentStatus, int] = {
    P.CREATED: 0,
    P.PROCESSING: 1,
    P.REQUIRES_ACTION: 2,
    P.FAILED: 3,
    P.EXPIRED: 4,
    P.CANCELED: 5,
    P.AUTHORIZED: 6,
    P.SUCCEEDED: 7,
    P.PARTIALLY_REFUNDED: 7,
    P.REFUNDED: 7,
}

# An authorization that ended is news from after the authorization: it ranks above it
# (and below money: a capture that still lands wins). Stored as canceled (voided, by the
# merchant or the gateway) or expired (lapsed), with authorized_at set: that pair is how
# a stored payment says its authorization ended. A void outranks a lapse.
AUTHORIZATION_END_RANK: dict[PaymentStatus, float] = {P.EXPIRED: 6.3, P.CANCELED: 6.6}

# Moves the merchant's systems are told about (app/payments/outbox.py); a capture is
# told as order.paid.
PAYMENT_EVENTS = {
    P.FAILED: outbox.EventType.PAYMENT_FAILED,
    P.AUTHORIZED: outbox.EventType.PAYMENT_AUTHORIZED,
    P.REQUIRES_ACTION: outbox.EventType.PAYMENT_REQUIRES_ACTION,
}


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the payment is already in that state
    STALE = "stale"  # older news than what we know
    INVALID = "invalid"  # not a move the table allows (recorded, never applied)


def payment_outcome(
    current: PaymentStatus,
    target: PaymentStatus,
    *,
    current_ended: bool = False,
    target_ended: bool = False,
) -> Outcome:
    """Classify a gateway-reported status against the current one (pure; table-tested).

    `target_ended`: the report is an authorization's end (canceled = voided, expired =
    lapsed); `current_ended`: the payment's canceled/expired state is one. Those rank
    above authorized (AUTHORIZATION_END_RANK), so every delivery order ends the same."""
    if target in (P.PARTIALLY_REFUNDED, P.REFUNDED):
        return Outcome.INVALID  # refund states follow refunds, never a status report
    effective = P.SUCCEEDED if current in CAPTURED else current
    current_ended = current_ended and effective in AUTHORIZATION_END_RANK
    target_ended = target_ended and target in AUTHORIZATION_END_RANK
    if current_ended or target_ended:
        before = _rank(effective, current_ended)
        after = _rank(target, target_ended)
        if after == before:
            return Outcome.DUPLICATE
        return Outcome.APPLIED if after > before else Outcome.STALE
    if effective == P.AUTHORIZED and target in AUTHORIZATION_END_RANK:
        return Outcome.STALE  # the checkout's cancel or expiry, from before the authorization
    if target == effective:
        return Outcome.DUPLICATE
    if target in PAYMENT_TRANSITIONS[effective]:
        return Outcome.APPLIED
    if PAYMENT_RANK[target] < PAYMENT_RANK[effective]:
        return Outcome.STALE
    return Outcome.INVALID


def _rank(status: PaymentStatus, ended: bool) -> float:
    return AUTHORIZATION_END_RANK[status] if ended else PAYMENT_RANK[status]


def _authorization_ended(payment: Payment) -> bool:
    """The payment's canceled/expired state is its authorization's end (voided, lapsed)."""
    return payment.status in AUTHORIZATION_END_RANK and payment.authorized_at is not None


def refund_totals_outcome(
    current: PaymentStatus, target: PaymentStatus, amount_changed: bool
) -> Outcome:
    """Classify a move caused by the payment's refund totals (pure): only captured money
    moves between succeeded, partially refunded and refunded."""
    if current not in CAPTURED or target not in CAPTURED:
        return Outcome.INVALID
    if target == current and not amount_changed:
        return Outcome.DUPLICATE
    return Outcome.APPLIED


def _moves_by_compare_and_set(expected: PaymentStatus, target: PaymentStatus) -> bool:
    """Moves between open states, where nothing else follows (no timestamps, the order
    stays pending): stored as one compare-and-set, without loading the payment first."""
    return (
        expected in STILL_OPEN
        and target in STILL_OPEN - {P.AUTHORIZED}
        and target not in PAYMENT_EVENTS  # a move that is told writes its outbox row
        and payment_outcome(expected, target) is Outcome.APPLIED
    )


def transition_payment(
    payment: Payment,
    target: PaymentStatus,
    actor: Actor,
    *,
    reason: str,
    details: dict[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    only_from: PaymentStatus | None = None,
    amount_refunded: int | None = None,
    authorization_ended: bool = False,
) -> Outcome:
    """The one place a payment's status changes: because a gateway said so, or (with
    `amount_refunded`, the sum of its succeeded refunds) because its refunds did.

    `values` are set on the payment with the move. `only_from` names the one state the
    move is meant from (opening a checkout: created -> processing); from any other state
    only the values are set (a webhook got there first and its news stands). With it, a
    payment whose state is not loaded (app/payments/uow.unloaded, or expired by a commit)
    is moved by one compare-and-set with its audit entry (app/payments/store.move_payment),
    the checkout's hot path; only if that finds another state is the row locked and read.
    """
    info = {"reason": reason, **(details or {})}
    if (
        only_from is not None
        and "status" in inspect(payment).unloaded
        and _moves_by_compare_and_set(only_from, target)
    ):
        entry = audit.row(
            actor,
            "payment.status_changed",
            "payment",
            "",
            from_state=only_from,
            to_state=target,
            details=info,
        )
        if store.move_payment(payment.id, only_from, target, values or {}, entry):
            return Outcome.APPLIED
        locked = lock(Payment, id=payment.id)  # refreshes this very object
        assert locked is payment
    for key, value in (values or {}).items():
        setattr(payment, key, value)
    current = PaymentStatus(payment.status)
    if only_from is not None and current != only_from:
        return payment_outcome(current, target)
    if amount_refunded is not None:
        return _move_by_refunds(payment, current, target, amount_refunded, actor)
    ended_before = _authorization_ended(payment)
    ended = authorization_ended and target in AUTHORIZATION_END_RANK
    if ended:
        info["authorization_ended"] = "voided" if target == P.CANCELED else "lapsed"
    outcome = payment_outcome(current, target, current_ended=ended_before, target_ended=ended)
    if outcome is not Outcome.APPLIED:
        audit.record(
            actor,
            f"payment.event_{outcome.value}",
            payment,
            from_state=current,
            to_state=target,
            details=info,
        )
        return outcome
    payment.status = target
    now = utcnow()
    if (target == P.AUTHORIZED or ended) and payment.authorized_at is None:
        # An authorization's end names an authorization, even when it arrives first.
        payment.authorized_at = now
    if target == P.SUCCEEDED and payment.captured_at is None:
        payment.captured_at = now
    if target == P.SUCCEEDED and current in UNPAID_ENDS:
        info["late_success"] = True
    if target == P.SUCCEEDED and any(
        p.id != payment.id and p.status in CAPTURED for p in payment.order.payments
    ):
        # Two attempts of one order both took money (an old tab, a gateway that can't
        # close orders): the merchant must refund one. Make it loud in the audit trail.
        info["paid_twice"] = True
        audit.record(
            actor, "order.paid_twice", payment.order, details={"payment": payment.public_id}
        )
    audit.record(
        actor, "payment.status_changed", payment, from_state=current, to_state=target, details=info
    )
    if ended and not ended_before:
        outbox.emit(
            outbox.EventType.PAYMENT_AUTHORIZATION_VOIDED
            if target == P.CANCELED
            else outbox.EventType.PAYMENT_AUTHORIZATION_EXPIRED,
            payment,
        )
    elif target in PAYMENT_EVENTS:
        outbox.emit(PAYMENT_EVENTS[target], payment)
    if not (current in STILL_OPEN and target in STILL_OPEN):
        # From one open state to another the order's status can't change (it is pending
        # while any attempt is open), so it isn't even loaded.
        transition_order(payment.order, actor)
    return outcome


def _move_by_refunds(
    payment: Payment, current: PaymentStatus, target: PaymentStatus, refunded: int, actor: Actor
) -> Outcome:
    before = payment.amount_refunded
    payment.amount_refunded = refunded
    outcome = refund_totals_outcome(current, target, refunded != before)
    if outcome is Outcome.APPLIED:
        payment.status = target
        audit.record(
            actor,
            "payment.refund_totals",
            payment,
            from_state=current,
            to_state=target,
            details={"amount_refunded": refunded, "previous_amount_refunded": before},
        )
        transition_order(payment.order, actor)
    return outcome


def apply_refund_totals(payment: Payment, actor: Actor) -> None:
    """Recompute amount_refunded from the refund rows and move the payment's status to
    match, through transition_payment."""
    refunded = sum(r.amount for r in payment.refunds if r.status == RefundStatus.SUCCEEDED)
    if refunded == 0:
        target = P.SUCCEEDED
    elif refunded >= payment.amount:
        target = P.REFUNDED
    else:
        target = P.PARTIALLY_REFUNDED
    transition_payment(payment, target, actor, reason="refund totals", amount_refunded=refunded)


# --- orders -------------------------------------------------------------------------

O = OrderStatus
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    O.PENDING: frozenset({O.PAID, O.FAILED, O.EXPIRED, O.CANCELED}),
    O.FAILED: frozenset({O.PAID, O.EXPIRED, O.CANCELED}),  # late money wins
    O.EXPIRED: frozenset({O.PAID, O.CANCELED}),
    O.CANCELED: frozenset({O.PAID}),
    O.PAID: frozenset({O.PARTIALLY_REFUNDED, O.REFUNDED}),
    O.PARTIALLY_REFUNDED: frozenset({O.REFUNDED, O.PAID}),  # a refund failed after all
    O.REFUNDED: frozenset({O.PARTIALLY_REFUNDED, O.PAID}),
}

_ORDER_FROM_PAYMENT = {
    P.SUCCEEDED: O.PAID,
    P.PARTIALLY_REFUNDED: O.PARTIALLY_REFUNDED,
    P.REFUNDED: O.REFUNDED,
    P.FAILED: O.FAILED,
    P.EXPIRED: O.EXPIRED,
    P.CANCELED: O.CANCELED,
}


ORDER_EVENTS = {
    O.PAID: outbox.EventType.ORDER_PAID,
    O.EXPIRED: outbox.EventType.ORDER_EXPIRED,
    O.CANCELED: outbox.EventType.ORDER_CANCELED,
}


def desired_order_status(order: Order) -> OrderStatus:
    """The order follows its captured payment if any; stays pending while any attempt is
    still open; otherwise it ends the way its latest attempt ended."""
    for payment in order.payments:
        if payment.status in CAPTURED:
            return _ORDER_FROM_PAYMENT[PaymentStatus(payment.status)]
    if any(p.status in STILL_OPEN for p in order.payments):
        return O.PENDING
    latest = order.latest_payment
    if latest is None:
        return OrderStatus(order.status)
    return _ORDER_FROM_PAYMENT.get(PaymentStatus(latest.status), O.PENDING)


def transition_order(order: Order, actor: Actor, target: OrderStatus | None = None) -> None:
    """The one place an order's status changes: to what its payments say
    (desired_order_status), or to `target` for an order that has none (it expired before
    any attempt was made). Stock and the receipt follow the move."""
    from app.payments import inventory  # late import: inventory imports this module

    current = OrderStatus(order.status)
    if target is None:
        target = desired_order_status(order)
    if target == current or target not in ORDER_TRANSITIONS[current]:
        return
    order.status = target
    audit.record(actor, "order.status_changed", order, from_state=current, to_state=target)
    if target in ORDER_EVENTS:
        outbox.emit(ORDER_EVENTS[target], order)
    if target in ORDER_UNPAID_ENDS:
        inventory.release(order, actor)
    elif target == O.PAID and not order.stock_reserved:
        inventory.reserve_again(order, actor)
    if target == O.PAID:
        from app import jobs

        jobs.enqueue_grouped("receipts.orders_paid", order.id)


# --- refunds and disputes -------------------------------------------------------------

R = RefundStatus
REFUND_RANK = {R.PENDING: 0, R.SUCCEEDED: 1, R.FAILED: 2, R.CANCELED: 2}
REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELED}),
    # Stripe: a refund can fail after it succeeded (the card was closed, say).
    R.SUCCEEDED: frozenset({R.FAILED}),
    R.FAILED: frozenset(),
    R.CANCELED: frozenset(),
}


def transition_refund(
    refund: Refund,
    target: RefundStatus,
    actor: Actor,
    *,
    reason: str,
    details: dict[str, Any] | None = None,
) -> Outcome:
    current = RefundStatus(refund.status)
    info = {"reason": reason, **(details or {})}
    if target == current:
        outcome = Outcome.DUPLICATE
    elif target in REFUND_TRANSITIONS[current]:
        outcome = Outcome.APPLIED
    elif REFUND_RANK[target] < REFUND_RANK[current]:
        outcome = Outcome.STALE
    else:
        outcome = Outcome.INVALID
    if outcome is not Outcome.APPLIED:
        audit.record(
            actor,
            f"refund.event_{outcome.value}",
            refund,
            from_state=current,
            to_state=target,
            details=info,
            payment=refund.payment,
        )
        return outcome
    refund.status = target
    audit.record(
        actor,
        "refund.status_changed",
        refund,
        from_state=current,
        to_state=target,
        details=info,
        payment=refund.payment,
    )
    apply_refund_totals(refund.payment, actor)
    if target in REFUND_EVENTS:
        outbox.emit(REFUND_EVENTS[target], refund)
    if target == R.SUCCEEDED:
        from app import jobs

        jobs.enqueue_grouped("receipts.refunds_succeeded", refund.id)
    return outcome


REFUND_EVENTS = {
    R.SUCCEEDED: outbox.EventType.REFUND_SUCCEEDED,
    R.FAILED: outbox.EventType.REFUND_FAILED,
}

D = DisputeStatus
DISPUTE_RANK = {D.OPEN: 0, D.CLOSED: 1, D.WON: 2, D.LOST: 2}


def transition_dispute(
    dispute: Dispute,
    target: DisputeStatus,
    actor: Actor,
    *,
    reason: str,
    details: dict[str, Any] | None = None,
) -> Outcome:
    current = DisputeStatus(dispute.status)
    info = {"reason": reason, **(details or {})}
    if target == current:
        outcome = Outcome.DUPLICATE
    elif DISPUTE_RANK[target] > DISPUTE_RANK[current]:
        outcome = Outcome.APPLIED
    elif DISPUTE_RANK[target] < DISPUTE_RANK[current]:
        outcome = Outcome.STALE
    else:
        outcome = Outcome.INVALID  # won after lost or the reverse: keep the first verdict
    if outcome is Outcome.APPLIED:
        dispute.status = target
        action = "dispute.status_changed"
        outbox.emit(outbox.EventType.DISPUTE_CLOSED, dispute)  # every move ends it
    else:
        action = f"dispute.event_{outcome.value}"
    audit.record(
        actor,
        action,
        dispute,
        from_state=current,
        to_state=target,
        details=info,
        payment=dispute.payment,
    )
    return outcome


# --- subscriptions ----------------------------------------------------------------------

SS = SubscriptionStatus
# A subscription mirrors its gateway: every move comes from a re-fetch of the gateway's
# subscription made under the row's lock (app/payments/subscriptions.py), so the last
# re-fetch is the newest truth whatever order the events came in. The table only keeps
# what a gateway can never do: leave an end, or go back to incomplete.
SUBSCRIPTION_TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    SS.INCOMPLETE: frozenset(
        {
            SS.TRIALING,
            SS.ACTIVE,
            SS.PAST_DUE,
            SS.UNPAID,
            SS.PAUSED,
            SS.CANCELED,
            SS.INCOMPLETE_EXPIRED,
        }
    ),
    SS.TRIALING: frozenset({SS.ACTIVE, SS.PAST_DUE, SS.UNPAID, SS.PAUSED, SS.CANCELED}),
    SS.ACTIVE: frozenset({SS.TRIALING, SS.PAST_DUE, SS.UNPAID, SS.PAUSED, SS.CANCELED}),
    SS.PAST_DUE: frozenset({SS.ACTIVE, SS.UNPAID, SS.PAUSED, SS.CANCELED}),
    SS.UNPAID: frozenset({SS.ACTIVE, SS.PAST_DUE, SS.PAUSED, SS.CANCELED}),
    SS.PAUSED: frozenset({SS.TRIALING, SS.ACTIVE, SS.PAST_DUE, SS.UNPAID, SS.CANCELED}),
    SS.CANCELED: frozenset(),
    SS.INCOMPLETE_EXPIRED: frozenset(),
}
# incomplete 0, running 1, ended 2: a lower-ranked report is stale, anything else invalid.
SUBSCRIPTION_RANK = {s: 1 for s in SS} | {
    SS.INCOMPLETE: 0,
    SS.CANCELED: 2,
    SS.INCOMPLETE_EXPIRED: 2,
}
SUBSCRIPTION_EVENTS = {
    SS.PAST_DUE: outbox.EventType.SUBSCRIPTION_PAST_DUE,
    SS.UNPAID: outbox.EventType.SUBSCRIPTION_UNPAID,
    SS.PAUSED: outbox.EventType.SUBSCRIPTION_PAUSED,
    SS.CANCELED: outbox.EventType.SUBSCRIPTION_CANCELED,
    SS.INCOMPLETE_EXPIRED: outbox.EventType.SUBSCRIPTION_CANCELED,
}
# The mirrored fields a re-fetch sets (beside the status).
SUBSCRIPTION_FIELDS = (
    "current_period_start",
    "current_period_end",
    "cancel_at",
    "cancel_at_period_end",
    "canceled_at",
    "ended_at",
    "trial_end",
    "latest_invoice_id",
    "latest_invoice_status",
    "next_payment_attempt",
    "gateway_status",
)


def subscription_outcome(current: SubscriptionStatus, target: SubscriptionStatus) -> Outcome:
    """Classify a re-fetched status against the current one (pure; table-tested)."""
    if target == current:
        return Outcome.DUPLICATE
    if target in SUBSCRIPTION_TRANSITIONS[current]:
        return Outcome.APPLIED
    if SUBSCRIPTION_RANK[target] < SUBSCRIPTION_RANK[current]:
        return Outcome.STALE
    return Outcome.INVALID


def transition_subscription(
    sub: Subscription,
    snapshot: SubscriptionSnapshot,
    actor: Actor,
    *,
    reason: str,
) -> Outcome:
    """The one place a subscription changes: to what the gateway's re-fetched subscription
    says (`snapshot`), with the row locked. Its dates follow the status (an ended
    subscription keeps the dates it ended with). Returns APPLIED for a status move,
    DUPLICATE for the same status (its dates may still have moved: audited and told as
    subscription.updated), STALE or INVALID (audited, nothing changed)."""
    current = SubscriptionStatus(sub.status)
    target = snapshot.status
    outcome = subscription_outcome(current, target)
    info: dict[str, Any] = {"reason": reason, "gateway_status": snapshot.gateway_status}
    if outcome in (Outcome.STALE, Outcome.INVALID):
        audit.record(
            actor,
            f"subscription.event_{outcome.value}",
            sub,
            from_state=current,
            to_state=target,
            details=info,
        )
        return outcome
    changed = {}
    for name in SUBSCRIPTION_FIELDS:
        value = getattr(snapshot, name)
        if getattr(sub, name) != value:
            changed[name] = _plain(value)
            setattr(sub, name, value)
    if snapshot.gateway_customer_id and not sub.gateway_customer_id:
        sub.gateway_customer_id = snapshot.gateway_customer_id
    if snapshot.ref.gateway_subscription_id and not sub.gateway_subscription_id:
        sub.gateway_subscription_id = snapshot.ref.gateway_subscription_id
    if outcome is Outcome.DUPLICATE:
        if changed:
            audit.record(
                actor,
                "subscription.updated",
                sub,
                from_state=current,
                to_state=target,
                details={**info, "changed": changed},
            )
            outbox.emit(outbox.EventType.SUBSCRIPTION_UPDATED, sub)
        return outcome
    sub.status = target
    audit.record(
        actor,
        "subscription.status_changed",
        sub,
        from_state=current,
        to_state=target,
        details={**info, "changed": changed},
    )
    if target in SUBSCRIPTION_EVENTS:
        outbox.emit(SUBSCRIPTION_EVENTS[target], sub)
    elif current in (SS.INCOMPLETE, SS.PAUSED) and target in (SS.ACTIVE, SS.TRIALING):
        outbox.emit(outbox.EventType.SUBSCRIPTION_ACTIVATED, sub)
    else:
        outbox.emit(outbox.EventType.SUBSCRIPTION_UPDATED, sub)  # recovered, say
    return outcome


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
