"""Payment attempts: commit the intent, call the gateway, record its answer.

The attempt row (with its idempotency key) is committed before the gateway is
called, so a crash between the two leaves a row that reconciliation can finish,
and a retried create reuses the key: the gateway never makes a second session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask import current_app, url_for
from sqlalchemy import inspect, select
from sqlalchemy.orm.attributes import set_committed_value

from app.crypto import email_hash
from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    CheckoutRequest,
    Gateway,
    GatewayError,
    LineItem,
    PaymentRef,
    ReturnParams,
    ReturnRejected,
)
from app.models import Customer, Order, OrderItem, OrderStatus, Payment, PaymentStatus
from app.models.base import public_id, utcnow
from app.models.enums import ORDER_UNPAID_ENDS, PAYABLE, UNPAID_ENDS
from app.payments import audit, customers, faults, orders, state, store
from app.payments.audit import Actor
from app.payments.errors import InvalidState, NotFound, SignatureInvalid
from app.payments.gateway_calls import gateway_errors
from app.payments.orders import ItemRequest
from app.payments.uow import lock, release_connection, unit_of_work, unloaded
from app.payments.updates import apply_update_now, fail_attempt


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL on the configured public base (what customers and gateways reach)."""
    base: str = current_app.config["PUBLIC_BASE_URL"]
    return base + url_for(endpoint, **values)


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
        "customer_email_hash": email_hash(email),
        "capture_method": current_app.config.get("CAPTURE_METHOD", "automatic"),
        "idempotency_key": f"kassa-checkout-{pid}",
        "customer_id": None,
        "saved_method_id": None,
        "save_payment_method": False,
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }


def _created_audit_row(actor: Actor, attempt: dict[str, Any]) -> dict[str, Any]:
    return audit.row(
        actor,
        "payment.created",
        "payment",
        attempt["public_id"],
        to_state=PaymentStatus.CREATED,
        details={
            "gateway": attempt["gateway"],
            "amount": attempt["amount"],
            "currency": attempt["currency"],
        },
    )


def new_attempt(order: Order, gateway_name: str, actor: Actor) -> int:
    """Add a payment attempt for an existing order to the caller's unit of work; its id."""
    attempt = _attempt_row(
        order.id,
        order.total_amount,
        order.currency,
        order.customer_email,
        order.expires_at,
        gateway_name,
    )
    earlier = order.latest_payment
    if earlier is not None:
        # Another attempt of the same purchase: the same customer, the same consent.
        attempt["customer_id"] = earlier.customer_id
        attempt["save_payment_method"] = earlier.save_payment_method
    return store.write_attempt(attempt, _created_audit_row(actor, attempt))


def create_checkout(
    items: Sequence[ItemRequest],
    email: str,
    name: str,
    gateway_name: str,
    actor: Actor,
    *,
    success_url: str | None = None,
    cancel_url: str | None = None,
    save_payment_method: bool = False,
) -> Payment:
    """Order + first payment attempt + hosted checkout; returns the payment."""
    return open_new_checkout(
        items,
        email,
        name,
        gateway_name,
        actor,
        success_url=success_url,
        cancel_url=cancel_url,
        save_payment_method=save_payment_method,
    ).payment


@dataclass(frozen=True, slots=True)
class NewCheckout:
    """A checkout just opened. `payment` is the session's row (its checkout URL known
    without a query); `written` is the payment as stored, with its order, the order's
    items and payments, for an answer that reads nothing back after the commit: copies
    built from the values written, never in a session (reading them never queries).
    When a webhook moved the attempt meanwhile, `written` is the row as read then."""

    payment: Payment
    written: Payment


def open_new_checkout(
    items: Sequence[ItemRequest],
    email: str,
    name: str,
    gateway_name: str,
    actor: Actor,
    *,
    success_url: str | None = None,
    cancel_url: str | None = None,
    save_payment_method: bool = False,
) -> NewCheckout:
    """create_checkout, keeping what was written for the answer (the JSON API's 201).
    The customer is matched by email (created when new) in the same unit of work; with
    `save_payment_method` (the customer's consent) the gateway saves the method."""
    # An unknown or unconfigured gateway fails before any write.
    gateway = registry.get_gateway(gateway_name)
    with unit_of_work():
        plan = orders.plan_order(items, email, name, actor)
        order = plan.values
        attempt = _attempt_row(
            None,
            order["total_amount"],
            order["currency"],
            order["customer_email"],
            order["expires_at"],
            gateway_name,
        )
        attempt["customer_id"], customer_public_id = customers.match_customer(
            order["customer_email"], order["customer_name"], actor
        )
        attempt["save_payment_method"] = bool(save_payment_method)
        known_id = (
            customers.gateway_customer_id(attempt["customer_id"], gateway_name)
            if save_payment_method
            else None
        )
        order_id, payment_id = store.write_checkout(
            order,
            plan.item_rows,
            attempt,
            [plan.audit_row, _created_audit_row(actor, attempt)],
        )
        orders.reserve(plan)
    # From the values just written, not ORM objects: nothing to reload after the commit.
    request = _checkout_request(
        payment_id=attempt["public_id"],
        order_id=order["public_id"],
        amount=attempt["amount"],
        currency=attempt["currency"],
        lines=plan.lines,
        email=order["customer_email"],
        name=order["customer_name"],
        idempotency_key=attempt["idempotency_key"],
        expires_at=order["expires_at"],
        capture_method=attempt["capture_method"],
        success_url=success_url,
        cancel_url=cancel_url,
        save_payment_method=attempt["save_payment_method"],
    )
    if known_id:
        request = replace(request, gateway_customer_id=known_id)
    opened: dict[str, Any] = {}
    payment = _open(payment_id, gateway, request, actor, opened)
    if "status" not in inspect(payment).unloaded:
        return NewCheckout(payment, payment)  # moved meanwhile: read, so read from it
    written_order = Order(
        id=order_id,
        **order,
        fulfilled_at=None,
        fulfillment_note=None,
        items=[OrderItem(order_id=order_id, **row) for row in plan.item_rows],
    )
    written = Payment(
        **{
            **attempt,
            "id": payment_id,
            "order_id": order_id,
            "gateway_payment_id": None,
            "failure_code": None,
            "failure_message": None,
            "payment_method": None,
            "authorized_at": None,
            "capture_deadline": None,
            "captured_at": None,
            **opened,
            "status": PaymentStatus.PROCESSING,
        },
    )
    written.order = written_order  # and so written_order.payments == [written]
    written.customer = Customer(id=attempt["customer_id"], public_id=customer_public_id)
    return NewCheckout(payment, written)


def retry_checkout(order_public_id: str, gateway_name: str, actor: Actor) -> Payment:
    """A new attempt after a cancel or a failure.

    A pending order gets a new attempt (earlier open attempts are closed at the
    gateway); a failed, expired or canceled order is bought again as a new order with
    the same items, because its stock was already released.
    """
    registry.get_gateway(gateway_name)
    order = orders.get_order(order_public_id)
    if order.status != OrderStatus.PENDING:
        if order.status not in ORDER_UNPAID_ENDS:
            raise InvalidState("This order is already paid.")
        items = [ItemRequest(i.sku, i.quantity) for i in order.items]
        return create_checkout(
            items, order.customer_email, order.customer_name, gateway_name, actor
        )
    with unit_of_work():
        locked = lock(Order, id=order.id)
        assert locked is not None
        order = locked
        if order.status != OrderStatus.PENDING:
            raise InvalidState("This order changed meanwhile; please reload.")
        earlier = [p.id for p in order.payments if p.status in PAYABLE]
        # A new attempt gets a full checkout window; the stock stays held meanwhile.
        order.expires_at = utcnow() + timedelta(
            minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"]
        )
        payment_id = new_attempt(order, gateway_name, actor)
    # Close the earlier attempts before opening the new one: an attempt the gateway will
    # not close may have been paid in another tab, and a second session would let the
    # customer pay twice.
    for old_id in earlier:
        if not cancel_attempt(old_id, actor) and not _closed_after_sync(old_id, actor):
            with unit_of_work():
                new = lock(Payment, id=payment_id)
                assert new is not None
                state.transition_payment(
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
    return synced.status in UNPAID_ENDS


class _Line(Protocol):
    """An order line as the checkout request needs it (a planned line or an OrderItem)."""

    @property
    def name(self) -> str: ...
    @property
    def unit_amount(self) -> int: ...
    @property
    def quantity(self) -> int: ...


def _checkout_request(
    *,
    payment_id: str,
    order_id: str,
    amount: int,
    currency: str,
    lines: Iterable[_Line],
    email: str,
    name: str,
    idempotency_key: str,
    expires_at: datetime,
    capture_method: str,
    success_url: str | None,
    cancel_url: str | None,
    save_payment_method: bool = False,
) -> CheckoutRequest:
    lines = tuple(lines)
    return CheckoutRequest(
        payment_id=payment_id,
        order_id=order_id,
        amount=amount,
        currency=currency,
        line_items=tuple(LineItem(i.name, i.unit_amount, i.quantity) for i in lines),
        customer_email=email,
        customer_name=name,
        success_url=success_url
        or external_url("checkout.payment_return", payment_id=payment_id)
        + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=cancel_url or external_url("checkout.payment_cancel", payment_id=payment_id),
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        capture_method=capture_method,
        description=", ".join(f"{i.quantity} × {i.name}" for i in lines),
        save_payment_method=save_payment_method,
    )


def open_checkout(
    payment_id: int, actor: Actor, *, success_url: str | None = None, cancel_url: str | None = None
) -> Payment:
    """Open the hosted checkout for an attempt that is committed but not yet opened."""
    payment = db.session.get(Payment, payment_id)
    assert payment is not None
    order = payment.order
    request = _checkout_request(
        payment_id=payment.public_id,
        order_id=order.public_id,
        amount=payment.amount,
        currency=payment.currency,
        lines=order.items,
        email=order.customer_email,
        name=order.customer_name,
        idempotency_key=payment.idempotency_key,
        expires_at=order.expires_at,
        capture_method=payment.capture_method,
        success_url=success_url,
        cancel_url=cancel_url,
        save_payment_method=payment.save_payment_method,
    )
    return _open(payment_id, registry.get_gateway(payment.gateway), request, actor)


def _open(
    payment_id: int,
    gateway: Gateway,
    request: CheckoutRequest,
    actor: Actor,
    opened: dict[str, Any] | None = None,
) -> Payment:
    """Ask the gateway for a hosted checkout, then record its answer on the attempt;
    `opened` (when given) receives the values stored with the move."""
    release_connection()  # don't hold a pooled connection while the gateway thinks

    def refused(payment: Payment, exc: GatewayError) -> None:
        # A definitive refusal: this attempt can never open.
        fail_attempt(payment, exc.code, exc.message, actor)

    with gateway_errors(
        (Payment, payment_id),
        actor,
        "payment.gateway_error",
        keep=_keep_failure,
        refused=refused,
        for_customer=True,
    ):
        session = gateway.create_checkout(request)
        faults.hit("after_gateway_checkout")
    opened = {} if opened is None else opened
    opened.update(
        gateway_reference=session.reference,
        checkout_url=session.redirect_url,
        updated_at=utcnow(),  # stored as given, so an answer can say it without a read
    )
    if session.expires_at:
        opened["expires_at"] = session.expires_at
    with unit_of_work():
        # Usually still `created`, and then stored as one compare-and-set without reading
        # the attempt first; if a webhook moved it meanwhile, its news stands.
        payment = unloaded(Payment, payment_id)
        state.transition_payment(
            payment,
            PaymentStatus.PROCESSING,
            actor,
            reason="checkout opened",
            details={"reference": session.reference},
            values=opened,
            only_from=PaymentStatus.CREATED,
        )
        if session.gateway_customer_id:
            customers.remember_gateway_customer(
                payment_id, gateway.name, session.gateway_customer_id
            )
    # The commit expired the attempt, but its checkout URL is known and never changes:
    # the caller's redirect reads it without a query.
    set_committed_value(payment, "checkout_url", session.redirect_url)
    return payment


def _keep_failure(payment: Payment, exc: GatewayError) -> None:
    payment.failure_code = exc.code
    payment.failure_message = exc.message


def cancel_attempt(payment_id: int, actor: Actor) -> bool:
    """Close an open attempt at the gateway, then mark it canceled.

    False when the gateway would not close it (paid meanwhile, or unreachable).
    """
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status not in PAYABLE:
        return True
    gateway = registry.get_gateway(payment.gateway)
    if payment.gateway_reference:
        ref = PaymentRef(payment.public_id, payment.gateway_reference, payment.gateway_payment_id)
        with gateway_errors(
            (Payment, payment_id), actor, "payment.cancel_failed", raises=False
        ) as call:
            gateway.cancel_checkout(ref)
        if call.error is not None:
            # Paid meanwhile, or the gateway is down: leave it for the webhook/reconcile.
            return False
    with unit_of_work():
        payment = lock(Payment, id=payment_id)
        assert payment is not None
        state.transition_payment(
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
    update = None
    with gateway_errors(
        (Payment, payment.id), actor, "payment.return_unverified", raises=False
    ) as call:
        # A closed attempt is only read: a return page must never complete it (PayPal's
        # return captures, and a late approval must not take money for an expired order).
        try:
            update = (
                gateway.retrieve(ref) if closed else gateway.confirm_return(ref, ReturnParams(args))
            )
        except ReturnRejected as exc:
            # Proven false (forged, or another order's payment): refuse it, change nothing;
            # the attempt stays open for the genuine return or the webhook.
            raise SignatureInvalid(f"{exc} Nothing was changed; the payment is as it was.") from exc
    if call.error is not None:
        return payment
    faults.hit("after_gateway_return")
    if update is not None:
        apply_update_now(payment.gateway, update, actor, source="return page")
    db.session.refresh(payment)
    return payment
