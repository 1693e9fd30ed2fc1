"""Database rows -> response schemas, and the success envelope."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Response, jsonify
from pydantic import BaseModel

from app import models
from app.api import schemas
from app.api.queries import TimelineEntry
from app.extensions import db
from app.methods import describe
from app.models import PaymentStatus
from app.money import format_minor
from app.payments import charges
from app.presentation import payment_status


def ok(
    data: BaseModel | Iterable[BaseModel],
    status: int = 200,
    *,
    next_cursor: str | None | bool = False,
    location: str | None = None,
) -> Response:
    """`{"success": true, "data": ...}`; lists also carry `next_cursor` (null at the end).
    `location` is the created resource's URL (201 answers)."""
    body: dict[str, Any] = {"success": True}
    if isinstance(data, BaseModel):
        body["data"] = data.model_dump(mode="json")
    else:
        body["data"] = [item.model_dump(mode="json") for item in data]
        body["next_cursor"] = next_cursor or None
    response = jsonify(body)
    response.status_code = status
    if location:
        response.headers["Location"] = location
    return response


def product(p: models.Product) -> schemas.Product:
    return schemas.Product(
        sku=p.sku,
        name=p.name,
        description=p.description,
        unit_amount=p.unit_amount,
        currency=p.currency,
        price_display=format_minor(p.unit_amount, p.currency),
        stock=p.stock,
    )


def order(o: models.Order) -> schemas.Order:
    return schemas.Order(
        id=o.public_id,
        status=o.status,
        currency=o.currency,
        total_amount=o.total_amount,
        customer=schemas.OrderCustomer(email=o.customer_email, name=o.customer_name),
        items=[
            schemas.OrderItem(
                sku=i.sku,
                name=i.name,
                unit_amount=i.unit_amount,
                quantity=i.quantity,
                line_amount=i.line_amount,
            )
            for i in o.items
        ],
        payment_ids=[p.public_id for p in o.payments],
        fulfillment_status=o.fulfillment_status,
        fulfilled_at=o.fulfilled_at,
        fulfillment_note=o.fulfillment_note,
        expires_at=o.expires_at,
        created_at=o.created_at,
        updated_at=o.updated_at,
    )


def payment(p: models.Payment) -> schemas.Payment:
    return schemas.Payment(
        id=p.public_id,
        order_id=p.order.public_id,
        status=schemas.ShownPaymentStatus(payment_status(p)),
        amount=p.amount,
        amount_refunded=p.amount_refunded,
        currency=p.currency,
        gateway=p.gateway,
        gateway_reference=p.gateway_reference,
        gateway_payment_id=p.gateway_payment_id,
        capture_method=p.capture_method,
        checkout_url=p.checkout_url,
        failure_code=p.failure_code,
        failure_message=p.failure_message,
        payment_method=p.payment_method,
        payment_method_label=describe(p.payment_method) or None,
        customer_id=p.customer.public_id if p.customer is not None else None,
        saved_payment_method_id=_saved_method_id(p),
        action_url=charges.action_link(p) if p.status == PaymentStatus.REQUIRES_ACTION else None,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def _saved_method_id(p: models.Payment) -> str | None:
    if p.saved_method_id is None:
        return None
    method = db.session.get(models.SavedPaymentMethod, p.saved_method_id)
    return method.public_id if method is not None else None


def saved_method(m: models.SavedPaymentMethod) -> schemas.SavedPaymentMethod:
    return schemas.SavedPaymentMethod(
        id=m.public_id,
        customer_id=m.customer.public_id,
        gateway=m.gateway,
        brand=m.brand,
        last4=m.last4,
        exp_month=m.exp_month,
        exp_year=m.exp_year,
        wallet=m.wallet,
        status=m.status,
        expired=m.expired,
        created_at=m.created_at,
    )


def customer(c: models.Customer) -> schemas.CustomerRecord:
    return schemas.CustomerRecord(
        id=c.public_id,
        email=c.email,
        name=c.name,
        payment_methods=[saved_method(m) for m in c.methods if m.active],
        created_at=c.created_at,
    )


def refund(r: models.Refund) -> schemas.Refund:
    return schemas.Refund(
        id=r.public_id,
        payment_id=r.payment.public_id,
        status=r.status,
        amount=r.amount,
        currency=r.currency,
        reason=r.reason,
        gateway_refund_id=r.gateway_refund_id,
        failure_reason=r.failure_reason,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def checkout_session(p: models.Payment) -> schemas.CheckoutSession:
    return schemas.CheckoutSession(
        checkout_url=p.checkout_url, order=order(p.order), payment=payment(p)
    )


def event(e: TimelineEntry) -> schemas.Event:
    return schemas.Event(
        source=e.source,
        at=e.at,
        type=e.type,
        actor=e.actor,
        from_state=e.from_state,
        to_state=e.to_state,
        details=e.details,
    )


def payment_link(link: models.PaymentLink) -> schemas.PaymentLink:
    from flask import current_app

    from app.payments.links import link_amount, unavailable

    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return schemas.PaymentLink(
        id=link.public_id,
        url=f"{base}/pay/{link.public_id}",
        description=link.description,
        amount=link_amount(link),
        currency=link.product.currency,
        sku=link.product.sku if link.product.listed else None,
        quantity=link.quantity,
        reusable=link.reusable,
        active=link.active,
        usable=unavailable(link) is None,
        expires_at=link.expires_at,
        order_ids=[lo.order.public_id for lo in link.orders],
        created_at=link.created_at,
    )


def webhook_endpoint(e: models.WebhookEndpoint) -> schemas.WebhookEndpoint:
    return schemas.WebhookEndpoint(
        id=e.public_id,
        url=e.url,
        description=e.description,
        event_types=list(e.event_types),
        enabled=e.enabled,
        disabled_reason=e.disabled_reason,
        failing_since=e.failing_since,
        created_at=e.created_at,
        updated_at=e.updated_at,
    )


def webhook_endpoint_created(
    e: models.WebhookEndpoint, secret: str
) -> schemas.WebhookEndpointCreated:
    return schemas.WebhookEndpointCreated(**webhook_endpoint(e).model_dump(), secret=secret)


def webhook_secret(e: models.WebhookEndpoint, secret: str) -> schemas.WebhookEndpointSecret:
    valid_until = e.previous_secret_expires_at
    return schemas.WebhookEndpointSecret(
        endpoint_id=e.public_id,
        secret=secret,
        previous_secret_valid_until=valid_until if e.previous_secret else None,
    )


def webhook_delivery(d: models.WebhookDelivery) -> schemas.WebhookDelivery:
    return schemas.WebhookDelivery(
        id=d.public_id,
        event_id=d.event.public_id,
        event_type=d.event.type,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
    )


def plan(p: models.Plan) -> schemas.Plan:
    return schemas.Plan(
        id=p.public_id,
        sku=p.sku,
        name=p.name,
        description=p.description,
        amount=p.amount,
        currency=p.currency,
        interval=models.PlanInterval(p.interval),
        interval_count=p.interval_count,
        trial_days=p.trial_days,
        active=p.active,
    )


def subscription(sub: models.Subscription) -> schemas.Subscription:
    from app.models.base import utcnow
    from app.payments.entitlement import entitlement

    access = entitlement(sub, utcnow())
    return schemas.Subscription(
        id=sub.public_id,
        plan_id=sub.plan.public_id,
        gateway=sub.gateway,
        status=models.SubscriptionStatus(sub.status),
        customer_email=sub.customer_email,
        checkout_url=sub.checkout_url if sub.status == "incomplete" else None,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        cancel_at=sub.cancel_at,
        cancel_at_period_end=sub.cancel_at_period_end,
        canceled_at=sub.canceled_at,
        ended_at=sub.ended_at,
        trial_end=sub.trial_end,
        latest_invoice_id=sub.latest_invoice_id,
        next_payment_attempt=sub.next_payment_attempt,
        entitlement=schemas.Entitled(
            entitled=access.entitled,
            until=access.until,
            renews=access.renews,
            reason=access.reason,
        ),
        payment_ids=[p.public_id for p in sub.payments],
        created_at=sub.created_at,
    )
