"""Customers and their saved payment methods (issue 18).

A customer is matched by email at checkout (created when new) in the checkout's own unit
of work; a method is saved only when the customer agreed at checkout and the gateway
reports the payment paid with the saved method's token. Removing a method detaches it at
the gateway first, so a removed method can never be charged.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import current_app, url_for
from flask_babel import force_locale, gettext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import insert, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.gateways import registry
from app.gateways.base import (
    MethodSetupRequest,
    MethodSetupSession,
    MethodSetupUpdate,
    SavedMethod,
    SetsUpMethods,
)
from app.mail import deliver, new_message
from app.models import (
    AuditEntry,
    Customer,
    GatewayCustomer,
    MethodStatus,
    Order,
    Payment,
    SavedPaymentMethod,
)
from app.models.base import public_id, utcnow
from app.models.customers import email_index
from app.payments import audit, outbox, store
from app.payments.audit import SYSTEM, Actor
from app.payments.errors import InvalidState, NotFound, ValidationFailed
from app.payments.gateway_calls import gateway_errors
from app.payments.state import Outcome
from app.payments.uow import lock, release_connection, unit_of_work


def match_customer(email: str, name: str, actor: Actor = SYSTEM) -> tuple[int, str]:
    """The id and public id of the customer with this email, created if new, in the
    caller's unit of work. Concurrent checkouts with one new email make one customer
    (insert-or-ignore on the email's lookup hash); the one that made it writes its audit
    entry and its `customer.created` outbox event in the same transaction."""
    now = utcnow()
    key = email_index(email)
    new_public_id = public_id("cus")
    row = store.insert_or_ignore(
        Customer,
        {
            "public_id": new_public_id,
            "email": email.strip().lower(),
            "email_hash": key,
            "name": name.strip(),
            "created_at": now,
            "updated_at": now,
        },
        conflict=("email_hash",),
    )
    if row is not None:
        _announce_created(new_public_id, now, actor)
        return int(row.id), new_public_id
    found = db.session.execute(
        select(Customer.id, Customer.public_id).where(Customer.email_hash == key)
    ).one()
    return int(found.id), str(found.public_id)


def _announce_created(customer_public_id: str, created_at: datetime, actor: Actor) -> None:
    """The new customer's audit entry and outbox event, as rows (the checkout's unit of
    work writes rows, not ORM objects). The event is thin: ids, no email or name (the
    outbox is not encrypted; the API's customer answers those)."""
    db.session.connection().execute(
        insert(AuditEntry.__table__),
        [audit.row(actor, "customer.created", "customer", customer_public_id)],
    )
    outbox.insert_rows(
        [
            outbox.row(
                outbox.EventType.CUSTOMER_CREATED,
                outbox.customer_data(customer_public_id, created_at),
                order_id=None,
                payment_id=None,
            )
        ]
    )


def gateway_customer_id(customer_id: int, gateway: str) -> str | None:
    """The gateway's id for a customer, if a saved method gave us one."""
    row = db.session.execute(
        select(GatewayCustomer).where(
            GatewayCustomer.customer_id == customer_id, GatewayCustomer.gateway == gateway
        )
    ).scalar_one_or_none()
    return row.gateway_customer_id if row is not None else None


def remember_gateway_customer(payment_id: int, gateway: str, gateway_customer_id: str) -> None:
    """The gateway made or found a customer for this attempt's checkout (to save its method
    on): kept for the attempt's customer unless one is kept already, in the caller's unit
    of work. Concurrent checkouts keep one (insert-or-ignore on customer and gateway)."""
    customer_id = db.session.execute(
        select(Payment.customer_id).where(Payment.id == payment_id)
    ).scalar_one_or_none()
    if customer_id is None:
        return
    store.insert_or_ignore(
        GatewayCustomer,
        {
            "customer_id": customer_id,
            "gateway": gateway,
            "gateway_customer_id": gateway_customer_id,
            "created_at": utcnow(),
        },
        conflict=("customer_id", "gateway"),
    )


def find_by_email(email: str) -> Customer | None:
    return db.session.execute(
        select(Customer).where(Customer.email_hash == email_index(email))
    ).scalar_one_or_none()


def get_customer(customer_public_id: str) -> Customer:
    customer = db.session.execute(
        select(Customer)
        .where(Customer.public_id == customer_public_id)
        .options(selectinload(Customer.methods), selectinload(Customer.gateway_ids))
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound("No such customer.")
    return customer


def customer_page(
    limit: int = 50, *, email: str | None = None, before_id: int | None = None
) -> tuple[list[Customer], int | None]:
    """Customers newest first, keyset on id (stable while checkouts add customers): the
    page, and the id to continue before when more are older. `email` is an exact match
    (the lookup hash)."""
    query = select(Customer).options(selectinload(Customer.methods))
    if email:
        query = query.where(Customer.email_hash == email_index(email))
    if before_id is not None:
        query = query.where(Customer.id < before_id)
    rows = list(
        db.session.execute(query.order_by(Customer.id.desc()).limit(limit + 1)).scalars().all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def get_method(method_public_id: str, customer: Customer | None = None) -> SavedPaymentMethod:
    query = select(SavedPaymentMethod).where(SavedPaymentMethod.public_id == method_public_id)
    if customer is not None:
        query = query.where(SavedPaymentMethod.customer_id == customer.id)
    method = db.session.execute(query).scalar_one_or_none()
    if method is None:
        raise NotFound("No such payment method.")
    return method


def record_saved_method(payment: Payment, saved: SavedMethod, actor: Actor) -> None:
    """The gateway saved the method this payment was paid with: keep its token, once, for
    the payment's customer (the caller's unit of work holds the payment locked)."""
    if not payment.save_payment_method or payment.customer_id is None or not saved.token:
        return
    exists = db.session.execute(
        select(SavedPaymentMethod.id).where(SavedPaymentMethod.source_payment_id == payment.id)
    ).first()
    if exists is not None:
        return
    method = SavedPaymentMethod(
        customer_id=payment.customer_id,
        gateway=payment.gateway,
        gateway_token=saved.token,
        brand=saved.brand,
        last4=saved.last4,
        exp_month=saved.exp_month,
        exp_year=saved.exp_year,
        wallet=saved.wallet,
        account_email=saved.account_email,
        status=MethodStatus.ACTIVE,
        source_payment_id=payment.id,
    )
    db.session.add(method)
    if saved.gateway_customer_id:
        has_id = db.session.execute(
            select(GatewayCustomer.id).where(
                GatewayCustomer.customer_id == payment.customer_id,
                GatewayCustomer.gateway == payment.gateway,
            )
        ).first()
        if has_id is None:
            db.session.add(
                GatewayCustomer(
                    customer_id=payment.customer_id,
                    gateway=payment.gateway,
                    gateway_customer_id=saved.gateway_customer_id,
                )
            )
    db.session.flush()
    audit.record(
        actor,
        "payment_method.saved",
        payment,
        details={"method": method.public_id, "brand": saved.brand, "last4": saved.last4},
    )


# --- saving a method without a payment (Stripe Checkout mode=setup) -------------------


def start_method_setup(
    customer_public_id: str,
    gateway_name: str,
    currency: str | None,
    actor: Actor,
) -> MethodSetupSession:
    """A gateway page where the customer saves a method without paying, emailed to them
    (the merchant's "send a link to save a card"). The method is saved when the gateway's
    webhook says the setup finished (record_setup_method); until then nothing changes but
    the audit trail."""
    customer = get_customer(customer_public_id)
    gateway = registry.get_gateway(gateway_name)
    # The resilience layer has the method too (it forwards it with retries).
    if not isinstance(getattr(gateway, "inner", gateway), SetsUpMethods) or not isinstance(
        gateway, SetsUpMethods
    ):
        raise InvalidState(f"{gateway.display_name} cannot save a method without a payment.")
    chosen = (currency or _latest_currency(customer) or "").upper()
    if len(chosen) != 3 or not chosen.isascii() or not chosen.isalpha():
        raise ValidationFailed(
            "Give the currency later charges will be in.",
            details=[{"field": "currency", "message": "A three-letter ISO 4217 code."}],
        )
    base: str = current_app.config["PUBLIC_BASE_URL"]
    request = MethodSetupRequest(
        customer_id=customer.public_id,
        customer_email=customer.email,
        customer_name=customer.name,
        gateway_customer_id=customer.gateway_customer_id(gateway_name),
        currency=chosen,
        success_url=base + url_for("checkout.method_setup_done", customer_id=customer.public_id),
        cancel_url=base
        + url_for("checkout.method_setup_done", customer_id=customer.public_id, canceled=1),
        idempotency_key=f"kassa-setup-{customer.public_id}-{secrets.token_hex(8)}",
    )
    customer_id, customer_email, customer_name = customer.id, customer.email, customer.name
    locale = customer_locale(customer)
    release_connection()
    with gateway_errors():
        session: MethodSetupSession = gateway.create_method_setup(request)
    with unit_of_work():
        if session.gateway_customer_id and not request.gateway_customer_id:
            _keep_gateway_customer(customer_id, gateway_name, session.gateway_customer_id)
        locked = lock(Customer, id=customer_id)
        assert locked is not None
        audit.record(
            actor,
            "payment_method.setup_started",
            locked,
            details={"gateway": gateway_name, "reference": session.reference, "currency": chosen},
        )
    _email_setup_link(customer_email, customer_name, locale, session)
    return session


def setup_gateways() -> list[tuple[str, str]]:
    """(name, label) of the active gateways that save a method without a payment."""
    found = []
    for name, label in registry.choices():
        gateway = registry.get_gateway(name)
        if isinstance(getattr(gateway, "inner", gateway), SetsUpMethods):
            found.append((name, label))
    return found


def customer_locale(customer: Customer | None) -> str:
    """The language the customer last ordered in (orders.locale): messages sent with no
    browser to ask (charges, set-up links, dunning) are written in it."""
    for payment in reversed(customer.payments if customer else []):
        if payment.order is not None and payment.order.locale:
            return payment.order.locale
    return str(current_app.config["DEFAULT_LOCALE"])


def _email_setup_link(email: str, name: str, locale: str, session: MethodSetupSession) -> None:
    """The customer's message with the gateway's page (named by the setup, so a resend
    after a crash never sends two), in their language."""
    store = current_app.config.get("STORE_NAME") or "Kassa"
    with force_locale(locale):
        greeting = gettext("Hello %(name)s,", name=name) if name else gettext("Hello,")
        text = "\n\n".join(
            [
                greeting,
                gettext(
                    "%(store)s asks you to save a payment method for your future purchases. "
                    "Nothing is charged now.",
                    store=store,
                ),
                gettext("Save it here: %(link)s", link=session.redirect_url),
                gettext(
                    "If you did not expect this, ignore this message; nothing is saved without you."
                ),
            ]
        )
        subject = gettext("Save a payment method with %(store)s", store=store)
    deliver(new_message(email, subject, text), f"setup-{session.reference}")


def _latest_currency(customer: Customer) -> str | None:
    return customer.payments[-1].currency if customer.payments else None


def _keep_gateway_customer(customer_id: int, gateway: str, gateway_customer_id: str) -> None:
    """The gateway's id for our customer, unless one is kept already (insert-or-ignore on
    (customer, gateway): two setups started at once keep the first)."""
    store.insert_or_ignore(
        GatewayCustomer,
        {
            "customer_id": customer_id,
            "gateway": gateway,
            "gateway_customer_id": gateway_customer_id,
            "created_at": utcnow(),
        },
        conflict=("customer_id", "gateway"),
    )


def record_setup_method(gateway: str, update: MethodSetupUpdate, actor: Actor) -> Outcome | None:
    """A setup finished at the gateway: keep its method for our customer, once (the same
    token again is a duplicate), audited, in the caller's unit of work. None when the
    customer is not ours."""
    customer = lock(Customer, public_id=update.customer_id)
    if customer is None:
        return None
    saved = update.saved_method
    if not saved.token:
        return None
    for existing in customer.methods:
        if existing.gateway == gateway and existing.gateway_token == saved.token:
            return Outcome.DUPLICATE
    method = SavedPaymentMethod(
        customer_id=customer.id,
        gateway=gateway,
        gateway_token=saved.token,
        brand=saved.brand,
        last4=saved.last4,
        exp_month=saved.exp_month,
        exp_year=saved.exp_year,
        wallet=saved.wallet,
        status=MethodStatus.ACTIVE,
        source_payment_id=None,
    )
    db.session.add(method)
    if saved.gateway_customer_id:
        _keep_gateway_customer(customer.id, gateway, saved.gateway_customer_id)
    db.session.flush()
    audit.record(
        actor,
        "payment_method.saved",
        customer,
        details={
            "method": method.public_id,
            "setup": update.reference,
            "brand": saved.brand,
            "last4": saved.last4,
        },
    )
    return Outcome.APPLIED


def detach_method(method_public_id: str, actor: Actor, customer: Customer | None = None) -> None:
    """Remove a saved method: detached at the gateway, then marked detached (audited). A
    method removed already stays removed."""
    method = get_method(method_public_id, customer)
    if method.status == MethodStatus.DETACHED:
        return
    gateway = registry.get_gateway(method.gateway)
    detach = getattr(gateway, "detach_method", None)
    if callable(detach):
        with gateway_errors():
            detach(method.gateway_token)
    with unit_of_work():
        locked = lock(SavedPaymentMethod, id=method.id)
        assert locked is not None
        if locked.status == MethodStatus.DETACHED:
            return
        locked.status = MethodStatus.DETACHED
        locked.detached_at = utcnow()
        audit.record(
            actor,
            "payment_method.detached",
            locked,
            details={"customer": locked.customer.public_id},
        )


# --- the customer's own page (from the receipt) -----------------------------------------

METHODS_SALT = "kassa-customer-methods"


def _methods_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=METHODS_SALT)


def methods_link(customer: Customer) -> str:
    """The customer's signed, expiring link to see and remove their saved methods."""
    token = _methods_serializer().dumps(customer.public_id)
    base: str = current_app.config["PUBLIC_BASE_URL"]
    return base + url_for("checkout.saved_methods", token=token)


def customer_for_methods_link(token: str) -> Customer:
    hours = int(current_app.config.get("PAYMENT_ACTION_LINK_HOURS", 72))
    try:
        customer_id = _methods_serializer().loads(token, max_age=hours * 3600)
    except SignatureExpired:
        raise InvalidState(
            "This link has expired; the link in your latest receipt works."
        ) from None
    except BadSignature:
        raise NotFound("No such page.") from None
    return get_customer(str(customer_id))


def methods_link_for_order(order: Order) -> str | None:
    """For a receipt: the link, when the order's customer has saved methods."""
    customer_ids = {p.customer_id for p in order.payments if p.customer_id is not None}
    if not customer_ids:
        return None
    customer = db.session.get(Customer, min(customer_ids))
    if customer is None or not any(m.active for m in customer.methods):
        return None
    return methods_link(customer)
