"""The /api/v1 endpoints: parse, one core call, envelope."""

from __future__ import annotations

import hashlib

from flask import Response, current_app, jsonify, request, url_for

from app.api import bp, keys, present, queries
from app.api import schemas as s
from app.api.idempotency import idempotent, scope
from app.api.openapi import build, operation
from app.api.parsing import parse_body, parse_query
from app.extensions import limiter
from app.gateways import registry
from app.models import FulfillmentStatus
from app.payments import (
    charges,
    checkout,
    customers,
    fulfillment,
    links,
    orders,
    refunds,
    subscriptions,
)
from app.payments.orders import ItemRequest
from app.payments.outgoing import endpoints

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
    opened = checkout.open_new_checkout(
        [ItemRequest(i.sku, i.quantity) for i in body.items],
        body.customer.email,
        body.customer.name,
        gateway,
        keys.actor(),
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        save_payment_method=body.save_payment_method,
    )
    # From what the core wrote: nothing is read back after the commit.
    return present.ok(
        present.checkout_session(opened.written),
        201,
        location=url_for(".get_payment", payment_id=opened.written.public_id),
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


@bp.post("/payments/charge")
@operation(
    summary="Charge a saved payment method (off-session)",
    tag="Payments",
    auth="write",
    body=s.ChargeCreate,
    response=s.Payment,
    status=201,
    errors=(402, 404, 409, 502, 503),
    description="Needs an Idempotency-Key: the same key again answers the first result and "
    "never charges twice. 201 with status `succeeded`, or `requires_action` when the bank "
    "wants the customer to authenticate: they are emailed `action_url`, and webhooks settle "
    "the payment after they do. A decline is 402 with the gateway's reason.",
)
@keys.required("write")
@idempotent(s.ChargeCreate, required=True)
def charge_payment_method(body: s.ChargeCreate) -> Response:
    """Charge a customer's saved method for an amount or catalog items."""
    key = request.headers["Idempotency-Key"]
    payment = charges.charge_saved_method(
        body.payment_method_id,
        amount=body.amount,
        currency=body.currency,
        items=[ItemRequest(i.sku, i.quantity) for i in body.items or ()],
        description=body.description,
        request_key=f"api\n{scope()}\n{key}",
        actor=keys.actor(),
    )
    return present.ok(
        present.payment(payment),
        201,
        location=url_for(".get_payment", payment_id=payment.public_id),
    )


@bp.get("/customers")
@operation(
    summary="List customers (newest first)",
    tag="Customers",
    auth="read",
    response=s.CustomerRecord,
    many=True,
    query=s.CustomerListQuery,
)
@keys.required("read")
def list_customers() -> Response:
    """Customers with their saved methods; `?email=` finds one by exact email; cursor
    pagination like the other lists."""
    q = parse_query(s.CustomerListQuery)
    page = queries.list_customers(email=q.email, limit=q.limit, cursor=q.cursor)
    return present.ok([present.customer(c) for c in page.items], next_cursor=page.next_cursor)


@bp.get("/customers/<customer_id>")
@operation(summary="Get a customer", tag="Customers", auth="read", response=s.CustomerRecord)
@keys.required("read")
def get_customer(customer_id: str) -> Response:
    """One customer with their active saved payment methods."""
    return present.ok(present.customer(customers.get_customer(customer_id)))


@bp.get("/customers/<customer_id>/payment-methods")
@operation(
    summary="List a customer's saved payment methods",
    tag="Customers",
    auth="read",
    response=s.SavedPaymentMethod,
    many=True,
)
@keys.required("read")
def list_payment_methods(customer_id: str) -> Response:
    """Active saved methods; expired cards are marked `expired`."""
    customer = customers.get_customer(customer_id)
    return present.ok(
        [present.saved_method(m) for m in customer.methods if m.active], next_cursor=None
    )


@bp.delete("/customers/<customer_id>/payment-methods/<method_id>")
@operation(
    summary="Remove a saved payment method (detached at the gateway)",
    tag="Customers",
    auth="write",
    response=s.SavedPaymentMethod,
    errors=(404, 502, 503),
)
@keys.required("write")
def delete_payment_method(customer_id: str, method_id: str) -> Response:
    """Detach the method at the gateway; it can never be charged again."""
    customer = customers.get_customer(customer_id)
    customers.detach_method(method_id, keys.actor(), customer)
    return present.ok(present.saved_method(customers.get_method(method_id, customer)))


@bp.post("/payments/<payment_id>/confirm")
@operation(
    summary="Confirm a payment from the browser-side result (verified server-side)",
    tag="Payments",
    auth="write",
    body=s.PaymentConfirm,
    response=s.Payment,
    description="Pass what the gateway gave the browser (Razorpay's handler fields, "
    "a Stripe session id, or PayPal's order id as `paypal_order_id`). Nothing changes unless the gateway confirms "
    "it; the answer is the payment as we now know it. Fields proven false (a signature that "
    "does not verify, another order's payment) answer 400 `signature_invalid` and change nothing.",
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


@bp.post("/payment-links")
@operation(
    summary="Create a payment link (a catalog product or a custom amount)",
    tag="Payment links",
    auth="write",
    body=s.PaymentLinkCreate,
    response=s.PaymentLink,
    status=201,
    errors=(404,),
    description="Send the customer to `url`: a Kassa page where they pay with any "
    "configured gateway. Single use unless `reusable`; optional `expires_at`.",
)
@keys.required("write")
@idempotent(s.PaymentLinkCreate)
def create_payment_link(body: s.PaymentLinkCreate) -> Response:
    """Create the link; its page works until it expires, is used or is turned off."""
    link = links.create_link(
        links.NewLink(
            description=body.description,
            sku=body.sku,
            quantity=body.quantity,
            amount=body.amount,
            currency=body.currency.upper() if body.currency else None,
            reusable=body.reusable,
            expires_at=body.expires_at,
        ),
        keys.actor(),
    )
    return present.ok(
        present.payment_link(link),
        201,
        location=url_for(".get_payment_link", link_id=link.public_id),
    )


@bp.get("/payment-links")
@operation(
    summary="List payment links (newest first)",
    tag="Payment links",
    auth="read",
    response=s.PaymentLink,
    many=True,
)
@keys.required("read")
def list_payment_links() -> Response:
    """The 100 newest links with the orders placed through them."""
    return present.ok([present.payment_link(x) for x in links.list_links()], next_cursor=None)


@bp.get("/payment-links/<link_id>")
@operation(summary="Get a payment link", tag="Payment links", auth="read", response=s.PaymentLink)
@keys.required("read")
def get_payment_link(link_id: str) -> Response:
    """One link with its orders."""
    return present.ok(present.payment_link(links.get_link(link_id)))


# --------------------------------------------------------------------------- fulfilment


@bp.post("/orders/<order_id>/fulfillment")
@operation(
    summary="Mark an order fulfilled (or its fulfilment canceled)",
    tag="Orders",
    auth="write",
    body=s.FulfillmentCreate,
    response=s.Order,
    errors=(409,),
    description="Emits `order.fulfilled` (outgoing webhooks, live pages) and emails the "
    "customer once. Repeating the current status changes nothing.",
)
@keys.required("write")
@idempotent(s.FulfillmentCreate)
def set_fulfillment(order_id: str, body: s.FulfillmentCreate) -> Response:
    """Move the order's fulfilment status."""
    order = fulfillment.set_fulfillment(
        order_id, FulfillmentStatus(body.status), keys.actor(), note=body.note
    )
    return present.ok(present.order(order))


# --------------------------------------------------------------------------- webhook endpoints


@bp.get("/webhook-endpoints")
@operation(
    summary="List webhook endpoints",
    tag="Webhook endpoints",
    auth="read",
    response=s.WebhookEndpoint,
    many=True,
)
@keys.required("read")
def list_webhook_endpoints() -> Response:
    """Every endpoint (secrets are not listed)."""
    return present.ok(
        [present.webhook_endpoint(e) for e in endpoints.list_endpoints()], next_cursor=None
    )


@bp.post("/webhook-endpoints")
@operation(
    summary="Add a webhook endpoint",
    tag="Webhook endpoints",
    auth="write",
    body=s.WebhookEndpointCreate,
    response=s.WebhookEndpointCreated,
    status=201,
    description="Events are signed as Standard Webhooks describes (`webhook-id`, "
    "`webhook-timestamp`, `webhook-signature`), with the `secret` in the answer. Loopback, "
    "private and link-local addresses are refused.",
)
@keys.required("write")
@idempotent(s.WebhookEndpointCreate)
def create_webhook_endpoint(body: s.WebhookEndpointCreate) -> Response:
    """A new endpoint, with its signing secret."""
    endpoint, secret = endpoints.create_endpoint(
        body.url, body.event_types, body.description, keys.actor()
    )
    return present.ok(
        present.webhook_endpoint_created(endpoint, secret),
        201,
        location=url_for(".get_webhook_endpoint", endpoint_id=endpoint.public_id),
    )


@bp.get("/webhook-endpoints/<endpoint_id>")
@operation(
    summary="Get a webhook endpoint",
    tag="Webhook endpoints",
    auth="read",
    response=s.WebhookEndpoint,
)
@keys.required("read")
def get_webhook_endpoint(endpoint_id: str) -> Response:
    """One endpoint."""
    return present.ok(present.webhook_endpoint(endpoints.get_endpoint(endpoint_id)))


@bp.patch("/webhook-endpoints/<endpoint_id>")
@operation(
    summary="Change a webhook endpoint (URL, event types, description, enabled)",
    tag="Webhook endpoints",
    auth="write",
    body=s.WebhookEndpointUpdate,
    response=s.WebhookEndpoint,
)
@keys.required("write")
def update_webhook_endpoint(endpoint_id: str) -> Response:
    """Change the fields given."""
    body = parse_body(s.WebhookEndpointUpdate)
    endpoint = endpoints.update_endpoint(
        endpoint_id,
        keys.actor(),
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
    )
    return present.ok(present.webhook_endpoint(endpoint))


@bp.delete("/webhook-endpoints/<endpoint_id>")
@operation(
    summary="Delete a webhook endpoint and its delivery log",
    tag="Webhook endpoints",
    auth="write",
    response=s.WebhookEndpoint,
)
@keys.required("write")
def delete_webhook_endpoint(endpoint_id: str) -> Response:
    """Remove it; answers the endpoint as it was."""
    shown = present.webhook_endpoint(endpoints.get_endpoint(endpoint_id))
    endpoints.delete_endpoint(endpoint_id, keys.actor())
    return present.ok(shown)


@bp.get("/webhook-endpoints/<endpoint_id>/secret")
@operation(
    summary="Read an endpoint's signing secret",
    tag="Webhook endpoints",
    auth="write",
    response=s.WebhookEndpointSecret,
    description="Needs a write key: a secret lets its holder forge our events.",
)
@keys.required("write")
def get_webhook_secret(endpoint_id: str) -> Response:
    """The current signing secret."""
    endpoint = endpoints.get_endpoint(endpoint_id)
    return present.ok(present.webhook_secret(endpoint, endpoints.current_secret(endpoint)))


@bp.post("/webhook-endpoints/<endpoint_id>/rotate-secret")
@operation(
    summary="Rotate the signing secret (the old one keeps signing for 24 hours)",
    tag="Webhook endpoints",
    auth="write",
    body=s.Empty,
    response=s.WebhookEndpointSecret,
)
@keys.required("write")
@idempotent(s.Empty)
def rotate_webhook_secret(endpoint_id: str, body: s.Empty) -> Response:
    """A new secret; both sign every request for the next 24 hours."""
    endpoint, secret = endpoints.rotate_secret(endpoint_id, keys.actor())
    return present.ok(present.webhook_secret(endpoint, secret))


@bp.post("/webhook-endpoints/<endpoint_id>/test")
@operation(
    summary="Send a test event (webhook_endpoint.test) to this endpoint",
    tag="Webhook endpoints",
    auth="write",
    body=s.Empty,
    response=s.TestEventSent,
    status=202,
    errors=(409,),
)
@keys.required("write")
@idempotent(s.Empty)
def send_test_event(endpoint_id: str, body: s.Empty) -> Response:
    """Queue a test event; its delivery shows in the endpoint's log."""
    event = endpoints.send_test(endpoint_id, keys.actor())
    return present.ok(s.TestEventSent(event_id=event.public_id), 202)


@bp.get("/webhook-endpoints/<endpoint_id>/deliveries")
@operation(
    summary="An endpoint's deliveries, newest first",
    tag="Webhook endpoints",
    auth="read",
    response=s.WebhookDelivery,
    many=True,
    query=s.PageQuery,
)
@keys.required("read")
def list_webhook_deliveries(endpoint_id: str) -> Response:
    """The delivery log, one row per event."""
    q = parse_query(s.PageQuery)
    before = queries.decode_id_cursor(q.cursor)
    page = endpoints.list_deliveries(
        endpoints.get_endpoint(endpoint_id), limit=q.limit, before=before
    )
    return present.ok(
        [present.webhook_delivery(d) for d in page.items], next_cursor=page.next_cursor
    )


@bp.post("/webhook-endpoints/<endpoint_id>/deliveries/<delivery_id>/replay")
@operation(
    summary="Send one delivered or failed delivery again now",
    tag="Webhook endpoints",
    auth="write",
    body=s.Empty,
    response=s.WebhookDelivery,
    status=202,
    errors=(409,),
    description="Same `webhook-id`, re-signed with the current secret; one attempt.",
)
@keys.required("write")
@idempotent(s.Empty)
def replay_webhook_delivery(endpoint_id: str, delivery_id: str, body: s.Empty) -> Response:
    """Replay one delivery."""
    delivery = endpoints.replay(endpoint_id, delivery_id, keys.actor())
    return present.ok(present.webhook_delivery(delivery), 202)


@bp.post("/webhook-endpoints/<endpoint_id>/recover")
@operation(
    summary="Send again every failed delivery since a time",
    tag="Webhook endpoints",
    auth="write",
    body=s.WebhookRecover,
    response=s.Recovered,
    status=202,
    errors=(409,),
)
@keys.required("write")
@idempotent(s.WebhookRecover)
def recover_webhook_deliveries(endpoint_id: str, body: s.WebhookRecover) -> Response:
    """Recover failed deliveries (each sent once more)."""
    count = endpoints.recover(endpoint_id, body.since, keys.actor())
    return present.ok(s.Recovered(deliveries=count), 202)


# --------------------------------------------------------------------------- subscriptions


@bp.get("/plans")
@operation(
    summary="List the plans on offer",
    tag="Subscriptions",
    auth="public",
    response=s.Plan,
    many=True,
)
def list_plans() -> Response:
    """The active plans (recurring prices)."""
    return present.ok([present.plan(p) for p in subscriptions.plans()], next_cursor=None)


@bp.post("/plans")
@operation(
    summary="Create a plan (a recurring price)",
    tag="Subscriptions",
    auth="write",
    body=s.PlanCreate,
    response=s.Plan,
    status=201,
    description="The gateway's own objects (Stripe Product + Price, Razorpay Plan) are "
    "created when the plan is first subscribed to.",
)
@keys.required("write")
@idempotent(s.PlanCreate)
def create_plan(body: s.PlanCreate) -> Response:
    """Add a plan to the catalog."""
    plan = subscriptions.create_plan(
        sku=body.sku,
        name=body.name,
        description=body.description,
        amount=body.amount,
        currency=body.currency,
        interval=body.interval.value,
        interval_count=body.interval_count,
        trial_days=body.trial_days,
        actor=keys.actor(),
    )
    return present.ok(present.plan(plan), 201)


@bp.post("/subscriptions")
@operation(
    summary="Start a subscription (send the customer to checkout_url)",
    tag="Subscriptions",
    auth="write",
    body=s.SubscriptionCreate,
    response=s.Subscription,
    status=201,
    errors=(404, 409, 502, 503),
    description="The subscription is `incomplete` until the customer pays at the gateway; "
    "its state then mirrors the gateway's (re-fetched on every gateway event).",
)
@keys.required("write")
@idempotent(s.SubscriptionCreate)
def create_subscription(body: s.SubscriptionCreate) -> Response:
    """Create the subscription and its gateway checkout."""
    gateway = body.gateway or next(iter(dict(subscriptions.gateway_choices())), "")
    sub = subscriptions.start(
        body.plan_id,
        email=body.customer.email,
        name=body.customer.name,
        gateway_name=gateway,
        actor=keys.actor(),
    )
    return present.ok(
        present.subscription(sub),
        201,
        location=url_for(".get_subscription", subscription_id=sub.public_id),
    )


@bp.get("/subscriptions")
@operation(
    summary="List subscriptions (newest first)",
    tag="Subscriptions",
    auth="read",
    response=s.Subscription,
    many=True,
    query=s.SubscriptionListQuery,
)
@keys.required("read")
def list_subscriptions() -> Response:
    """Subscriptions filtered by status, gateway, plan and email."""
    q = parse_query(s.SubscriptionListQuery)
    rows = subscriptions.list_subscriptions(
        status=q.status.value if q.status else None,
        gateway=q.gateway,
        plan=q.plan_id,
        email=q.email,
        limit=q.limit,
    )
    return present.ok([present.subscription(x) for x in rows], next_cursor=None)


@bp.get("/subscriptions/<subscription_id>")
@operation(summary="Get a subscription", tag="Subscriptions", auth="read", response=s.Subscription)
@keys.required("read")
def get_subscription(subscription_id: str) -> Response:
    """One subscription with its entitlement and paid periods."""
    return present.ok(present.subscription(subscriptions.get_subscription(subscription_id)))


@bp.post("/subscriptions/<subscription_id>/cancel")
@operation(
    summary="Cancel a subscription (at the period's end, or now)",
    tag="Subscriptions",
    auth="write",
    body=s.SubscriptionCancel,
    response=s.Subscription,
    errors=(404, 409, 502, 503),
)
@keys.required("write")
@idempotent(s.SubscriptionCancel)
def cancel_subscription(subscription_id: str, body: s.SubscriptionCancel) -> Response:
    """Ask the gateway to cancel; the answer is mirrored."""
    sub = subscriptions.cancel(subscription_id, keys.actor(), at_period_end=body.at_period_end)
    return present.ok(present.subscription(sub))


@bp.post("/subscriptions/<subscription_id>/resume")
@operation(
    summary="Resume a subscription set to cancel, or a paused one (where the gateway can)",
    tag="Subscriptions",
    auth="write",
    body=s.SubscriptionResume,
    response=s.Subscription,
    errors=(404, 409, 502, 503),
)
@keys.required("write")
@idempotent(s.SubscriptionResume)
def resume_subscription(subscription_id: str, body: s.SubscriptionResume) -> Response:
    """Lift the scheduled cancellation (or the pause) at the gateway; a gateway that
    cannot (Razorpay never undoes a cancellation) is a 409 with its reason."""
    return present.ok(present.subscription(subscriptions.resume(subscription_id, keys.actor())))


@bp.post("/subscriptions/<subscription_id>/change-plan")
@operation(
    summary="Move a subscription to another plan (prorated where the gateway can)",
    tag="Subscriptions",
    auth="write",
    body=s.SubscriptionPlanChange,
    response=s.Subscription,
    errors=(404, 409, 502, 503),
)
@keys.required("write")
@idempotent(s.SubscriptionPlanChange)
def change_subscription_plan(subscription_id: str, body: s.SubscriptionPlanChange) -> Response:
    """Change the plan at the gateway; the answer is mirrored."""
    sub = subscriptions.change_plan(subscription_id, body.plan_id, keys.actor())
    return present.ok(present.subscription(sub))
