"""Payment attempts: commit the intent, call the gateway, record its answer.

The attempt row (with its idempotency key) is committed before the gateway is
called, so a crash between the two leaves a row that reconciliation can finish,
and a retried create reuses the key: the gateway never makes a second session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, url_for
from sqlalchemy import insert, select
from sqlalchemy.orm.attributes import set_committed_value

from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    CheckoutRequest,
    GatewayError,
    LineItem,
    PaymentRef,
    ReturnParams,
)
from app.models import AuditEntry, Order, OrderItem, OrderStatus, Payment, PaymentStatus
from app.models.base import public_id, utcnow
from app.payments import audit, faults, orders
from app.payments.audit import Actor
from app.payments.errors import InvalidState, NotFound, PaymentGatewayFailed
from app.payments.orders import ItemRequest, NewOrder, OrderPlan
from app.payments.rows import insert_from_json, to_json
from app.payments.uow import lock, release_connection, unit_of_work
from app.payments.updates import apply_update_now

OPEN_STATUSES = (PaymentStatus.CREATED, PaymentStatus.PROCESSING)


def external_url(endpoint: str, **values: object) -> str:
    """An absolute URL on the configured public base (what customers and gateways reach)."""
    return current_app.config["PUBLIC_BASE_URL"] + url_for(endpoint, **values)


_INSERT_PAYMENT = insert(Payment.__table__).returning(Payment.__table__.c.id)


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """A payment attempt just written in the caller's unit of work, as plain values."""

    id: int
    public_id: str
    gateway: str
    amount: int
    currency: str
    capture_method: str
    idempotency_key: str


def _attempt_row(
    order_id: int | None,
    total: int,
    currency: str,
    email: str,
    expires_at: datetime,
    gateway_name: str,
) -> dict[str, Any]:
    """A new attempt's payments row, for an order's total, currency, email and expiry."""
    pid = public_id("pay")
    now = utcnow()
    return {
        "public_id": pid,
        "order_id": order_id,
        "gateway": gateway_name,
        "status": PaymentStatus.CREATED,
        "amount": total,
        "currency": currency,
        "amount_refunded": 0,
        "customer_email": email,
        "capture_method": current_app.config.get("CAPTURE_METHOD", "automatic"),
        "idempotency_key": f"kassa-checkout-{pid}",
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }


def _attempt_audit_row(
    actor: Actor, values: dict[str, Any], payment_id: int | None
) -> dict[str, Any]:
    return audit.row(
        actor,
        "payment.created",
        "payment",
        values["public_id"],
        to_state=PaymentStatus.CREATED,
        details={
            "gateway": values["gateway"],
            "amount": values["amount"],
            "currency": values["currency"],
        },
        payment_id=payment_id,
        order_id=values["order_id"],
    )


def _attempt(payment_id: int, values: dict[str, Any]) -> NewAttempt:
    return NewAttempt(
        id=payment_id,
        public_id=values["public_id"],
        gateway=values["gateway"],
        amount=values["amount"],
        currency=values["currency"],
        capture_method=values["capture_method"],
        idempotency_key=values["idempotency_key"],
    )


def _new_attempt(order: Order | NewOrder, gateway_name: str, actor: Actor) -> NewAttempt:
    """Add a payment attempt for the order to the caller's unit of work."""
    values = _attempt_row(
        order.id,
        order.total_amount,
        order.currency,
        order.customer_email,
        order.expires_at,
        gateway_name,
    )
    payment_id = db.session.connection().execute(_INSERT_PAYMENT, values).scalar_one()
    audit.insert_row(_attempt_audit_row(actor, values, payment_id))
    return _attempt(payment_id, values)


# PostgreSQL: a new order, its items, its first attempt and both audit entries in ONE
# statement (app/payments/rows.py): four round trips fewer than one INSERT each.
_WRITE_ORDER_AND_ATTEMPT = (
    "WITH o AS ("
    + insert_from_json(Order.__table__, "json_populate_record(NULL::orders, %(order)s::json) r", {})
    + " RETURNING id), i AS ("
    + insert_from_json(
        OrderItem.__table__,
        "o, json_populate_recordset(NULL::order_items, %(items)s::json) r",
        {"order_id": "o.id"},
    )
    + "), p AS ("
    + insert_from_json(
        Payment.__table__,
        "o, json_populate_record(NULL::payments, %(payment)s::json) r",
        {"order_id": "o.id"},
    )
    + " RETURNING id), a AS ("
    + insert_from_json(
        AuditEntry.__table__,
        "o, p, json_populate_recordset(NULL::audit_entries, %(audit)s::json) r",
        {"order_id": "o.id", "payment_id": "CASE WHEN r.object_type = 'payment' THEN p.id END"},
    )
    + ") SELECT o.id, p.id FROM o, p"
)


def _write_order_and_attempt(
    plan: OrderPlan, gateway_name: str, actor: Actor
) -> tuple[NewOrder, NewAttempt]:
    """orders.write_order + _new_attempt in one statement (PostgreSQL), then the stock."""
    order = plan.values
    values = _attempt_row(
        None,
        order["total_amount"],
        order["currency"],
        order["customer_email"],
        order["expires_at"],
        gateway_name,
    )
    order_id, payment_id = (
        db.session.connection()
        .exec_driver_sql(
            _WRITE_ORDER_AND_ATTEMPT,
            {
                "order": to_json(order),
                "items": to_json(orders.item_rows(plan, None)),
                "payment": to_json(values),
                "audit": to_json(
                    [plan.audit_row(actor, None), _attempt_audit_row(actor, values, None)]
                ),
            },
        )
        .one()
    )
    # Last, so a limited product's row lock is held for as short a time as possible.
    orders.reserve(plan)
    return plan.written(order_id), _attempt(payment_id, values)


def create_checkout(
    items: Sequence[ItemRequest],
    email: str,
    name: str,
    gateway_name: str,
    actor: Actor,
    *,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> Payment:
    """Order + first payment attempt + hosted checkout; returns the payment."""
    registry.get_gateway(gateway_name)  # unknown/unconfigured gateway: fail before any write
    with unit_of_work():
        plan = orders.plan_order(items, email, name)
        if db.session.get_bind().dialect.name == "postgresql":
            order, attempt = _write_order_and_attempt(plan, gateway_name, actor)
        else:
            order = orders.write_order(plan, actor)
            attempt = _new_attempt(order, gateway_name, actor)
    # Plain values, not ORM objects: nothing to reload after the commit.
    request = _checkout_request(attempt, order, success_url, cancel_url)
    return _open(attempt.id, gateway_name, request, actor)


def retry_checkout(order_public_id: str, gateway_name: str, actor: Actor) -> Payment:
    """A new attempt after a cancel or a failure.

    A pending order gets a new attempt (earlier open attempts are closed at the
    gateway); a failed, expired or canceled order is bought again as a new order with
    the same items, because its stock was already released.
    """
    registry.get_gateway(gateway_name)
    order = orders.get_order(order_public_id)
    if order.status != OrderStatus.PENDING:
        if order.status not in (OrderStatus.FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELED):
            raise InvalidState("This order is already paid.")
        items = [ItemRequest(i.sku, i.quantity) for i in order.items]
        return create_checkout(
            items, order.customer_email, order.customer_name, gateway_name, actor
        )
    with unit_of_work():
        order = lock(Order, id=order.id)
        assert order is not None
        if order.status != OrderStatus.PENDING:
            raise InvalidState("This order changed meanwhile; please reload.")
        earlier = [p.id for p in order.payments if p.status in OPEN_STATUSES]
        # A new attempt gets a full checkout window; the stock stays held meanwhile.
        order.expires_at = utcnow() + timedelta(
            minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"]
        )
        payment_id = _new_attempt(order, gateway_name, actor).id
    # Close the earlier attempts before opening the new one: an attempt the gateway will
    # not close may have been paid in another tab, and a second session would let the
    # customer pay twice.
    for old_id in earlier:
        if not cancel_attempt(old_id, actor) and not _closed_after_sync(old_id, actor):
            with unit_of_work():
                new = lock(Payment, id=payment_id)
                assert new is not None
                from app.payments.state import transition_payment

                transition_payment(
                    new,
                    PaymentStatus.CANCELED,
                    actor,
                    reason="an earlier attempt is paid or in progress",
                )
            raise InvalidState(
                "This order has a payment in progress or was paid meanwhile; "
                "check its status before paying again."
            )
    return open_checkout(payment_id, actor)


def _closed_after_sync(payment_id: int, actor: Actor) -> bool:
    from app.payments.refunds import sync_payment

    stuck = db.session.get(Payment, payment_id)
    assert stuck is not None
    synced = sync_payment(stuck.public_id, actor)
    return synced.status in (PaymentStatus.CANCELED, PaymentStatus.EXPIRED, PaymentStatus.FAILED)


def _checkout_request(
    payment: Payment | NewAttempt,
    order: Order | NewOrder,
    success_url: str | None,
    cancel_url: str | None,
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment.public_id,
        order_id=order.public_id,
        amount=payment.amount,
        currency=payment.currency,
        line_items=tuple(LineItem(i.name, i.unit_amount, i.quantity) for i in order.items),
        customer_email=order.customer_email,
        customer_name=order.customer_name,
        success_url=success_url
        or external_url("checkout.payment_return", payment_id=payment.public_id)
        + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=cancel_url
        or external_url("checkout.payment_cancel", payment_id=payment.public_id),
        idempotency_key=payment.idempotency_key,
        expires_at=order.expires_at,
        capture_method=payment.capture_method,
        description=", ".join(f"{i.quantity} × {i.name}" for i in order.items),
    )


def open_checkout(
    payment_id: int, actor: Actor, *, success_url: str | None = None, cancel_url: str | None = None
) -> Payment:
    """Open the hosted checkout for an attempt that is committed but not yet opened."""
    payment = db.session.get(Payment, payment_id)
    assert payment is not None
    request = _checkout_request(payment, payment.order, success_url, cancel_url)
    return _open(payment_id, payment.gateway, request, actor)


def _open(payment_id: int, gateway_name: str, request: CheckoutRequest, actor: Actor) -> Payment:
    """Ask the gateway for a hosted checkout, then record its answer on the attempt."""
    gateway = registry.get_gateway(gateway_name)
    release_connection()  # don't hold a pooled connection while the gateway thinks
    try:
        session = gateway.create_checkout(request)
        faults.hit("after_gateway_checkout")
    except GatewayError as exc:
        with unit_of_work():
            payment = lock(Payment, id=payment_id)
            assert payment is not None
            payment.failure_code = exc.code
            payment.failure_message = exc.message
            if not exc.retryable:
                # A definitive refusal: this attempt can never open.
                from app.payments.updates import fail_attempt

                fail_attempt(payment, exc.code, exc.message, actor)
            else:
                audit.record(
                    actor,
                    "payment.gateway_error",
                    payment,
                    details={"code": exc.code, "message": exc.message},
                )
        raise PaymentGatewayFailed(exc.code, _customer_message(exc)) from exc
    from app.payments.state import transition_payment, transition_unloaded

    opened = {"gateway_reference": session.reference, "checkout_url": session.redirect_url}
    if session.expires_at:
        opened["expires_at"] = session.expires_at
    reason, details = "checkout opened", {"reference": session.reference}
    with unit_of_work():
        # Usually still `created`: one conditional UPDATE records it. If a webhook moved
        # the attempt meanwhile, lock it and let the state machine judge.
        payment = transition_unloaded(
            payment_id,
            PaymentStatus.CREATED,
            PaymentStatus.PROCESSING,
            actor,
            reason=reason,
            details=details,
            **opened,
        )
        if payment is None:
            payment = lock(Payment, id=payment_id)
            assert payment is not None
            for key, value in opened.items():
                setattr(payment, key, value)
            if payment.status == PaymentStatus.CREATED:
                transition_payment(
                    payment, PaymentStatus.PROCESSING, actor, reason=reason, details=details
                )
    # The commit expired the attempt, but its checkout URL is known and never changes:
    # the caller's redirect reads it without a query.
    set_committed_value(payment, "checkout_url", session.redirect_url)
    return payment


def _customer_message(exc: GatewayError) -> str:
    if exc.code in ("card_declined", "payment_failed"):
        return exc.message
    if exc.code in ("gateway_unavailable", "rate_limited"):
        return "The payment provider is not answering right now. Please try again in a minute."
    return "We could not start the payment. Please try again, or choose another method."


def cancel_attempt(payment_id: int, actor: Actor) -> bool:
    """Close an open attempt at the gateway, then mark it canceled.

    False when the gateway would not close it (paid meanwhile, or unreachable).
    """
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status not in OPEN_STATUSES:
        return True
    gateway = registry.get_gateway(payment.gateway)
    if payment.gateway_reference:
        try:
            gateway.cancel_checkout(
                PaymentRef(payment.public_id, payment.gateway_reference, payment.gateway_payment_id)
            )
        except GatewayError as exc:
            # Paid meanwhile, or the gateway is down: leave it for the webhook/reconcile.
            with unit_of_work():
                payment = lock(Payment, id=payment_id)
                assert payment is not None
                audit.record(
                    actor,
                    "payment.cancel_failed",
                    payment,
                    details={"code": exc.code, "message": exc.message},
                )
            return False
    with unit_of_work():
        payment = lock(Payment, id=payment_id)
        assert payment is not None
        from app.payments.state import transition_payment

        transition_payment(
            payment, PaymentStatus.CANCELED, actor, reason="replaced by a new attempt"
        )
    return True


def get_payment(payment_public_id: str) -> Payment:
    payment = db.session.execute(
        select(Payment).where(Payment.public_id == payment_public_id)
    ).scalar_one_or_none()
    if payment is None:
        raise NotFound("No such payment.")
    return payment


def confirm_return(payment_public_id: str, args: dict[str, str], actor: Actor) -> Payment:
    """The browser came back: ask the gateway (never the URL) what happened."""
    payment = get_payment(payment_public_id)
    gateway = registry.get_gateway(payment.gateway)
    ref = PaymentRef(payment.public_id, payment.gateway_reference, payment.gateway_payment_id)
    closed = payment.status in (PaymentStatus.CANCELED, PaymentStatus.EXPIRED, PaymentStatus.FAILED)
    release_connection()
    try:
        # A closed attempt is only read: a return page must never complete it (PayPal's
        # return captures, and a late approval must not take money for an expired order).
        update = (
            gateway.retrieve(ref) if closed else gateway.confirm_return(ref, ReturnParams(args))
        )
    except GatewayError as exc:
        with unit_of_work():
            locked = lock(Payment, id=payment.id)
            assert locked is not None
            audit.record(
                actor,
                "payment.return_unverified",
                locked,
                details={"code": exc.code, "message": exc.message},
            )
        return payment
    faults.hit("after_gateway_return")
    if update is not None:
        apply_update_now(payment.gateway, update, actor, source="return page")
    db.session.refresh(payment)
    return payment
