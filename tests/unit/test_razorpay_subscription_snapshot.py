"""Razorpay's subscription statuses in the port's words, and what the one entitlement
function makes of them: pending (a charge failed, Razorpay retries) and halted (retries
used up) are never entitled, even inside a paid cycle; a scheduled end shows as
cancel_at_period_end; a later start is a trial; paid invoices are the paid periods."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from app.gateways.razorpay import subscription_snapshot, total_count
from app.models.enums import SubscriptionStatus as S
from app.payments.entitlement import entitlement

NOW = int(time.time())
DAY = 86400


def entity(status: str, **extra: Any) -> dict[str, Any]:
    sub = {
        "id": "sub_T3stSubscr1pt",
        "entity": "subscription",
        "plan_id": "plan_T3stPlan00001",
        "customer_id": "cust_T3stCustomer1",
        "status": status,
        "current_start": NOW - DAY,
        "current_end": NOW + 29 * DAY,
        "ended_at": None,
        "charge_at": NOW + 29 * DAY,
        "start_at": NOW - DAY,
        "total_count": 120,
        "paid_count": 1,
        "remaining_count": 119,
        "created_at": NOW - 2 * DAY,
        "short_url": "https://rzp.io/i/x",
        "notes": {"subscription_id": "sub_kassa"},
    }
    sub.update(extra)
    return sub


class Row:
    """The mirrored fields, as transition_subscription would set them."""

    def __init__(self, snap: Any) -> None:
        self.status = snap.status.value
        self.current_period_end = snap.current_period_end
        self.cancel_at = snap.cancel_at
        self.cancel_at_period_end = snap.cancel_at_period_end
        self.ended_at = snap.ended_at
        self.trial_end = snap.trial_end


TABLE = [
    # Razorpay status, extra fields, port status, entitled now, reason
    ("created", {"paid_count": 0, "current_start": None, "current_end": None}, S.INCOMPLETE,
     False, "awaiting_first_payment"),
    ("authenticated", {"paid_count": 0, "current_start": None, "current_end": None,
                       "start_at": NOW - 10}, S.INCOMPLETE, False, "awaiting_first_payment"),
    ("authenticated", {"paid_count": 0, "current_start": None, "current_end": None,
                       "start_at": NOW + 14 * DAY}, S.TRIALING, True, "trialing"),
    ("active", {}, S.ACTIVE, True, "active"),
    ("active", {"cancel_at_cycle_end": True}, S.ACTIVE, True, "canceling"),
    ("active", {"remaining_count": 0}, S.ACTIVE, True, "canceling"),
    ("pending", {"charge_at": NOW + DAY}, S.PAST_DUE, False, "past_due"),
    ("halted", {"charge_at": None}, S.UNPAID, False, "unpaid"),
    ("paused", {}, S.PAUSED, False, "paused"),
    ("cancelled", {"ended_at": NOW - 5}, S.CANCELED, False, "ended"),
    ("completed", {"ended_at": NOW - 5, "remaining_count": 0}, S.CANCELED, False, "ended"),
    ("expired", {"paid_count": 0, "ended_at": NOW - 5}, S.INCOMPLETE_EXPIRED, False, "ended"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "extra", "status", "entitled", "reason"), TABLE)
def test_status_table(
    raw: str, extra: dict[str, Any], status: S, entitled: bool, reason: str
) -> None:
    snap = subscription_snapshot(entity(raw, **extra), [])
    assert snap.status is status and snap.gateway_status == raw
    access = entitlement(Row(snap), datetime.now(UTC))
    assert (access.entitled, access.reason) == (entitled, reason)
    assert snap.ref.subscription_id == "sub_kassa"
    assert snap.ref.gateway_subscription_id == "sub_T3stSubscr1pt"


def test_pending_carries_the_retry_and_a_scheduled_end_its_date() -> None:
    pending = subscription_snapshot(entity("pending", charge_at=NOW + DAY), [])
    assert pending.next_payment_attempt == datetime.fromtimestamp(NOW + DAY, UTC)
    ending = subscription_snapshot(entity("active", cancel_at_cycle_end=True), [])
    assert ending.cancel_at == ending.current_period_end and ending.cancel_at_period_end
    assert subscription_snapshot(entity("active"), []).next_payment_attempt is None


def test_paid_invoices_are_periods_and_the_newest_is_latest() -> None:
    paid = {
        "id": "inv_Pa1d0000000001",
        "subscription_id": "sub_T3stSubscr1pt",
        "status": "paid",
        "amount": 49900,
        "amount_paid": 49900,
        "currency": "INR",
        "payment_id": "pay_Pa1d0000000001",
        "order_id": "order_Pa1d00000001",
        "billing_start": NOW - DAY,
        "billing_end": NOW + 29 * DAY,
        "paid_at": NOW - DAY,
        "created_at": NOW - DAY,
    }
    issued = dict(
        paid,
        id="inv_Issued00000001",
        status="issued",
        payment_id=None,
        amount_paid=0,
        billing_start=NOW + 29 * DAY,
        created_at=NOW,
    )
    snap = subscription_snapshot(entity("pending"), [issued, paid])
    assert snap.latest_invoice_id == "inv_Issued00000001" and snap.latest_invoice_status == "issued"
    (period,) = snap.paid_invoices
    assert (period.invoice_id, period.amount, period.currency) == (
        "inv_Pa1d0000000001",
        49900,
        "INR",
    )
    assert period.gateway_payment_id == "pay_Pa1d0000000001"
    assert period.period_start == datetime.fromtimestamp(NOW - DAY, UTC)


@pytest.mark.parametrize(
    ("interval", "count", "cycles"),
    [("month", 1, 120), ("month", 3, 40), ("year", 1, 10), ("year", 20, 1), ("week", 2, 260),
     ("day", 7, 521)],
)  # fmt: skip
def test_ten_years_of_cycles(interval: str, count: int, cycles: int) -> None:
    assert total_count(interval, count) == cycles
