"""Refunds, captures and sync: merchant-initiated calls to the gateway.

Refund intent is committed (with its idempotency key) before the gateway is called;
the payment row is locked while the remaining amount is checked, so concurrent
requests can never refund more than was captured.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select

from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    CaptureRequest,
    GatewayError,
    PaymentRef,
    RefundRequest,
    VoidsAuthorizations,
)
from app.models import Payment, PaymentStatus, Refund, RefundStatus
from app.models.base import public_id
from app.models.enums import REFUNDABLE
from app.payments import audit, faults, state
from app.payments.audit import Actor
from app.payments.checkout import get_payment
from app.payments.errors import (
    InvalidState,
    KassaError,
    NotFound,
    RefundExceedsRemaining,
    ValidationFailed,
)
from app.payments.gateway_calls import gateway_errors
from app.payments.uow import lock, unit_of_work
from app.payments.updates import apply_update_now


def refundable_amount(payment: Payment) -> int:
    """What can still be refunded: captured minus pending and succeeded refunds."""
    if payment.status not in REFUNDABLE:
        return 0
    held = sum(
        r.amount
        for r in payment.refunds
        if r.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
    )
    return max(0, payment.amount - held)


def create_refund(
    payment_public_id: str,
    amount: int | None,
    reason: str | None,
    actor: Actor,
    *,
    idempotency_key: str | None = None,
) -> Refund:
    """Refund all (amount None) or part of a payment. The same idempotency key
    returns the first refund instead of making a second one."""
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0
    ):
        raise ValidationFailed(
            "The refund amount must be a positive amount.",
            details=[{"field": "amount", "message": "must be positive"}],
        )
    key = idempotency_key or f"kassa-refund-{secrets.token_urlsafe(12)}"
    with unit_of_work():
        existing = db.session.execute(
            select(Refund).where(Refund.idempotency_key == key)
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        payment = lock(Payment, public_id=payment_public_id)
        if payment is None:
            raise NotFound("No such payment.")
        # Re-check under the lock: a concurrent request may have taken the key meanwhile.
        existing = db.session.execute(
            select(Refund).where(Refund.idempotency_key == key)
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        if payment.status not in REFUNDABLE:
            raise InvalidState(f"A {payment.status.replace('_', ' ')} payment cannot be refunded.")
        remaining = refundable_amount(payment)
        amount = remaining if amount is None else amount
        if amount <= 0 or amount > remaining:
            raise RefundExceedsRemaining(
                f"At most {remaining} (minor units of {payment.currency}) can still be refunded.",
                details=[{"field": "amount", "remaining": remaining}],
            )
        refund = Refund(
            public_id=public_id("rfd"),
            payment=payment,
            gateway=payment.gateway,
            amount=amount,
            currency=payment.currency,
            reason=(reason or None) and reason[:200],
            idempotency_key=key[:80],
            requested_by=str(actor),
        )
        db.session.add(refund)
        db.session.flush()
        audit.record(
            actor,
            "refund.requested",
            refund,
            to_state=refund.status,
            payment=payment,
            details={"amount": amount, "reason": refund.reason},
        )
        refund_id = refund.id
    return send_refund(refund_id, actor)


def send_refund(refund_id: int, actor: Actor) -> Refund:
    """Call the gateway for a committed refund (also used by reconciliation)."""
    refund = db.session.get(Refund, refund_id)
    assert refund is not None
    payment = refund.payment
    gateway = registry.get_gateway(payment.gateway)
    request = RefundRequest(
        refund_id=refund.public_id,
        payment_id=payment.public_id,
        reference=payment.gateway_reference,
        gateway_payment_id=payment.gateway_payment_id,
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
        idempotency_key=refund.idempotency_key,
    )

    def refused(locked: Refund, exc: GatewayError) -> None:
        locked.failure_reason = exc.message
        state.transition_refund(
            locked, RefundStatus.FAILED, actor, reason="gateway refused", details={"code": exc.code}
        )

    with gateway_errors((Refund, refund_id), actor, "refund.gateway_error", refused=refused):
        result = gateway.refund(request)
        faults.hit("after_gateway_refund")
    from app.gateways.base import RefundUpdate

    apply_update_now(
        payment.gateway,
        RefundUpdate(
            ref=PaymentRef(
                payment.public_id, payment.gateway_reference, payment.gateway_payment_id
            ),
            gateway_refund_id=result.gateway_refund_id,
            amount=refund.amount,
            currency=refund.currency,
            status=result.status,
            refund_id=refund.public_id,
            failure_reason=result.failure_reason,
        ),
        actor,
        source="refund response",
    )
    db.session.refresh(refund)
    return refund


def capture_payment(payment_public_id: str, actor: Actor) -> Payment:
    """Capture an authorized (manual-capture) payment in full."""
    payment = get_payment(payment_public_id)
    if payment.status != PaymentStatus.AUTHORIZED:
        raise InvalidState("Only an authorized payment can be captured.")
    gateway = registry.get_gateway(payment.gateway)
    with unit_of_work():
        locked = lock(Payment, id=payment.id)
        assert locked is not None
        audit.record(actor, "payment.capture_requested", locked, from_state=locked.status)
    with gateway_errors():
        update = gateway.capture(
            CaptureRequest(
                payment_id=payment.public_id,
                reference=payment.gateway_reference,
                gateway_payment_id=payment.gateway_payment_id,
                amount=payment.amount,
                currency=payment.currency,
                idempotency_key=f"kassa-capture-{payment.public_id}",
            )
        )
        faults.hit("after_gateway_capture")
    apply_update_now(payment.gateway, update, actor, source="capture response")
    db.session.refresh(payment)
    return payment


def can_void(payment: Payment) -> bool:
    """An authorized payment whose gateway can void it from here (Stripe, PayPal)."""
    if payment.status != PaymentStatus.AUTHORIZED:
        return False
    try:
        gateway = registry.get_gateway(payment.gateway)
    except KassaError:
        return False
    return bool(getattr(gateway, "can_void_payments", False))


def void_authorization(payment_public_id: str, actor: Actor) -> Payment:
    """Release an authorized (manual-capture) payment without charging: the gateway
    voids it, and its answer (canceled, the authorization's end) goes through the state
    machine: the order is canceled and its stock released."""
    payment = get_payment(payment_public_id)
    if payment.status != PaymentStatus.AUTHORIZED:
        raise InvalidState("Only an authorized payment can be voided.")
    if not can_void(payment):
        raise InvalidState("This gateway's authorizations cannot be voided from here.")
    gateway = registry.get_gateway(payment.gateway)
    if not isinstance(gateway, VoidsAuthorizations):  # every gateway that can_void has it
        raise InvalidState("This gateway's authorizations cannot be voided from here.")
    with unit_of_work():
        locked = lock(Payment, id=payment.id)
        assert locked is not None
        audit.record(actor, "payment.void_requested", locked, from_state=locked.status)
    with gateway_errors():
        update = gateway.void_payment(
            CaptureRequest(
                payment_id=payment.public_id,
                reference=payment.gateway_reference,
                gateway_payment_id=payment.gateway_payment_id,
                amount=payment.amount,
                currency=payment.currency,
                idempotency_key=f"kassa-void-{payment.public_id}",
            )
        )
    apply_update_now(payment.gateway, update, actor, source="void response")
    db.session.refresh(payment)
    return payment


def sync_payment(payment_public_id: str, actor: Actor) -> Payment:
    """Bring one payment up to date from the gateway (dashboard button, reconcile)."""
    payment = get_payment(payment_public_id)
    gateway = registry.get_gateway(payment.gateway)
    with gateway_errors():
        update = gateway.retrieve(
            PaymentRef(payment.public_id, payment.gateway_reference, payment.gateway_payment_id)
        )
    apply_update_now(payment.gateway, update, actor, source="sync")
    db.session.refresh(payment)
    return payment
