"""Email receipts: exactly one per paid order, per fulfilled order and per succeeded refund.

The receipts table's unique (kind, subject) key is the guard: however often a
webhook arrives, only the first insert wins and only its job sends. With no SMTP
server configured, receipts are written as .eml files into instance/outbox/.
Each is written in the language the customer ordered in (orders.locale), whoever sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from email.message import EmailMessage

from flask import current_app, render_template
from flask_babel import force_locale, gettext
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from app import jobs, mail
from app.extensions import db
from app.models import Customer, Order, Payment, Receipt, Refund
from app.models.base import utcnow
from app.models.enums import ORDER_PAID
from app.payments import store
from app.payments.uow import lock, unit_of_work

log = logging.getLogger(__name__)

# A claim older than this is taken to be a crashed sender: the receipt is sent again.
SENDING_LEASE = timedelta(minutes=10)


def _claim(kind: str, subject_id: str, order: Order, *, sending: bool = False) -> int | None:
    """Insert the receipt unless (kind, subject) has one; its id, or None. `sending`: the
    claim is also the send's lease (status sending, sent_at now), for a sender that builds
    and sends it right after this transaction."""
    now = utcnow()
    claimed = store.insert_or_ignore(
        Receipt,
        {
            "kind": kind,
            "subject_id": subject_id,
            "order_id": order.id,
            "recipient": order.customer_email,
            "status": "sending" if sending else "pending",
            "attempts": 1 if sending else 0,
            "sent_at": now if sending else None,
            "created_at": now,
        },
        conflict=("kind", "subject_id"),
    )
    return None if claimed is None else int(claimed.id)


def _orders_for_receipts(order_ids: Iterable[int]) -> tuple[dict[int, Order], list[Customer]]:
    """Orders with everything a receipt shows loaded in a fixed number of statements for
    any number of orders (items, attempts, their refunds), and the customers whose saved
    methods the receipts link to (the caller holds them while it builds: the session's
    identity map, where methods_link_for_order finds them, holds its objects weakly)."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}, []
    orders = (
        db.session.execute(
            select(Order)
            .where(Order.id.in_(ids))
            .options(
                selectinload(Order.items),
                selectinload(Order.payments).selectinload(Payment.refunds),
            )
        )
        .scalars()
        .all()
    )
    customer_ids = {p.customer_id for o in orders for p in o.payments if p.customer_id}
    customers: list[Customer] = []
    if customer_ids:
        customers = list(
            db.session.execute(
                select(Customer)
                .where(Customer.id.in_(customer_ids))
                .options(selectinload(Customer.methods))
            ).scalars()
        )
    return {o.id: o for o in orders}, customers


def _claim_and_build(
    kind: str,
    subjects: list[tuple[str, Order, Refund | None]],
    numbers: dict[str, int] | None = None,
) -> list[tuple[int, EmailMessage]]:
    """Claim the receipts of `subjects` (subject id, its order, the refund for refund
    receipts) in the caller's transaction, each not claimed before (the claim is its
    sending lease), and build their messages from what is loaded; the caller sends them
    after the commit (_deliver_claimed). A receipt claimed before is left to its sender
    (or to resend_pending). `numbers`: the orders' order_paid receipt ids by order public
    id, for refund receipts (which quote the receipt of the payment)."""
    messages: list[tuple[int, EmailMessage]] = []
    for subject_id, order, refund in subjects:
        receipt_id = _claim(kind, subject_id, order, sending=True)
        if receipt_id is None:
            continue
        receipt = Receipt(
            id=receipt_id,
            kind=kind,
            subject_id=subject_id,
            order_id=order.id,
            recipient=order.customer_email,
        )  # not added to the session: the row is written
        with force_locale(order.locale or current_app.config["DEFAULT_LOCALE"]):
            number = receipt_id if kind == "order_paid" else (numbers or {}).get(order.public_id)
            messages.append((receipt_id, _compose(receipt, order, refund, number)))
    return messages


def _deliver_claimed(messages: list[tuple[int, EmailMessage]]) -> None:
    """Send claimed receipts; mark the sent ones sent (one statement) and each failed one
    failed, then raise the first failure (the sweep sends those again)."""
    if not messages:
        return
    results = mail.deliver_all(
        [(m, f"{rid:08d}-{m['Message-ID'].strip('<>')}") for rid, m in messages]
    )
    sent = [rid for (rid, _m), error in zip(messages, results, strict=True) if error is None]
    failed = [(rid, e) for (rid, _m), e in zip(messages, results, strict=True) if e is not None]
    with unit_of_work():
        if sent:
            db.session.execute(
                update(Receipt)
                .where(Receipt.id.in_(sent), Receipt.status == "sending")
                .values(status="sent", sent_at=utcnow(), last_error=None)
                .execution_options(synchronize_session=False)
            )
        for receipt_id, exc in failed:
            receipt = lock(Receipt, id=receipt_id)
            if receipt is not None:
                receipt.last_error = f"{type(exc).__name__}: {exc}"[:500]
                receipt.status = "failed"
                receipt.sent_at = None
    if failed:
        raise failed[0][1]


@jobs.task("receipts.orders_paid")
def orders_paid(order_ids: Sequence[int]) -> None:
    """The receipts of paid orders, claimed in one transaction and sent together (the
    orders a batch of webhook events paid: state.transition_order groups them)."""
    with unit_of_work():
        orders, _customers = _orders_for_receipts(order_ids)
        messages = _claim_and_build("order_paid", [(o.public_id, o, None) for o in orders.values()])
    _deliver_claimed(messages)


@jobs.task("receipts.order_paid")
def order_paid(order_id: int) -> None:
    orders_paid([order_id])


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


@jobs.task("receipts.refunds_succeeded")
def refunds_succeeded(refund_ids: Sequence[int]) -> None:
    """The receipts of succeeded refunds, claimed in one transaction and sent together."""
    with unit_of_work():
        refunds = (
            db.session.execute(
                select(Refund)
                .where(Refund.id.in_(sorted(set(refund_ids))))
                .options(selectinload(Refund.payment))
            )
            .scalars()
            .all()
        )
        orders, _customers = _orders_for_receipts(r.payment.order_id for r in refunds)
        numbers = {
            subject_id: receipt_id
            for subject_id, receipt_id in db.session.execute(
                select(Receipt.subject_id, Receipt.id).where(
                    Receipt.kind == "order_paid",
                    Receipt.subject_id.in_([o.public_id for o in orders.values()]),
                )
            ).all()
        }
        messages = _claim_and_build(
            "refund_succeeded",
            [(r.public_id, orders[r.payment.order_id], r) for r in refunds],
            numbers,
        )
    _deliver_claimed(messages)


@jobs.task("receipts.refund_succeeded")
def refund_succeeded(refund_id: int) -> None:
    refunds_succeeded([refund_id])


def _build(receipt: Receipt) -> EmailMessage:
    order = db.session.get(Order, receipt.order_id)
    assert order is not None
    refund = None
    if receipt.kind == "refund_succeeded":
        refund = db.session.execute(
            select(Refund).where(Refund.public_id == receipt.subject_id)
        ).scalar_one()
    # A job or a webhook sends it, with no customer's browser to ask: the order remembers.
    with force_locale(order.locale or current_app.config["DEFAULT_LOCALE"]):
        return _compose(receipt, order, refund)


def _compose(
    receipt: Receipt, order: Order, refund: Refund | None, number: int | None = None
) -> EmailMessage:
    """The message; `number`: the order's order_paid receipt id when known (else looked up)."""
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
        from app.payments.customers import methods_link_for_order
        from app.receipt_facts import facts

        context = {
            "order": order,
            "refund": refund,
            "store": store,
            # An order_paid receipt numbers itself (no look-up of its own id).
            "receipt": facts(order, number),
            "methods_url": None if refund else methods_link_for_order(order),
        }
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
    from sqlalchemy import and_, or_

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
