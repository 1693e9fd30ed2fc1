"""Payment links: a merchant creates one (dashboard or API), the customer opens it on a
Kassa-hosted page, picks any configured gateway and pays.

A link sells one thing: a catalog product (times a quantity), or a custom amount with a
description, which becomes an unlisted product of its own (never in the storefront or the
API's catalog) so the order, stock, receipts and refunds work exactly as for any sale.
Single-use links are claimed under the link's row lock before the checkout starts, so two
customers opening the same link at once cannot both pay; a checkout that fails to start
gives the claim back. Every change is audited in its own transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import Payment, PaymentLink, PaymentLinkOrder, Product
from app.models.base import utcnow
from app.money import MoneyError, normalize_currency
from app.payments import audit, checkout
from app.payments.audit import Actor
from app.payments.errors import InvalidState, NotFound, ValidationFailed
from app.payments.orders import ItemRequest
from app.payments.uow import lock, unit_of_work

MAX_AMOUNT = 10**10


@dataclass(frozen=True)
class NewLink:
    description: str
    sku: str | None = None  # a catalog product...
    quantity: int = 1
    amount: int | None = None  # ...or a custom amount in minor units
    currency: str | None = None
    reusable: bool = False
    expires_at: datetime | None = None


def _problems(new: NewLink) -> list[dict[str, str]]:
    details = []
    if not new.description.strip() or len(new.description) > 200:
        details.append({"field": "description", "message": "Describe what is being paid for."})
    if (new.sku is None) == (new.amount is None):
        details.append({"field": "sku", "message": "Choose a product or enter an amount."})
    if not 1 <= new.quantity <= 99:
        details.append({"field": "quantity", "message": "Quantity must be between 1 and 99."})
    if new.amount is not None:
        if not 0 < new.amount <= MAX_AMOUNT:
            details.append({"field": "amount", "message": "Enter an amount above zero."})
        currency = (new.currency or "").upper()
        try:
            normalize_currency(currency)
        except MoneyError:
            details.append({"field": "currency", "message": "Enter a currency code (USD, EUR)."})
    if new.expires_at is not None and new.expires_at <= utcnow():
        details.append({"field": "expires_at", "message": "Choose an expiry in the future."})
    return details


def create_link(new: NewLink, actor: Actor) -> PaymentLink:
    """Create a link (or raise ValidationFailed / NotFound, changing nothing)."""
    details = _problems(new)
    if details:
        raise ValidationFailed("Please correct the highlighted fields.", details=details)
    with unit_of_work():
        if new.sku is not None:
            product = db.session.execute(
                select(Product).where(Product.sku == new.sku, Product.active.is_(True))
            ).scalar_one_or_none()
            if product is None:
                raise NotFound(f"Unknown product: {new.sku}")
        else:
            product = Product(
                sku="link-" + secrets.token_hex(8),
                name=new.description.strip(),
                description="",
                unit_amount=new.amount or 0,
                currency=(new.currency or "").upper(),
                stock=None,
                active=True,
                listed=False,
            )
            db.session.add(product)
        link = PaymentLink(
            description=new.description.strip(),
            product=product,
            quantity=new.quantity,
            reusable=new.reusable,
            expires_at=new.expires_at,
            created_by=str(actor),
        )
        db.session.add(link)
        db.session.flush()
        audit.record(
            actor,
            "payment_link.created",
            link,
            to_state="active",
            details={"amount": link_amount(link), "currency": product.currency},
        )
    return link


def link_amount(link: PaymentLink) -> int:
    return link.product.unit_amount * link.quantity


def get_link(public_id: str) -> PaymentLink:
    link = db.session.execute(
        select(PaymentLink).where(PaymentLink.public_id == public_id)
    ).scalar_one_or_none()
    if link is None:
        raise NotFound("No such payment link.")
    return link


def unavailable(link: PaymentLink) -> str | None:
    """Why the link cannot be paid now, in the customer's words (None when it can)."""
    if not link.active or not link.product.active:
        return "This payment link has been turned off by the shop."
    if link.expires_at is not None and link.expires_at <= utcnow():
        return "This payment link has expired. Ask the shop for a new one."
    if not link.reusable and link.used_at is not None:
        return "This payment link has already been used."
    return None


def pay_link(public_id: str, email: str, name: str, gateway: str, actor: Actor) -> Payment:
    """Start the checkout of a link's order; returns its first payment attempt."""
    with unit_of_work():
        link = lock(PaymentLink, public_id=public_id)
        if link is None:
            raise NotFound("No such payment link.")
        problem = unavailable(link)
        if problem:
            raise InvalidState(problem)
        link_id, sku, quantity = link.id, link.product.sku, link.quantity
        if not link.reusable:
            link.used_at = utcnow()  # claimed: a second customer now sees it as used
    try:
        payment = checkout.create_checkout(
            [ItemRequest(sku, quantity)], email, name, gateway, actor
        )
    except Exception:
        with unit_of_work():
            claimed = lock(PaymentLink, id=link_id)
            if claimed is not None and not claimed.reusable:
                claimed.used_at = None  # nothing was sold: give the claim back
        raise
    with unit_of_work():
        claimed = lock(PaymentLink, id=link_id)
        assert claimed is not None
        db.session.add(PaymentLinkOrder(link_id=link_id, order_id=payment.order_id))
        audit.record(
            actor,
            "payment_link.used",
            claimed,
            details={"order": payment.order.public_id, "payment": payment.public_id},
        )
    return payment


def set_active(public_id: str, active: bool, actor: Actor) -> PaymentLink:
    with unit_of_work():
        link = lock(PaymentLink, public_id=public_id)
        if link is None:
            raise NotFound("No such payment link.")
        before = "active" if link.active else "off"
        link.active = active
        audit.record(
            actor,
            "payment_link.turned_on" if active else "payment_link.turned_off",
            link,
            from_state=before,
            to_state="active" if active else "off",
        )
    return link


def list_links(limit: int = 100) -> list[PaymentLink]:
    return list(
        db.session.execute(
            select(PaymentLink).order_by(PaymentLink.created_at.desc()).limit(limit)
        ).scalars()
    )
