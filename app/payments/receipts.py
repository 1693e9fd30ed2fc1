"""Email receipts: exactly one per paid order, per fulfilled order and per succeeded refund.

The receipts table's unique (kind, subject) key is the guard: however often a
webhook arrives, only the first insert wins and only its job sends. With no SMTP
server configured, receipts are written as .eml files into instance/outbox/.
Each is written in the language the customer ordered in (orders.locale), whoever sends it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.message import EmailMessage

from flask import current_app, render_template
from flask_babel import force_locale, gettext

from app import jobs, mail
from app.extensions import db
from app.models import Order, Receipt, Refund
from app.models.base import utcnow
from app.models.enums import ORDER_PAID
from app.payments import store
from app.payments.uow import lock, unit_of_work

log = logging.getLogger(__name__)

# A claim older than this is taken to be a crashed sender: the receipt is sent again.
SENDING_LEASE = timedelta(minutes=10)


def _claim(kind: str, subject_id: str, order: Order) -> int | None:
    claimed = store.insert_or_ignore(
        Receipt,
        {
            "kind": kind,
            "subject_id": subject_id,
            "order_id": order.id,
            "recipient": order.customer_email,
            "status": "pending",
            "attempts": 0,
            "created_at": utcnow(),
        },
        conflict=("kind", "subject_id"),
    )
    return None if claimed is None else int(claimed.id)


@jobs.task("receipts.order_paid")
def order_paid(order_id: int) -> None:
    with unit_of_work():
        order = db.session.get(Order, order_id)
        if order is None:
            return
        receipt_id = _claim("order_paid", order.public_id, order)
    if receipt_id is not None:
        send(receipt_id)


@jobs.task("receipts.order_fulfilled")
def order_fulfilled(order_id: int) -> None:
    """Tell the customer their order was fulfilled (once: the receipts table's key)."""
    with unit_of_work():
        order = db.session.get(Order, order_id)
        if order is None:
            return
        receipt_id = _claim("order_fulfilled", order.public_id, order)
    if receipt_id is not None:
        send(receipt_id)


@jobs.task("receipts.refund_succeeded")
def refund_succeeded(refund_id: int) -> None:
    with unit_of_work():
        refund = db.session.get(Refund, refund_id)
        if refund is None:
            return
        receipt_id = _claim("refund_succeeded", refund.public_id, refund.payment.order)
    if receipt_id is not None:
        send(receipt_id)


def _build(receipt: Receipt) -> EmailMessage:
    order = db.session.get(Order, receipt.order_id)
    assert order is not None
    # A job or a webhook sends it, with no customer's browser to ask: the order remembers.
    with force_locale(order.locale or current_app.config["DEFAULT_LOCALE"]):
        return _compose(receipt, order)


def _compose(receipt: Receipt, order: Order) -> EmailMessage:
    refund = None
    if receipt.kind == "refund_succeeded":
        from sqlalchemy import select

        refund = db.session.execute(
            select(Refund).where(Refund.public_id == receipt.subject_id)
        ).scalar_one()
    store = current_app.config["STORE_NAME"]
    msg = EmailMessage()
    msg["From"] = current_app.config.get("MAIL_DEFAULT_SENDER") or "receipts@kassa.localhost"
    msg["To"] = receipt.recipient
    if receipt.kind == "order_fulfilled":
        subject = gettext("Your order from %(store)s is on its way", store=store)
    elif refund:
        subject = gettext("Your refund from %(store)s", store=store)
    else:
        subject = gettext("Your receipt from %(store)s", store=store)
    msg["Subject"] = f"{subject} ({order.public_id})"
    msg["Message-ID"] = f"<{receipt.kind}.{receipt.subject_id}@kassa>"
    if receipt.kind == "order_fulfilled":
        msg.set_content(render_template("emails/fulfilled.txt", order=order, store=store))
    else:
        from app.receipt_facts import facts

        context = {"order": order, "refund": refund, "store": store, "receipt": facts(order)}
        msg.set_content(render_template("emails/receipt.txt", **context))
        # The same receipt as HTML for mail apps that show it (the text part stays first).
        msg.add_alternative(render_template("emails/receipt.html", **context), subtype="html")
    return msg


def send(receipt_id: int) -> None:
    with unit_of_work():
        receipt = lock(Receipt, id=receipt_id)
        if receipt is None or receipt.status == "sent":
            return
        if (
            receipt.status == "sending"
            and receipt.sent_at
            and receipt.sent_at > utcnow() - SENDING_LEASE
        ):
            return  # another worker is sending it right now
        message = _build(receipt)
        receipt.attempts += 1
        # Claimed under the row lock: a concurrent resend sees "sending" and stays out.
        # While sending, sent_at holds when the claim was taken (its lease).
        receipt.status = "sending"
        receipt.sent_at = utcnow()
    try:
        mail.deliver(message, f"{receipt_id:08d}-{message['Message-ID'].strip('<>')}")
    except Exception as exc:
        with unit_of_work():
            receipt = lock(Receipt, id=receipt_id)
            if receipt is not None:
                receipt.last_error = f"{type(exc).__name__}: {exc}"[:500]
                receipt.status = "failed"
                receipt.sent_at = None
        raise
    with unit_of_work():
        receipt = lock(Receipt, id=receipt_id)
        if receipt is not None:
            receipt.status = "sent"
            receipt.sent_at = utcnow()
            receipt.last_error = None


@jobs.task("receipts.resend_pending")
def resend_pending() -> int:
    """Periodic: send receipts that failed, were never sent (their job was lost), or whose
    sender died mid-send; and claim receipts for recently paid orders and succeeded refunds
    whose receipt job never ran. Returns how many were (re)sent."""
    from sqlalchemy import and_, or_, select

    from app.models import RefundStatus

    now = utcnow()
    settle = now - timedelta(minutes=2)  # leave the normal path time to finish
    recent = now - timedelta(days=1)  # never mail old orders after an upgrade
    orders_without = (
        db.session.execute(
            select(Order.id)
            .outerjoin(
                Receipt, and_(Receipt.kind == "order_paid", Receipt.subject_id == Order.public_id)
            )
            .where(
                Order.status.in_(ORDER_PAID),
                Order.updated_at >= recent,
                Order.updated_at <= settle,
                Receipt.id.is_(None),
            )
        )
        .scalars()
        .all()
    )
    refunds_without = (
        db.session.execute(
            select(Refund.id)
            .outerjoin(
                Receipt,
                and_(Receipt.kind == "refund_succeeded", Receipt.subject_id == Refund.public_id),
            )
            .where(
                Refund.status == RefundStatus.SUCCEEDED,
                Refund.updated_at >= recent,
                Refund.updated_at <= settle,
                Receipt.id.is_(None),
            )
        )
        .scalars()
        .all()
    )
    stuck = (
        db.session.execute(
            select(Receipt.id).where(
                or_(
                    and_(
                        Receipt.status.in_(("pending", "failed")),
                        Receipt.created_at <= settle,
                        Receipt.attempts < 10,
                    ),
                    and_(Receipt.status == "sending", Receipt.sent_at <= now - SENDING_LEASE),
                )
            )
        )
        .scalars()
        .all()
    )
    db.session.rollback()
    count = 0
    for order_id in orders_without:
        order_paid(order_id)
        count += 1
    for refund_id in refunds_without:
        refund_succeeded(refund_id)
        count += 1
    for receipt_id in stuck:
        try:
            send(receipt_id)
            count += 1
        except Exception:  # recorded on the row; the next sweep tries again
            log.exception("receipt %s could not be sent", receipt_id)
    return count
