"""Charging a saved payment method (merchant-initiated, off-session; issue 18).

The same core path as a checkout: the order and its attempt (with the idempotency key the
gateway is called with) are committed first, then the gateway is asked, then its answer
goes through the state machine with its audit entry. A decline fails the attempt and is
raised for the door (402 with the gateway's reason); a charge the bank wants the customer
to authenticate waits in `requires_action`, and the customer is sent a Kassa link
(`/pay/action/<token>`, signed and expiring) that brings them to the gateway's page: one
known at charge time (the sandbox), or one the gateway gives when the charge is confirmed
again with the customer present (`start_authentication`; Stripe's redirect for 3D Secure).
The return page and the webhooks settle it from there as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import force_locale, gettext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import jobs
from app.crypto import email_hash
from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    AuthenticatesCharges,
    AuthenticationRequest,
    ChargeRequest,
    GatewayCode,
    GatewayError,
    SavesMethods,
)
from app.i18n import current_locale
from app.mail import deliver, new_message
from app.models import MethodStatus, Payment, PaymentStatus, SavedPaymentMethod
from app.models.base import public_id, utcnow
from app.money import format_minor
from app.payments import audit, customers, orders, store
from app.payments.audit import Actor
from app.payments.checkout import external_url
from app.payments.errors import InvalidState, NotFound, ValidationFailed
from app.payments.gateway_calls import gateway_errors
from app.payments.orders import ItemRequest
from app.payments.uow import lock, release_connection, unit_of_work
from app.payments.updates import apply_update, fail_attempt

ACTION_SALT = "kassa-payment-action"
MAX_AMOUNT = 99_999_999


def payment_key(request_key: str) -> str:
    """The attempt's idempotency key, from the caller's key (an API Idempotency-Key with its
    scope, or the dashboard form's): one caller key can only ever make one payment."""
    return "kassa-charge-" + hashlib.sha256(request_key.encode()).hexdigest()[:48]


def _validate(amount: int | None, items: Sequence[ItemRequest], currency: str | None) -> None:
    details = []
    if amount is None and not items:
        details.append({"field": "amount", "message": "Give an amount or catalog items."})
    if amount is not None and items:
        details.append({"field": "items", "message": "Give an amount or items, not both."})
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT
    ):
        details.append({"field": "amount", "message": "A positive whole number of minor units."})
    if amount is not None and (not currency or len(currency) != 3 or not currency.isalpha()):
        details.append({"field": "currency", "message": "A three-letter ISO 4217 code."})
    if details:
        raise ValidationFailed("Please correct the highlighted fields.", details=details)


def charge_saved_method(
    method_public_id: str,
    *,
    amount: int | None,
    currency: str | None,
    items: Sequence[ItemRequest] = (),
    description: str,
    request_key: str,
    actor: Actor,
) -> Payment:
    """Charge a saved method; returns the payment (succeeded, or requires_action with the
    customer's link sent). A decline raises PaymentGatewayFailed after failing the attempt.
    The same `request_key` again returns the first payment, never a second charge."""
    _validate(amount, items, currency)
    key = payment_key(request_key)
    existing = _by_key(key)
    if existing is not None:
        return existing
    method = customers.get_method(method_public_id)
    if method.status != MethodStatus.ACTIVE:
        raise InvalidState("This payment method was removed.")
    if method.expired:
        raise InvalidState("This card has expired; ask the customer for another method.")
    gateway = registry.get_gateway(method.gateway)
    if not isinstance(getattr(gateway, "inner", gateway), SavesMethods):
        raise InvalidState(f"{gateway.display_name} cannot charge saved methods.")
    customer = method.customer
    try:
        with unit_of_work():
            order, lines, item_rows, plan = _order_values(
                amount, currency, items, description, customer.email, customer.name, actor
            )
            now = utcnow()
            pid = public_id("pay")
            attempt: dict[str, Any] = {
                "public_id": pid,
                "order_id": None,
                "gateway": method.gateway,
                "status": PaymentStatus.CREATED,
                "amount": order["total_amount"],
                "currency": order["currency"],
                "amount_refunded": 0,
                "customer_email": order["customer_email"],
                "customer_email_hash": email_hash(order["customer_email"]),
                "capture_method": "automatic",
                "idempotency_key": key,
                "customer_id": customer.id,
                "saved_method_id": method.id,
                "save_payment_method": False,
                "expires_at": order["expires_at"],
                "created_at": now,
                "updated_at": now,
            }
            created = audit.row(
                actor,
                "payment.created",
                "payment",
                pid,
                to_state=PaymentStatus.CREATED,
                details={
                    "gateway": method.gateway,
                    "amount": attempt["amount"],
                    "currency": attempt["currency"],
                    "off_session": True,
                    "method": method.public_id,
                },
            )
            order_audit = audit.row(
                actor,
                "order.created",
                "order",
                order["public_id"],
                to_state=order["status"],
                details={"total": order["total_amount"], "currency": order["currency"]},
            )
            _, payment_id = store.write_checkout(order, item_rows, attempt, [order_audit, created])
            if plan is not None:
                orders.reserve(plan)
    except IntegrityError:
        # The same key at the same moment: the other request made the payment.
        db.session.rollback()
        found = _by_key(key)
        if found is None:
            raise
        return found
    request = ChargeRequest(
        payment_id=pid,
        order_id=order["public_id"],
        amount=attempt["amount"],
        currency=attempt["currency"],
        token=method.gateway_token,
        gateway_customer_id=customer.gateway_customer_id(method.gateway),
        description=lines,
        idempotency_key=key,
        return_url=external_url("checkout.payment_return", payment_id=pid),
        customer_email=customer.email,
    )
    return _ask_gateway(payment_id, gateway, request, actor)


def _order_values(
    amount: int | None,
    currency: str | None,
    items: Sequence[ItemRequest],
    description: str,
    email: str,
    name: str,
    actor: Actor,
) -> tuple[dict[str, Any], str, list[dict[str, Any]], orders.OrderPlan | None]:
    if items:
        plan = orders.plan_order(items, email, name, actor)
        values = dict(plan.values)
        text = description or ", ".join(f"{line.quantity} × {line.name}" for line in plan.lines)
        return values, text, plan.item_rows, plan
    assert amount is not None and currency is not None
    now = utcnow()
    text = description or "Charge"
    hours = int(current_app.config.get("PAYMENT_ACTION_LINK_HOURS", 72))
    values = {
        "public_id": public_id("ord"),
        "status": "pending",
        "currency": currency.upper(),
        "customer_email": email,
        "customer_email_hash": email_hash(email),
        "customer_name": name,
        "total_amount": amount,
        "stock_reserved": True,
        "fulfillment_status": "unfulfilled",
        "expires_at": now + timedelta(hours=hours),
        "created_at": now,
        "updated_at": now,
    }
    item = {
        "product_id": None,
        "sku": "charge",
        "name": text[:200],
        "unit_amount": amount,
        "quantity": 1,
    }
    return values, text, [item], None


def _by_key(key: str) -> Payment | None:
    return db.session.execute(
        select(Payment).where(Payment.idempotency_key == key)
    ).scalar_one_or_none()


def _ask_gateway(payment_id: int, gateway: Any, request: ChargeRequest, actor: Actor) -> Payment:
    release_connection()

    def refused(payment: Payment, exc: GatewayError) -> None:
        fail_attempt(payment, exc.code, exc.message, actor)

    def keep(payment: Payment, exc: GatewayError) -> None:
        payment.failure_code = exc.code
        payment.failure_message = exc.message

    with gateway_errors(
        (Payment, payment_id), actor, "payment.gateway_error", keep=keep, refused=refused
    ):
        result = gateway.charge_saved_method(request)
    with unit_of_work():
        payment = lock(Payment, id=payment_id)
        assert payment is not None
        if payment.gateway_reference is None:
            payment.gateway_reference = result.reference
        if result.action_url:
            payment.checkout_url = result.action_url
        apply_update(payment.gateway, result.update, actor, source="off-session charge")
        if payment.status == PaymentStatus.REQUIRES_ACTION:
            jobs.enqueue("charges.action_email", payment.id)
    db.session.refresh(payment)
    return payment


# --- the customer's way back ----------------------------------------------------------


def authenticates_here(payment: Payment) -> bool:
    """Whether the customer's link can take them to their bank for this waiting charge."""
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return False
    if payment.checkout_url:
        return True
    gateway = registry.get_gateway(payment.gateway)
    return isinstance(getattr(gateway, "inner", gateway), AuthenticatesCharges) and bool(
        payment.gateway_payment_id and payment.saved_method_id
    )


def start_authentication(payment: Payment, actor: Actor) -> str | None:
    """The customer asked to confirm a waiting charge: the gateway page that does it, or
    None when there is none to go to (the payment's status then says why: the gateway
    may have settled it at once). A refusal fails the attempt and is raised."""
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        return None
    if payment.checkout_url:
        return payment.checkout_url  # known when the charge was made (the sandbox)
    gateway = registry.get_gateway(payment.gateway)
    method = (
        db.session.get(SavedPaymentMethod, payment.saved_method_id)
        if payment.saved_method_id is not None
        else None
    )
    if (
        not isinstance(getattr(gateway, "inner", gateway), AuthenticatesCharges)
        # The resilience layer has the method too (it forwards it with retries).
        or not isinstance(gateway, AuthenticatesCharges)
        or method is None
        or not payment.gateway_payment_id
    ):
        return None
    request = AuthenticationRequest(
        payment_id=payment.public_id,
        gateway_payment_id=payment.gateway_payment_id,
        token=method.gateway_token,
        return_url=external_url("checkout.payment_return", payment_id=payment.public_id),
        idempotency_key=f"{payment.idempotency_key}-authenticate",
    )
    payment_id = payment.id
    release_connection()

    def refused(locked: Payment, exc: GatewayError) -> None:
        # A decline on-session ends the attempt; any other refusal (a request the gateway
        # would not take) leaves it waiting, audited, for the shop to look at.
        if exc.code in (GatewayCode.CARD_DECLINED, GatewayCode.PAYMENT_FAILED):
            fail_attempt(locked, exc.code, exc.message, actor)
        else:
            audit.record(
                actor,
                "payment.gateway_error",
                locked,
                details={"code": exc.code, "message": exc.message},
            )

    with gateway_errors(
        (Payment, payment_id),
        actor,
        "payment.gateway_error",
        refused=refused,
        for_customer=True,
    ):
        start = gateway.start_authentication(request)
    with unit_of_work():
        locked = lock(Payment, id=payment_id)
        assert locked is not None
        apply_update(locked.gateway, start.update, actor, source="on-session authentication")
        waiting = locked.status == PaymentStatus.REQUIRES_ACTION
    db.session.refresh(payment)
    return start.redirect_url if waiting else None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=ACTION_SALT)


def action_link(payment: Payment) -> str:
    """The customer's link to authenticate a charge (signed; expires)."""
    token = _serializer().dumps(payment.public_id)
    return external_url("checkout.payment_action", token=token)


def payment_for_action(token: str) -> Payment:
    hours = int(current_app.config.get("PAYMENT_ACTION_LINK_HOURS", 72))
    try:
        payment_id = _serializer().loads(token, max_age=hours * 3600)
    except SignatureExpired:
        raise InvalidState("This link has expired; ask the shop for a new one.") from None
    except BadSignature:
        raise NotFound("No such payment.") from None
    payment = _by_public_id(str(payment_id))
    if payment is None:
        raise NotFound("No such payment.")
    return payment


def _by_public_id(pid: str) -> Payment | None:
    return db.session.execute(select(Payment).where(Payment.public_id == pid)).scalar_one_or_none()


@jobs.task("charges.action_email")
def send_action_email(payment_id: int) -> None:
    """Tell the customer their bank wants them to confirm a charge, with their link."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.REQUIRES_ACTION:
        return
    link = action_link(payment)
    store = current_app.config.get("STORE_NAME") or "Kassa"
    locale = payment.order.locale or customers.customer_locale(payment.customer)
    with force_locale(locale):
        amount = format_minor(payment.amount, payment.currency, locale=current_locale())
        text = "\n\n".join(
            [
                gettext(
                    "%(store)s asked your bank for %(amount)s with the payment method you "
                    "saved, and your bank wants you to confirm it.",
                    store=store,
                    amount=amount,
                ),
                gettext("Confirm the payment: %(link)s", link=link),
                gettext(
                    "If you did not expect this, ignore this message; nothing is charged "
                    "without you."
                ),
            ]
        )
        subject = gettext("Confirm your payment of %(amount)s", amount=amount)
    deliver(new_message(payment.customer_email, subject, text), f"action-{payment.public_id}")
