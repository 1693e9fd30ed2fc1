"""Emails to the shop's owners and admins when something needs them: a dispute opened
(with its evidence deadline), a refund that failed, a webhook event the inbox gave up on.

A periodic sweep (NOTIFY_INTERVAL_SECONDS) finds them and claims one row per kind and
subject in merchant_notifications (unique): however often the sweep runs, on however many
workers, each is mailed once. Only recent ones are looked at, so an upgrade never mails
old history. A failed send is retried by the next sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, render_template
from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError

from app import jobs
from app.extensions import db
from app.mail import deliver, new_message
from app.models import (
    Dispute,
    DisputeStatus,
    MerchantNotification,
    Refund,
    RefundStatus,
    Role,
    Subscription,
    SubscriptionStatus,
    User,
    WebhookEvent,
    WebhookStatus,
)
from app.models.base import utcnow
from app.payments.uow import lock, unit_of_work

log = logging.getLogger(__name__)
RECENT = timedelta(days=7)


@dataclass
class Notice:
    kind: str
    subject_id: str
    subject: str  # the email's subject line
    lines: list[str]  # what happened, one fact a line
    action: str  # what the merchant should do
    link: str  # the dashboard page to do it on


def _base() -> str:
    return str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")


def _money(amount: int, currency: str) -> str:
    from app.money import format_minor

    return format_minor(amount, currency)


def pending_notices() -> list[Notice]:
    """What needs telling and was not told yet."""
    since = utcnow() - RECENT
    told = select(MerchantNotification.subject_id).where(MerchantNotification.status == "sent")
    notices = []
    for d in db.session.execute(
        select(Dispute).where(
            Dispute.status == DisputeStatus.OPEN,
            Dispute.created_at >= since,
            Dispute.gateway_dispute_id.not_in(told),
        )
    ).scalars():
        due = d.evidence_due_by.strftime("%Y-%m-%d %H:%M UTC") if d.evidence_due_by else "—"
        notices.append(
            Notice(
                "dispute_opened",
                d.gateway_dispute_id,
                f"Dispute opened: {_money(d.amount, d.currency)} on {d.payment.public_id}",
                [
                    (
                        f"A customer disputed {_money(d.amount, d.currency)} "
                        f"({d.reason or 'no reason given'})."
                    ),
                    f"Payment {d.payment.public_id} by {d.payment.customer_email}.",
                    f"Evidence is due by {due}.",
                ],
                f"Send your evidence in the {d.gateway.capitalize()} dashboard before {due}.",
                f"{_base()}/dashboard/payments/{d.payment.public_id}",
            )
        )
    for r in db.session.execute(
        select(Refund).where(
            Refund.status == RefundStatus.FAILED,
            Refund.updated_at >= since,
            Refund.public_id.not_in(told),
        )
    ).scalars():
        notices.append(
            Notice(
                "refund_failed",
                r.public_id,
                f"Refund failed: {_money(r.amount, r.currency)} on {r.payment.public_id}",
                [
                    (
                        f"The refund of {_money(r.amount, r.currency)} to "
                        f"{r.payment.customer_email} did not go through."
                    ),
                    f"The gateway said: {r.failure_reason or 'no reason given'}.",
                ],
                "The customer has not been paid back: refund again, or pay them another way.",
                f"{_base()}/dashboard/payments/{r.payment.public_id}#refunds",
            )
        )
    for w in db.session.execute(
        select(WebhookEvent).where(
            WebhookEvent.status == WebhookStatus.DEAD,
            WebhookEvent.received_at >= since,
            and_(WebhookEvent.event_id.not_in(told)),
        )
    ).scalars():
        notices.append(
            Notice(
                "webhook_dead",
                f"{w.gateway}:{w.event_id}"[:80],
                f"Webhook event given up on: {w.gateway} {w.event_type}",
                [
                    (
                        f"{w.gateway.capitalize()} sent {w.event_type} ({w.event_id}); processing it "
                        f"failed {w.attempts} times and Kassa stopped retrying."
                    ),
                    f"Last error: {w.last_error or 'unknown'}.",
                ],
                "Fix the cause, then reprocess the event from the webhook inbox.",
                f"{_base()}/dashboard/webhooks?status=dead",
            )
        )
    for sub in db.session.execute(
        select(Subscription).where(
            Subscription.status.in_([SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID]),
            Subscription.updated_at >= since,
            Subscription.latest_invoice_id.is_not(None),
        )
    ).scalars():
        key = f"{sub.public_id}:{sub.latest_invoice_id}"[:80]
        if db.session.execute(
            select(MerchantNotification.id).where(
                MerchantNotification.kind == "subscription_past_due",
                MerchantNotification.subject_id == key,
                MerchantNotification.status == "sent",
            )
        ).first():
            continue
        retry = (
            sub.next_payment_attempt.strftime("%Y-%m-%d %H:%M UTC")
            if sub.next_payment_attempt
            else "none planned"
        )
        notices.append(
            Notice(
                "subscription_past_due",
                key,
                f"Renewal failed: {sub.plan.name} for {sub.customer_email}",
                [
                    (
                        f"The renewal of {_money(sub.plan.amount, sub.plan.currency)} "
                        f"({sub.plan.name}) for {sub.customer_email} was declined."
                    ),
                    f"The subscription is {sub.status.replace('_', ' ')}; next retry: {retry}.",
                    "The customer was emailed a link to update their payment method.",
                ],
                "Nothing, unless the retries run out: then contact the customer.",
                f"{_base()}/dashboard/subscriptions/{sub.public_id}",
            )
        )
    return notices


def _recipients() -> list[str]:
    return list(
        db.session.execute(
            select(User.email).where(
                User.active.is_(True), User.role.in_([Role.OWNER.value, Role.ADMIN.value])
            )
        ).scalars()
    )


def _claim(notice: Notice, recipients: list[str]) -> int | None:
    """The notification's row id when this sweep is the one to send it."""
    try:
        with unit_of_work():
            row = db.session.execute(
                select(MerchantNotification).where(
                    MerchantNotification.kind == notice.kind,
                    MerchantNotification.subject_id == notice.subject_id,
                )
            ).scalar_one_or_none()
            if row is None:
                row = MerchantNotification(
                    kind=notice.kind,
                    subject_id=notice.subject_id,
                    recipients=", ".join(recipients),
                )
                db.session.add(row)
                db.session.flush()
                return row.id
            return row.id if row.status != "sent" else None
    except IntegrityError:  # another worker claimed it first
        return None


def send(notice: Notice, row_id: int, recipients: list[str]) -> None:
    store = current_app.config["STORE_NAME"]
    context = {"notice": notice, "store": store}
    message = new_message(
        ", ".join(recipients),
        f"[{store}] {notice.subject}",
        render_template("emails/merchant_notice.txt", **context),
        render_template("emails/merchant_notice.html", **context),
    )
    try:
        deliver(message, f"notice-{row_id:08d}-{notice.kind}")
    except Exception as exc:
        with unit_of_work():
            row = lock(MerchantNotification, id=row_id)
            if row is not None:
                row.status, row.last_error = "failed", f"{type(exc).__name__}: {exc}"[:500]
        raise
    with unit_of_work():
        row = lock(MerchantNotification, id=row_id)
        if row is not None:
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None


@jobs.task("notifications.sweep")
def sweep() -> int:
    """Mail what needs mailing; returns how many were sent."""
    notices = pending_notices()
    recipients = _recipients()
    db.session.rollback()
    if not recipients:
        return 0
    sent = 0
    for notice in notices:
        row_id = _claim(notice, recipients)
        if row_id is None:
            continue
        try:
            send(notice, row_id, recipients)
            sent += 1
        except Exception:  # recorded on the row; the next sweep tries again
            log.exception("merchant notification %s could not be sent", notice.subject_id)
    return sent
