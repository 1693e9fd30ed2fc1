"""Applying what a gateway says (webhook, return page, sync) to our records.

Every function takes a plain update from app/gateways/base.py, finds our payment
(locked), checks the gateway's amount and currency against ours, and moves state
through app/payments/state.py. Each runs in its own unit of work unless the caller
already opened one (nested units hand their commit to the outer one).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.gateways.base import (
    DisputeUpdate,
    MethodSetupUpdate,
    PaymentRef,
    PaymentUpdate,
    RefundUpdate,
    Update,
)
from app.models import Dispute, Payment, PaymentStatus, Refund, RefundStatus
from app.models.enums import CAPTURED
from app.payments import audit, outbox, state
from app.payments.audit import Actor
from app.payments.state import Outcome
from app.payments.uow import lock


def find_payment(gateway: str, ref: PaymentRef) -> Payment | None:
    """Our payment for a gateway reference, locked. Foreign references find nothing."""
    candidates = []
    if ref.payment_id:
        candidates.append({"public_id": ref.payment_id})
    if ref.reference:
        candidates.append({"gateway_reference": ref.reference})
    if ref.gateway_payment_id:
        candidates.append({"gateway_payment_id": ref.gateway_payment_id})
    for filters in candidates:
        payment = lock(Payment, gateway=gateway, **filters)
        if payment is not None:
            # Metadata can be forged in a test-mode account; the ids must agree too.
            if (
                ref.reference
                and payment.gateway_reference
                and ref.reference != payment.gateway_reference
            ):
                continue
            return payment
    return None


def _mismatch(payment: Payment, amount: int | None, currency: str | None) -> dict[str, Any] | None:
    problems: dict[str, Any] = {}
    if amount is not None and amount != payment.amount:
        problems["amount"] = {"ours": payment.amount, "gateway": amount}
    if currency is not None and currency.upper() != payment.currency:
        problems["currency"] = {"ours": payment.currency, "gateway": currency.upper()}
    return problems or None


def _apply_payment_update(
    payment: Payment, update: PaymentUpdate, actor: Actor, source: str
) -> Outcome:
    mismatch = _mismatch(payment, update.amount, update.currency)
    if mismatch and update.status in (PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED):
        # Never mark paid what was not paid in full, in our currency: flag it instead.
        audit.record(
            actor,
            "payment.mismatch",
            payment,
            from_state=payment.status,
            to_state=update.status,
            details={"source": source, **mismatch},
        )
        return Outcome.INVALID
    if update.gateway_payment_id and not payment.gateway_payment_id:
        payment.gateway_payment_id = update.gateway_payment_id
    if update.payment_method:
        payment.payment_method = dict(update.payment_method)
    failed_news = update.status not in CAPTURED and update.status != PaymentStatus.AUTHORIZED
    if (update.failure_code or update.failure_message) and failed_news:
        payment.failure_code = update.failure_code
        payment.failure_message = update.failure_message
    if update.capture_deadline and payment.capture_deadline is None:
        payment.capture_deadline = update.capture_deadline
    details: dict[str, Any] = {"source": source}
    if update.failure_code:
        details["failure_code"] = update.failure_code
    outcome = state.transition_payment(
        payment,
        update.status,
        actor,
        reason=source,
        details=details,
        authorization_ended=update.authorization_ended,
    )
    if update.saved_method is not None and payment.status in CAPTURED | {PaymentStatus.AUTHORIZED}:
        from app.payments.customers import record_saved_method  # customers reads gateways

        record_saved_method(payment, update.saved_method, actor)
    return outcome


def fail_attempt(payment: Payment, code: str, message: str, actor: Actor) -> None:
    payment.failure_code = code
    payment.failure_message = message
    state.transition_payment(
        payment,
        PaymentStatus.FAILED,
        actor,
        reason="gateway refused",
        details={"failure_code": code},
    )


def _apply_refund_update(
    payment: Payment, update: RefundUpdate, actor: Actor, source: str
) -> Outcome:
    refund = db.session.execute(
        select(Refund).where(
            Refund.gateway == payment.gateway, Refund.gateway_refund_id == update.gateway_refund_id
        )
    ).scalar_one_or_none()
    if refund is None and update.refund_id:
        refund = db.session.execute(
            select(Refund).where(
                Refund.public_id == update.refund_id, Refund.payment_id == payment.id
            )
        ).scalar_one_or_none()
        if refund is not None and refund.gateway_refund_id is None:
            refund.gateway_refund_id = update.gateway_refund_id
    if refund is None:
        # Made in the gateway's own dashboard: record it as a refund by the gateway.
        if update.currency.upper() != payment.currency:
            audit.record(
                actor,
                "refund.mismatch",
                payment,
                details={
                    "source": source,
                    "gateway_refund_id": update.gateway_refund_id,
                    "currency": update.currency,
                },
            )
            return Outcome.INVALID
        refund = Refund(
            payment=payment,
            gateway=payment.gateway,
            amount=update.amount,
            currency=payment.currency,
            reason=update.reason,
            status=RefundStatus.PENDING,
            gateway_refund_id=update.gateway_refund_id,
            idempotency_key=f"gw-{payment.gateway}-{update.gateway_refund_id}"[:80],
            requested_by="gateway",
        )
        db.session.add(refund)
        db.session.flush()
        audit.record(
            actor,
            "refund.created",
            refund,
            to_state=refund.status,
            payment=payment,
            details={"source": source, "amount": update.amount, "by": "gateway dashboard"},
        )
    if update.status == RefundStatus.SUCCEEDED and payment.status not in CAPTURED:
        # A refund proves the money was captured; news of the capture may still be on its way.
        state.transition_payment(
            payment,
            PaymentStatus.SUCCEEDED,
            actor,
            reason="implied by a refund",
            details={"source": source},
        )
    if update.failure_reason:
        refund.failure_reason = update.failure_reason
    return state.transition_refund(
        refund,
        update.status,
        actor,
        reason=source,
        details={"gateway_refund_id": update.gateway_refund_id},
    )


def _apply_dispute_update(
    payment: Payment, update: DisputeUpdate, actor: Actor, source: str
) -> Outcome:
    dispute = db.session.execute(
        select(Dispute).where(
            Dispute.gateway == payment.gateway,
            Dispute.gateway_dispute_id == update.gateway_dispute_id,
        )
    ).scalar_one_or_none()
    if dispute is None:
        dispute = Dispute(
            payment=payment,
            gateway=payment.gateway,
            gateway_dispute_id=update.gateway_dispute_id,
            amount=update.amount,
            currency=update.currency.upper(),
            reason=update.reason,
            gateway_status=update.gateway_status,
            evidence_due_by=update.evidence_due_by,
        )
        db.session.add(dispute)
        db.session.flush()
        audit.record(
            actor,
            "dispute.opened",
            dispute,
            to_state=dispute.status,
            payment=payment,
            details={"source": source, "amount": update.amount, "reason": update.reason},
        )
        outbox.emit(outbox.EventType.DISPUTE_CREATED, dispute)
        if update.status == dispute.status:
            return Outcome.APPLIED
    if update.gateway_status:
        dispute.gateway_status = update.gateway_status
    if update.evidence_due_by:
        dispute.evidence_due_by = update.evidence_due_by
    return state.transition_dispute(dispute, update.status, actor, reason=source)


def apply_update_now(gateway: str, update: Update, actor: Actor, *, source: str) -> Outcome | None:
    """Apply one update in its own unit of work (or the caller's, if one is open)."""
    from app.payments.uow import unit_of_work

    with unit_of_work():
        return apply_update(gateway, update, actor, source=source)


def apply_update(gateway: str, update: Update, actor: Actor, *, source: str) -> Outcome | None:
    """Apply any update inside the caller's unit of work; None when no payment matches."""
    if isinstance(update, MethodSetupUpdate):
        from app.payments.customers import record_setup_method  # customers reads gateways

        return record_setup_method(gateway, update, actor)
    payment = find_payment(gateway, update.ref)
    if payment is None:
        return None
    if isinstance(update, PaymentUpdate):
        return _apply_payment_update(payment, update, actor, source)
    if isinstance(update, RefundUpdate):
        return _apply_refund_update(payment, update, actor, source)
    return _apply_dispute_update(payment, update, actor, source)
