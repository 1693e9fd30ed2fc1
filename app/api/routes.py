"""The /api/v1 endpoints: parse, one core call, envelope."""

from __future__ import annotations

import hashlib

from flask import Response, current_app, jsonify, request, url_for

from app.api import bp, keys, present, queries
from app.api import schemas as s
from app.api.idempotency import idempotent, scope
from app.api.openapi import build, operation
from app.api.parsing import parse_query
from app.extensions import limiter
from app.gateways import registry
from app.payments import checkout, orders, refunds
from app.payments.orders import ItemRequest

# A shop front calls this without a key: limit it per client address (keys are exempt,
# they have the API-wide per-key limit).
checkout_limit = limiter.limit(
    lambda: current_app.config["API_CHECKOUT_RATE_LIMIT"],
    exempt_when=keys.has_valid_key,
    override_defaults=False,
    scope="api-checkout",
)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(build(current_app))


@bp.get("/products")
@operation(
    summary="List the active catalog", tag="Catalog", auth="public", response=s.Product, many=True
)
def list_products() -> Response:
    """The active products with price and stock left."""
    return present.ok([present.product(p) for p in queries.active_products()])


@bp.post("/checkout-sessions")
@checkout_limit
@operation(
    summary="Create a checkout session (order + payment + hosted checkout URL)",
    tag="Checkout",
    auth="optional",
    body=s.CheckoutSessionCreate,
    response=s.CheckoutSession,
    status=201,
    errors=(402, 404, 409, 502, 503),
    description="Public: a shop front may call it without a key (rate-limited per "
    "client address). Send the customer's browser to `checkout_url`.",
)
@keys.optional
@idempotent(s.CheckoutSessionCreate)
def create_checkout_session(body: s.CheckoutSessionCreate) -> Response:
    """Order the items and open a hosted checkout at the gateway."""
    gateway = body.gateway or next(iter(registry.gateways()))
    payment = checkout.create_checkout(
        [ItemRequest(i.sku, i.quantity) for i in body.items],
        body.customer.email,
        body.customer.name,
        gateway,
        keys.actor(),
        success_url=body.success_url,
        cancel_url=body.cancel_url,
    )
    return present.ok(
        present.checkout_session(payment),
        201,
        location=url_for(".get_payment", payment_id=payment.public_id),
    )


@bp.get("/orders/<order_id>")
@operation(summary="Get an order", tag="Orders", auth="read", response=s.Order)
@keys.required("read")
def get_order(order_id: str) -> Response:
    """One order with its items and payment attempts."""
    return present.ok(present.order(orders.get_order(order_id)))


@bp.get("/orders")
@operation(
    summary="List orders (newest first)",
    tag="Orders",
    auth="read",
    response=s.Order,
    many=True,
    query=s.OrderListQuery,
)
@keys.required("read")
def list_orders() -> Response:
    """Orders filtered by status, email and creation time; cursor pagination."""
    q = parse_query(s.OrderListQuery)
    page = queries.list_orders(
        status=q.status,
        email=q.email,
        created_after=q.created_after,
        created_before=q.created_before,
        limit=q.limit,
        cursor=q.cursor,
    )
    return present.ok([present.order(o) for o in page.items], next_cursor=page.next_cursor)


@bp.get("/payments/<payment_id>")
@operation(
    summary="Get a payment (optionally synced with the gateway first)",
    tag="Payments",
    auth="read",
    response=s.Payment,
    query=s.PaymentGetQuery,
    errors=(502, 503),
)
@keys.required("read")
def get_payment(payment_id: str) -> Response:
    """A payment; `?refresh=true` asks the gateway for the truth first."""
    q = parse_query(s.PaymentGetQuery)
    if q.refresh:
        return present.ok(present.payment(refunds.sync_payment(payment_id, keys.actor())))
    return present.ok(present.payment(checkout.get_payment(payment_id)))


@bp.get("/payments")
@operation(
    summary="List payments (newest first)",
    tag="Payments",
    auth="read",
    response=s.Payment,
    many=True,
    query=s.PaymentListQuery,
)
@keys.required("read")
def list_payments() -> Response:
    """Payments filtered by status, gateway, currency, email and creation time."""
    q = parse_query(s.PaymentListQuery)
    page = queries.list_payments(
        status=q.status,
        gateway=q.gateway,
        currency=q.currency,
        email=q.email,
        created_after=q.created_after,
        created_before=q.created_before,
        limit=q.limit,
        cursor=q.cursor,
    )
    return present.ok([present.payment(p) for p in page.items], next_cursor=page.next_cursor)


@bp.post("/payments/<payment_id>/confirm")
@operation(
    summary="Confirm a payment from the browser-side result (verified server-side)",
    tag="Payments",
    auth="write",
    body=s.PaymentConfirm,
    response=s.Payment,
    description="Pass what the gateway gave the browser (Razorpay's handler fields, "
    "a Stripe session id, or PayPal's order id as `paypal_order_id`). Nothing changes unless the gateway confirms "
    "it; the answer is the payment as we now know it.",
)
@keys.required("write")
@idempotent(s.PaymentConfirm)
def confirm_payment(payment_id: str, body: s.PaymentConfirm) -> Response:
    """Verify the browser's result with the gateway and apply it."""
    return present.ok(
        present.payment(checkout.confirm_return(payment_id, body.gateway_args(), keys.actor()))
    )


@bp.post("/payments/<payment_id>/capture")
@operation(
    summary="Capture an authorized (manual-capture) payment",
    tag="Payments",
    auth="write",
    body=s.CaptureCreate,
    response=s.Payment,
    errors=(409, 502, 503),
)
@keys.required("write")
@idempotent(s.CaptureCreate)
def capture_payment(payment_id: str, body: s.CaptureCreate) -> Response:
    """Capture the full authorized amount."""
    return present.ok(present.payment(refunds.capture_payment(payment_id, keys.actor())))


@bp.post("/payments/<payment_id>/refunds")
@operation(
    summary="Refund a payment (all or part)",
    tag="Refunds",
    auth="write",
    body=s.RefundCreate,
    response=s.Refund,
    status=201,
    errors=(409, 422, 502, 503),
)
@keys.required("write")
@idempotent(s.RefundCreate)
def create_refund(payment_id: str, body: s.RefundCreate) -> Response:
    """Refund `amount` (minor units), or everything left when omitted."""
    refund = refunds.create_refund(
        payment_id, body.amount, body.reason, keys.actor(), idempotency_key=_refund_key()
    )
    return present.ok(
        present.refund(refund), 201, location=url_for(".get_refund", refund_id=refund.public_id)
    )


def _refund_key() -> str | None:
    # With an Idempotency-Key, a retry after a crash reaches the core with the same refund
    # key, so the gateway is never asked twice even if our stored response was lost.
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    return "api-" + hashlib.sha256(f"{scope()}\n{key}".encode()).hexdigest()[:60]


@bp.get("/refunds/<refund_id>")
@operation(summary="Get a refund", tag="Refunds", auth="read", response=s.Refund)
@keys.required("read")
def get_refund(refund_id: str) -> Response:
    """One refund."""
    return present.ok(present.refund(queries.get_refund(refund_id)))


@bp.get("/payments/<payment_id>/events")
@operation(
    summary="The payment's timeline (audit entries and gateway events)",
    tag="Payments",
    auth="read",
    response=s.Event,
    many=True,
)
@keys.required("read")
def payment_events(payment_id: str) -> Response:
    """Everything that happened to this payment, oldest first."""
    timeline = queries.payment_timeline(checkout.get_payment(payment_id))
    return present.ok([present.event(e) for e in timeline], next_cursor=None)
