"""The entitlement function as a table: every status, against every shape of dates
(in a paid period, past it, inside and past the grace, with each kind of scheduled end),
and the state machine's subscription table."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from app.models.enums import SubscriptionStatus as S
from app.payments.entitlement import RENEWAL_GRACE, entitlement
from app.payments.state import (
    SUBSCRIPTION_RANK,
    SUBSCRIPTION_TRANSITIONS,
    Outcome,
    subscription_outcome,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
START, END = NOW - 10 * DAY, NOW + 20 * DAY  # a paid period around NOW


@dataclass
class Sub:
    status: str
    current_period_end: datetime | None = END
    cancel_at: datetime | None = None
    cancel_at_period_end: bool = False
    ended_at: datetime | None = None
    trial_end: datetime | None = None


# Date shapes: (name, fields). Each is combined with every status below.
SHAPES = {
    "in_period": {},
    "in_period_cancel_at_period_end": {"cancel_at_period_end": True},
    "in_period_cancel_at_before_end": {"cancel_at": NOW + 5 * DAY},
    "in_period_cancel_at_after_end": {"cancel_at": END + 30 * DAY},
    "cancel_at_passed": {"cancel_at": NOW - DAY},
    "period_just_ended": {"current_period_end": NOW - RENEWAL_GRACE / 2},
    "period_long_ended": {"current_period_end": NOW - 2 * RENEWAL_GRACE},
    "period_ended_cancel_at_period_end": {
        "current_period_end": NOW - RENEWAL_GRACE / 2,
        "cancel_at_period_end": True,
    },
    "ended_at_passed": {"ended_at": NOW - DAY},
    "ended_at_future": {"ended_at": NOW + 5 * DAY, "cancel_at": NOW + 5 * DAY},
    "trial_running": {"trial_end": NOW + 3 * DAY},
    "trial_over": {"trial_end": NOW - 2 * RENEWAL_GRACE},
    "no_period": {"current_period_end": None},
}

YES = {
    # (entitled, until, renews, reason) for statuses that can be entitled.
    "in_period": (True, END, True, "active"),
    "in_period_cancel_at_period_end": (True, END, False, "canceling"),
    "in_period_cancel_at_before_end": (True, NOW + 5 * DAY, False, "canceling"),
    "in_period_cancel_at_after_end": (True, END, True, "active"),
    "cancel_at_passed": (False, NOW - DAY, False, "ended"),
    "period_just_ended": (True, NOW - RENEWAL_GRACE / 2 + RENEWAL_GRACE, True, "renewal_due"),
    "period_long_ended": (False, NOW - 2 * RENEWAL_GRACE, False, "renewal_overdue"),
    "period_ended_cancel_at_period_end": (False, NOW - RENEWAL_GRACE / 2, False, "ended"),
    "ended_at_passed": (False, None, False, "ended"),
    "ended_at_future": (True, NOW + 5 * DAY, False, "canceling"),
    "trial_running": (True, END, True, "active"),  # active: the trial is over for it
    "trial_over": (True, END, True, "active"),
    "no_period": (False, None, False, "no_period"),
}
TRIALING = {
    **YES,
    "in_period": (True, END, True, "trialing"),
    "in_period_cancel_at_after_end": (True, END, True, "trialing"),
    "trial_running": (True, NOW + 3 * DAY, True, "trialing"),
    "trial_over": (False, NOW - 2 * RENEWAL_GRACE, False, "renewal_overdue"),
}
NO = {
    S.INCOMPLETE: "awaiting_first_payment",
    S.INCOMPLETE_EXPIRED: "never_paid",
    S.PAST_DUE: "past_due",
    S.UNPAID: "unpaid",
    S.PAUSED: "paused",
    S.CANCELED: "ended",
}


def expected(status: S, shape: str) -> tuple[bool, datetime | None, bool, str]:
    if shape == "ended_at_passed":
        return (False, None, False, "ended")
    if status in NO:
        return (False, None, False, NO[status])
    return (TRIALING if status == S.TRIALING else YES)[shape]


@pytest.mark.parametrize(("status", "shape"), list(itertools.product(S, SHAPES)))
def test_entitlement_table(status: S, shape: str) -> None:
    got = entitlement(Sub(status=status.value, **SHAPES[shape]), NOW)
    assert (got.entitled, got.until, got.renews, got.reason) == expected(status, shape)
    assert bool(got) is got.entitled


def test_past_due_is_never_entitled_even_inside_a_period() -> None:
    sub = Sub(status="past_due", current_period_end=NOW + 29 * DAY)
    assert not entitlement(sub, NOW)


def test_the_boundary_itself_is_outside_the_period() -> None:
    sub = Sub(status="active", cancel_at_period_end=True, current_period_end=NOW)
    assert not entitlement(sub, NOW)
    assert entitlement(sub, NOW - timedelta(microseconds=1))


# --- the subscription table ----------------------------------------------------------

A, D, ST, I = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.STALE, Outcome.INVALID
RUNNING = [S.TRIALING, S.ACTIVE, S.PAST_DUE, S.UNPAID, S.PAUSED]


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_subscription_outcome_table(current: S, target: S) -> None:
    if current == target:
        want = D
    elif current in (S.CANCELED, S.INCOMPLETE_EXPIRED):
        want = ST if target != S.INCOMPLETE_EXPIRED and target != S.CANCELED else I
    elif target == S.INCOMPLETE:
        want = ST
    elif current in RUNNING and target == S.INCOMPLETE_EXPIRED:
        want = I
    elif (current, target) in {
        (S.TRIALING, S.TRIALING),
        (S.PAST_DUE, S.TRIALING),
        (S.UNPAID, S.TRIALING),
    }:
        want = I  # a trial is never given back to a customer who owes a renewal
    else:
        want = A
    assert subscription_outcome(current, target) is want


def test_ends_are_absorbing_and_rank_orders_them_last() -> None:
    for end in (S.CANCELED, S.INCOMPLETE_EXPIRED):
        assert SUBSCRIPTION_TRANSITIONS[end] == frozenset()
        assert SUBSCRIPTION_RANK[end] == max(SUBSCRIPTION_RANK.values())
