"""Subscriptions: plans, starting one at a gateway, and keeping our row a mirror of it.

Nothing here guesses a subscription's state. Every event about one (and every change we
ask for) ends in `sync_locked`: the row is locked, the gateway's subscription re-fetched
and handed to state.transition_subscription, and each paid invoice the gateway lists
becomes one payment (with its own order) exactly once. Because the re-fetch happens under
the row's lock, the last one applied is the newest: every order of events converges.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, url_for
from flask_babel import force_locale, format_datetime, gettext
from sqlalchemy import func, select

from app import jobs
from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    Gateway,
    GatewayError,
    InvoiceSnapshot,
    LimitsSubscriptionChanges,
    PagedSubscriptionCheckout,
    PlanSpec,
    ReturnParams,
    ReturnRejected,
    SubscriptionEvent,
    SubscriptionRef,
    SubscriptionRequest,
    Subscriptions,
    SubscriptionSnapshot,
)
from app.mail import deliver, new_message
from app.models import (
    MerchantNotification,
    Order,
    OrderItem,
    OrderStatus,
    Payment,
    PaymentStatus,
    Plan,
    PlanInterval,
    Subscription,
    SubscriptionStatus,
)
from app.models.base import public_id as new_public_id
from app.models.base import utcnow
from app.models.enums import SUBSCRIPTION_OPEN
from app.money import MoneyError, normalize_currency
from app.payments import audit, state
from app.payments.audit import Actor
from app.payments.customers import customer_locale, find_by_email
from app.payments.errors import (
    GatewayNotAvailable,
    InvalidState,
    NotFound,
    PaymentGatewayFailed,
    SignatureInvalid,
    ValidationFailed,
)
from app.payments.state import Outcome
from app.payments.uow import lock, release_connection, unit_of_work

log = logging.getLogger(__name__)
SS = SubscriptionStatus

# The events whose subscription is re-fetched (the adapters name which subscription).
DUNNING = (SS.PAST_DUE, SS.UNPAID)


# --- plans ---------------------------------------------------------------------------


def create_plan(
    *,
    sku: str,
    name: str,
    amount: int,
    currency: str,
    interval: str,
    interval_count: int = 1,
    trial_days: int = 0,
    description: str = "",
    actor: Actor,
) -> Plan:
    """A new recurring price (its gateway objects are made when first subscribed to)."""
    problems = []
    if not sku or len(sku) > 64:
        problems.append({"field": "sku", "message": "1 to 64 characters."})
    if not name or len(name) > 200:
        problems.append({"field": "name", "message": "1 to 200 characters."})
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        problems.append({"field": "amount", "message": "A positive integer in minor units."})
    try:
        currency = normalize_currency(currency)
    except MoneyError:
        problems.append({"field": "currency", "message": "An ISO 4217 currency code."})
    if interval not in {i.value for i in PlanInterval}:
        problems.append({"field": "interval", "message": "One of day, week, month, year."})
    if not isinstance(interval_count, int) or not 1 <= interval_count <= 365:
        problems.append({"field": "interval_count", "message": "1 to 365."})
    if not isinstance(trial_days, int) or not 0 <= trial_days <= 730:
        problems.append({"field": "trial_days", "message": "0 to 730."})
    if problems:
        raise ValidationFailed("The plan is not valid.", details=problems)
    with unit_of_work():
        if db.session.execute(select(Plan.id).where(Plan.sku == sku)).first():
            raise ValidationFailed(
                "A plan with this SKU exists.", details=[{"field": "sku", "message": "Taken."}]
            )
        plan = Plan(
            sku=sku,
            name=name,
            amount=amount,
            currency=currency,
            interval=interval,
            interval_count=interval_count,
            trial_days=trial_days,
            description=description,
        )
        db.session.add(plan)
        audit.record(actor, "plan.created", plan, details={"amount": amount, "currency": currency})
    return plan


def plans(active_only: bool = True) -> list[Plan]:
    stmt = select(Plan).order_by(Plan.id)
    if active_only:
        stmt = stmt.where(Plan.active.is_(True))
    return list(db.session.execute(stmt).scalars())


def get_plan(public_id: str) -> Plan:
    plan = db.session.execute(select(Plan).where(Plan.public_id == public_id)).scalar_one_or_none()
    if plan is None:
        raise NotFound("No such plan.")
    return plan


# --- starting ------------------------------------------------------------------------


def _gateway(name: str) -> Subscriptions:
    gateway: Gateway = registry.get_gateway(name)
    inner = getattr(gateway, "inner", gateway)
    if not isinstance(inner, Subscriptions):
        raise GatewayNotAvailable(f"{gateway.display_name} does not offer subscriptions here.")
    # The resilience layer has no subscription methods of its own: it forwards them to the
    # adapter (ResilientGateway.__getattr__), so the adapter is what answers either way.
    return inner


def _external(endpoint: str, **values: Any) -> str:
    return str(current_app.config["PUBLIC_BASE_URL"]) + url_for(endpoint, **values)


def start(
    plan_public_id: str, *, email: str, name: str, gateway_name: str, actor: Actor
) -> Subscription:
    """Start a subscription: our row first (incomplete), then the gateway's checkout.
    The customer is sent to `checkout_url`; the gateway's events make it active."""
    gateway = _gateway(gateway_name)
    email = (email or "").strip()
    if "@" not in email or len(email) > 254:
        raise ValidationFailed(
            "Enter a valid email address.", details=[{"field": "email", "message": "Invalid."}]
        )
    with unit_of_work():
        plan = get_plan(plan_public_id)
        if not plan.active:
            raise InvalidState("This plan is no longer offered.")
        sub_public_id = new_public_id("sub")
        sub = Subscription(
            public_id=sub_public_id,
            idempotency_key=f"kassa-subscription-{sub_public_id}",
            plan=plan,
            gateway=gateway_name,
            customer_email=email,
            customer_name=(name or "").strip()[:200],
            status=SS.INCOMPLETE,
        )
        db.session.add(sub)
        db.session.flush()
        audit.record(actor, "subscription.created", sub, to_state=SS.INCOMPLETE)
        request = SubscriptionRequest(
            subscription_id=sub.public_id,
            plan=PlanSpec(
                plan_id=plan.public_id,
                name=plan.name,
                amount=plan.amount,
                currency=plan.currency,
                interval=plan.interval,
                interval_count=plan.interval_count,
                gateway_plan_id=plan.gateway_id(gateway_name),
            ),
            customer_email=email,
            customer_name=sub.customer_name,
            trial_days=plan.trial_days,
            success_url=customer_url(sub.public_id),
            cancel_url=_external("checkout.plan_page", public_id=plan.public_id),
            idempotency_key=sub.idempotency_key,
        )
        sub_id, plan_id = sub.id, plan.id
    release_connection()
    try:
        checkout = gateway.create_subscription(request)
    except GatewayError as exc:
        with unit_of_work():
            row = lock(Subscription, id=sub_id)
            assert row is not None
            audit.record(
                actor,
                "subscription.gateway_error",
                row,
                details={"code": exc.code, "message": exc.message},
            )
        raise PaymentGatewayFailed(exc.code, exc.message) from exc
    with unit_of_work():
        row = lock(Subscription, id=sub_id)
        assert row is not None
        row.checkout_reference = checkout.reference
        row.checkout_url = checkout.redirect_url
        if checkout.gateway_subscription_id:
            row.gateway_subscription_id = checkout.gateway_subscription_id
        if checkout.gateway_plan_id:
            plan_row = lock(Plan, id=plan_id)
            assert plan_row is not None
            if gateway_name == "stripe":
                plan_row.stripe_price_id = checkout.gateway_plan_id
                plan_row.stripe_product_id = (
                    checkout.gateway_product_id or plan_row.stripe_product_id
                )
            elif gateway_name == "razorpay":
                plan_row.razorpay_plan_id = checkout.gateway_plan_id
    return row


def _paged(sub: Subscription) -> PagedSubscriptionCheckout | None:
    gateway = registry.get_gateway(sub.gateway)
    return gateway if isinstance(gateway, PagedSubscriptionCheckout) else None


def paged_checkout(public_id: str) -> tuple[Subscription, dict[str, Any] | None]:
    """A subscription authorised on our own page (Razorpay Checkout): the options its
    script opens with, or None once there is nothing left to authorise."""
    sub = get_subscription(public_id)
    gateway = _paged(sub)
    if gateway is None:
        raise NotFound("No such subscription checkout.")
    if sub.status != SS.INCOMPLETE or not sub.gateway_subscription_id:
        return sub, None
    options = gateway.subscription_checkout_options(
        gateway_subscription_id=sub.gateway_subscription_id,
        store_name=str(current_app.config["STORE_NAME"]),
        description=sub.plan.name[:255],
        customer_name=sub.customer_name,
        customer_email=sub.customer_email,
        callback_url=_external("checkout.razorpay_subscription_callback", public_id=public_id),
        subscription_id=sub.public_id,
    )
    return sub, options


def confirm_return(public_id: str, fields: dict[str, str], actor: Actor) -> Subscription:
    """The gateway's checkout came back: verify its signature against the subscription id
    WE stored (SignatureInvalid when it does not verify; nothing changes), then mirror the
    re-fetched subscription like any event would."""
    sub = get_subscription(public_id)
    gateway = _paged(sub)
    if gateway is None or not sub.gateway_subscription_id:
        raise NotFound("No such subscription checkout.")
    sub_id, ref = sub.id, _ref(sub)
    release_connection()
    started = utcnow()
    try:
        snapshot = gateway.confirm_subscription_return(ref, ReturnParams(args=fields))
    except ReturnRejected as exc:
        with unit_of_work():
            row = lock(Subscription, id=sub_id)
            assert row is not None
            audit.record(actor, "subscription.return_rejected", row, details={"why": str(exc)})
        raise SignatureInvalid(str(exc)) from exc
    except GatewayError as exc:
        raise PaymentGatewayFailed(exc.code, exc.message) from exc
    apply_fetched(Fetched(sub_id, snapshot, started, "checkout_return"), actor)
    return get_subscription(public_id)


def gateway_choices() -> list[tuple[str, str]]:
    """(name, label) of the active gateways that offer subscriptions, for forms."""
    return [
        (name, gw.display_name)
        for name, gw in registry.gateways().items()
        if isinstance(getattr(gw, "inner", gw), Subscriptions)
    ]


def customer_token(public_id: str) -> str:
    """The signature in a customer's link to their subscription's page (no login)."""
    key = hashlib.sha256(str(current_app.config["SECRET_KEY"]).encode() + b"kassa-sub").digest()
    return hmac.new(key, public_id.encode(), hashlib.sha256).hexdigest()[:32]


def customer_subscription(public_id: str, token: str) -> Subscription:
    """The subscription a signed customer link names; NotFound for a wrong signature."""
    if not hmac.compare_digest(customer_token(public_id), token or ""):
        raise NotFound("No such subscription.")
    return get_subscription(public_id)


def customer_url(public_id: str) -> str:
    return _external("checkout.subscription_page", public_id=public_id, t=customer_token(public_id))


# --- the mirror ----------------------------------------------------------------------


def find_subscription(gateway: str, ref: SubscriptionRef) -> Subscription | None:
    """Our subscription for a gateway reference, locked; foreign ones find nothing."""
    return _find(gateway, ref, locked=True)


def _find(gateway: str, ref: SubscriptionRef, *, locked: bool) -> Subscription | None:
    tries: list[dict[str, Any]] = []
    if ref.gateway_subscription_id:
        tries.append({"gateway_subscription_id": ref.gateway_subscription_id})
    if ref.reference:
        tries.append({"checkout_reference": ref.reference})
    if ref.subscription_id:
        tries.append({"public_id": ref.subscription_id})
    for filters in tries:
        if locked:
            sub = lock(Subscription, gateway=gateway, **filters)
        else:
            sub = db.session.execute(
                select(Subscription).filter_by(gateway=gateway, **filters)
            ).scalar_one_or_none()
        if sub is not None:
            if (
                ref.gateway_subscription_id
                and sub.gateway_subscription_id
                and ref.gateway_subscription_id != sub.gateway_subscription_id
            ):
                continue  # metadata naming another subscription: not this one
            return sub
    return None


def _ref(sub: Subscription) -> SubscriptionRef:
    return SubscriptionRef(
        subscription_id=sub.public_id,
        reference=sub.checkout_reference,
        gateway_subscription_id=sub.gateway_subscription_id,
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """A subscription re-fetched from its gateway, and when the fetch started."""

    sub_id: int
    snapshot: SubscriptionSnapshot
    started_at: datetime
    reason: str


def fetch_for_event(gateway_name: str, event: SubscriptionEvent) -> Fetched | None:
    """Re-fetch the subscription an event names, outside any write transaction (the
    gateway is another server; no row lock is held while it answers). None: not ours."""
    sub = _find(gateway_name, event.ref, locked=False)
    if sub is None:
        release_connection()
        return None
    sub_id, ref = sub.id, _ref(sub)
    release_connection()
    started = utcnow()
    snapshot = _gateway(gateway_name).retrieve_subscription(ref)
    return Fetched(sub_id, snapshot, started, event.event_type)


def apply_fetched(fetched: Fetched, actor: Actor) -> Outcome:
    """Mirror a re-fetch onto its locked row, unless a fetch that started later was applied
    already (then this one may be older news: stale). The last event after the gateway's
    last change starts the newest fetch, so every order of events ends in its state."""
    with unit_of_work():
        sub = lock(Subscription, id=fetched.sub_id)
        assert sub is not None
        if sub.synced_at is not None and fetched.started_at <= sub.synced_at:
            audit.record(
                actor,
                "subscription.fetch_stale",
                sub,
                from_state=sub.status,
                to_state=fetched.snapshot.status,
                details={"reason": fetched.reason},
            )
            return Outcome.STALE
        outcome = apply_snapshot(sub, fetched.snapshot, actor, reason=fetched.reason)
        sub.synced_at = fetched.started_at
        return outcome


def apply_snapshot(
    sub: Subscription, snapshot: SubscriptionSnapshot, actor: Actor, *, reason: str
) -> Outcome:
    """Mirror a fresh snapshot onto a locked subscription, and record its paid periods."""
    before = SubscriptionStatus(sub.status)
    if snapshot.customer_email and snapshot.customer_email != sub.customer_email:
        sub.customer_email = snapshot.customer_email  # changed in the gateway's portal
    outcome = state.transition_subscription(sub, snapshot, actor, reason=reason)
    for invoice in snapshot.paid_invoices:
        record_paid_period(sub, invoice, actor)
    if sub.status in DUNNING and before not in DUNNING and sub.latest_invoice_id:
        jobs.enqueue("subscriptions.renewal_failed", sub.id, sub.latest_invoice_id)
    return outcome


def record_paid_period(sub: Subscription, invoice: InvoiceSnapshot, actor: Actor) -> Payment | None:
    """One paid invoice: one order and one succeeded payment, once (unique per gateway and
    invoice id). Refunds then work as for any payment."""
    exists = db.session.execute(
        select(Payment.id).where(
            Payment.gateway == sub.gateway, Payment.gateway_invoice_id == invoice.invoice_id
        )
    ).first()
    if exists:
        return None
    plan = sub.plan
    if invoice.currency.upper() != plan.currency or invoice.amount <= 0:
        audit.record(
            actor,
            "subscription.invoice_mismatch",
            sub,
            details={
                "invoice": invoice.invoice_id,
                "amount": invoice.amount,
                "currency": invoice.currency,
            },
        )
        return None
    now = utcnow()
    order = Order(
        currency=plan.currency,
        total_amount=invoice.amount,
        customer_email=sub.customer_email,
        customer_name=sub.customer_name or sub.customer_email,
        status=OrderStatus.PENDING,
        stock_reserved=True,  # nothing in stock to hold: a period is not a product
        expires_at=now + timedelta(minutes=1),
    )
    order.items.append(
        OrderItem(sku=plan.sku, name=plan.name, unit_amount=invoice.amount, quantity=1)
    )
    payment = Payment(
        order=order,
        gateway=sub.gateway,
        status=PaymentStatus.PROCESSING,
        amount=invoice.amount,
        currency=plan.currency,
        idempotency_key=f"kassa-invoice-{sub.gateway}-{invoice.invoice_id}"[:80],
        gateway_reference=invoice.reference,
        gateway_payment_id=invoice.gateway_payment_id,
        gateway_invoice_id=invoice.invoice_id,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        customer_email=sub.customer_email,
        subscription=sub,
    )
    db.session.add_all([order, payment])
    db.session.flush()  # the order's and payment's public ids, for the audit and outbox rows
    audit.record(
        actor,
        "subscription.period_paid",
        sub,
        details={"invoice": invoice.invoice_id, "amount": invoice.amount},
        payment=payment,
    )
    state.transition_payment(
        payment, PaymentStatus.SUCCEEDED, actor, reason=f"invoice {invoice.invoice_id} paid"
    )
    return payment


def sync(public_id: str, actor: Actor, *, reason: str = "sync") -> Subscription:
    """Re-fetch one subscription now (the dashboard's button, reconciliation)."""
    sub = get_subscription(public_id)
    if sub.gateway_subscription_id is None:
        return sub
    sub_id, ref, gateway = sub.id, _ref(sub), _gateway(sub.gateway)
    release_connection()
    started = utcnow()
    try:
        snapshot = gateway.retrieve_subscription(ref)
    except GatewayError as exc:
        raise PaymentGatewayFailed(exc.code, exc.message) from exc
    apply_fetched(Fetched(sub_id, snapshot, started, reason), actor)
    return get_subscription(public_id)


# --- changing ------------------------------------------------------------------------


def cancel(public_id: str, actor: Actor, *, at_period_end: bool) -> Subscription:
    """Cancel now, or at the end of the paid period; the gateway's answer is mirrored."""
    return _change(public_id, actor, "cancel_at_period_end" if at_period_end else "cancel")


def resume(public_id: str, actor: Actor) -> Subscription:
    """Lift a scheduled cancellation (the subscription renews again)."""
    return _change(public_id, actor, "resume")


def _change(public_id: str, actor: Actor, what: str) -> Subscription:
    with unit_of_work():
        sub = lock(Subscription, public_id=public_id)
        if sub is None:
            raise NotFound("No such subscription.")
        if sub.status not in SUBSCRIPTION_OPEN:
            raise InvalidState("This subscription has ended.")
        if what == "resume" and not (
            sub.cancel_at_period_end or sub.cancel_at or sub.status == SS.PAUSED
        ):
            raise InvalidState("This subscription is not set to cancel.")
        if what == "cancel_at_period_end" and sub.cancel_at_period_end:
            raise InvalidState("This subscription already cancels at the end of its period.")
        if sub.gateway_subscription_id is None:
            raise InvalidState("This subscription has not started at the gateway yet.")
        _refuse_unsupported(sub, what)
        audit.record(actor, f"subscription.{what}_requested", sub, from_state=sub.status)
        sub_id, ref, gateway = sub.id, _ref(sub), _gateway(sub.gateway)
    release_connection()
    started = utcnow()
    try:
        if what == "resume":
            snapshot = gateway.resume_subscription(ref)
        else:
            snapshot = gateway.cancel_subscription(
                ref, at_period_end=what == "cancel_at_period_end"
            )
    except GatewayError as exc:
        with unit_of_work():
            row = lock(Subscription, id=sub_id)
            assert row is not None
            audit.record(
                actor,
                "subscription.gateway_error",
                row,
                details={"code": exc.code, "message": exc.message, "asked": what},
            )
        raise PaymentGatewayFailed(exc.code, exc.message) from exc
    apply_fetched(Fetched(sub_id, snapshot, started, what), actor)
    return get_subscription(public_id)


def plan_change_choices(sub: Subscription) -> list[Plan]:
    """The plans a running subscription can move to: offered, same currency, not its own."""
    if sub.status not in SUBSCRIPTION_OPEN or sub.gateway_subscription_id is None:
        return []
    return [p for p in plans() if p.currency == sub.plan.currency and p.id != sub.plan_id]


def refused_change(sub: Subscription, what: str) -> str | None:
    """The gateway's reason it cannot make this change at all (Razorpay: no undoing a
    cancellation), or None. Local: pages use it to show the reason instead of a button."""
    try:
        gateway = registry.get_gateway(sub.gateway)
    except GatewayNotAvailable:
        return None  # the gateway is not configured: the change itself will say so
    inner = getattr(gateway, "inner", gateway)
    if isinstance(inner, LimitsSubscriptionChanges):
        return inner.unsupported_change(
            what, SubscriptionStatus(sub.status), bool(sub.cancel_at_period_end or sub.cancel_at)
        )
    return None


def _refuse_unsupported(sub: Subscription, what: str) -> None:
    """InvalidState with the gateway's reason, before anything is recorded or sent."""
    reason = refused_change(sub, what)
    if reason:
        raise InvalidState(reason)


def change_plan(public_id: str, plan_public_id: str, actor: Actor) -> Subscription:
    """Move a running subscription to another plan of the same currency; the gateway
    prorates where it can (Stripe). The subscription then follows the new plan."""
    with unit_of_work():
        sub = lock(Subscription, public_id=public_id)
        if sub is None:
            raise NotFound("No such subscription.")
        plan = get_plan(plan_public_id)
        if sub.status not in SUBSCRIPTION_OPEN or sub.gateway_subscription_id is None:
            raise InvalidState("Only a running subscription can change plan.")
        if plan.id == sub.plan_id:
            raise InvalidState("The subscription is on this plan already.")
        if plan.currency != sub.plan.currency:
            raise InvalidState("A plan change keeps the currency.")
        _refuse_unsupported(sub, "change_plan")
        audit.record(
            actor,
            "subscription.plan_change_requested",
            sub,
            details={"from": sub.plan.public_id, "to": plan.public_id},
        )
        spec = PlanSpec(
            plan_id=plan.public_id,
            name=plan.name,
            amount=plan.amount,
            currency=plan.currency,
            interval=plan.interval,
            interval_count=plan.interval_count,
            gateway_plan_id=plan.gateway_id(sub.gateway),
        )
        sub_id, plan_id, ref, gateway = sub.id, plan.id, _ref(sub), _gateway(sub.gateway)
    release_connection()
    started = utcnow()
    try:
        snapshot = gateway.change_plan(ref, spec)
    except GatewayError as exc:
        raise PaymentGatewayFailed(exc.code, exc.message) from exc
    with unit_of_work():
        row = lock(Subscription, id=sub_id)
        assert row is not None
        row.plan_id = plan_id
    apply_fetched(Fetched(sub_id, snapshot, started, "plan_change"), actor)
    return get_subscription(public_id)


# --- reading -------------------------------------------------------------------------


def get_subscription(public_id: str) -> Subscription:
    sub = db.session.execute(
        select(Subscription).where(Subscription.public_id == public_id)
    ).scalar_one_or_none()
    if sub is None:
        raise NotFound("No such subscription.")
    return sub


def list_subscriptions(
    *,
    status: str | None = None,
    gateway: str | None = None,
    plan: str | None = None,
    email: str | None = None,
    limit: int = 100,
) -> list[Subscription]:
    stmt = select(Subscription).order_by(Subscription.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Subscription.status == status)
    if gateway:
        stmt = stmt.where(Subscription.gateway == gateway)
    if plan:
        stmt = stmt.join(Plan).where(Plan.public_id == plan)
    if email:
        stmt = stmt.where(func.lower(Subscription.customer_email) == email.strip().lower())
    return list(db.session.execute(stmt).scalars())


def open_subscription_ids(limit: int = 500) -> list[str]:
    """Subscriptions still running at their gateway (reconciliation re-fetches them)."""
    stmt = (
        select(Subscription.public_id)
        .where(Subscription.status.in_([s.value for s in SUBSCRIPTION_OPEN]))
        .where(Subscription.gateway_subscription_id.is_not(None))
        .order_by(Subscription.id)
        .limit(limit)
    )
    return list(db.session.execute(stmt).scalars())


# --- dunning -------------------------------------------------------------------------


@jobs.task("subscriptions.renewal_failed")
def renewal_failed(subscription_id: int, invoice_id: str) -> bool:
    """Email the customer a link to update their payment method, once per failed invoice
    (claimed in merchant_notifications, the exactly-once guard for mails)."""
    with unit_of_work():
        sub = db.session.get(Subscription, subscription_id)
        if sub is None or sub.status not in DUNNING:
            return False
        key = f"{sub.public_id}:{invoice_id}"[:80]
        if db.session.execute(
            select(MerchantNotification.id).where(
                MerchantNotification.kind == "customer_dunning",
                MerchantNotification.subject_id == key,
            )
        ).first():
            return False
        row = MerchantNotification(
            kind="customer_dunning", subject_id=key, recipients=sub.customer_email
        )
        db.session.add(row)
        db.session.flush()
        row_id = row.id
        email, plan_name, retry = sub.customer_email, sub.plan.name, sub.next_payment_attempt
        ref, gateway_name, public_id = _ref(sub), sub.gateway, sub.public_id
        locale = customer_locale(find_by_email(email))
    release_connection()
    link = _gateway(gateway_name).billing_portal_url(ref, customer_url(public_id))
    store = current_app.config["STORE_NAME"]
    with force_locale(locale):
        when = format_datetime(retry, "medium") + " UTC" if retry else gettext("none planned")
        text = "\n\n".join(
            [
                gettext(
                    "The renewal of your %(plan)s subscription with %(store)s did not go through.",
                    plan=plan_name,
                    store=store,
                ),
                gettext("Update your payment method here: %(link)s", link=link),
                gettext("Next automatic retry: %(when)s.", when=when),
            ]
        )
        subject = gettext("[%(store)s] Your payment did not go through", store=store)
    deliver(new_message(email, subject, text), f"dunning-{row_id:08d}")
    with unit_of_work():
        locked = lock(MerchantNotification, id=row_id)
        if locked is not None:
            locked.status, locked.sent_at = "sent", utcnow()
    return True


# --- figures -------------------------------------------------------------------------

# Periods per month of each interval, for monthly recurring revenue.
_PER_MONTH = {"day": 365 / 12, "week": 52 / 12, "month": 1.0, "year": 1 / 12}


@dataclass(frozen=True, slots=True)
class Metrics:
    active: int  # subscribers entitled now (active or trialing)
    mrr: dict[str, int]  # per currency, minor units a month (trials excluded)
    churned: int  # ended in the window
    churn_rate: float | None  # churned / (active at the start of the window, estimated)
    past_due: int
    window_days: int


def metrics(days: int = 30) -> Metrics:
    """Active subscribers, MRR per currency and churn over the last `days` days."""
    since = utcnow() - timedelta(days=days)
    rows = db.session.execute(
        select(Subscription.status, Plan.amount, Plan.currency, Plan.interval, Plan.interval_count)
        .join(Plan)
        .where(Subscription.status.in_([SS.ACTIVE, SS.TRIALING, SS.PAST_DUE]))
    ).all()
    active, past_due = 0, 0
    mrr: dict[str, int] = {}
    for status, amount, currency, interval, count in rows:
        if status == SS.PAST_DUE:
            past_due += 1
            continue
        active += 1
        if status == SS.ACTIVE:
            monthly = amount * _PER_MONTH[interval] / count
            mrr[currency] = mrr.get(currency, 0) + round(monthly)
    churned = int(
        db.session.execute(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.status == SS.CANCELED, Subscription.ended_at >= since)
        ).scalar_one()
    )
    base = active + past_due + churned
    return Metrics(
        active=active,
        mrr=dict(sorted(mrr.items())),
        churned=churned,
        churn_rate=churned / base if base else None,
        past_due=past_due,
        window_days=days,
    )


def timeline(sub: Subscription) -> list[Any]:
    """The subscription's audit entries, oldest first (its periods' payments have theirs)."""
    from app.models import AuditEntry

    return list(
        db.session.execute(
            select(AuditEntry)
            .where(AuditEntry.object_type == "subscription", AuditEntry.object_id == sub.public_id)
            .order_by(AuditEntry.id)
        ).scalars()
    )
