"""Is this customer entitled, and until when: one answer, from the mirrored subscription.

Pure (no database, no clock of its own): `entitlement(subscription, now)` reads only the
fields the gateway gave us. The rules, in the order they apply:

- ended (ended_at passed, canceled, incomplete_expired): no;
- incomplete (first payment not made), paused, past_due (a renewal failed and is being
  retried), unpaid (retries used up; Razorpay's halted): no. A past-due subscription is
  not treated as active: the period it is in has not been paid for;
- trialing: yes, until the trial ends;
- active: yes, until the paid period ends;
- a scheduled end (cancel_at, or cancel_at_period_end) caps `until`, and `renews` says
  whether the gateway will charge again at `until`;
- past `until` with no news yet: entitled only while a renewal is expected, for at most
  RENEWAL_GRACE (the gateway's renewal event is on its way), never for a subscription
  that is ending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from app.models.enums import SubscriptionStatus

S = SubscriptionStatus

# How long after a paid period ends a renewing subscription stays entitled while the
# gateway's renewal news is on its way (Stripe finalizes the next invoice about an hour in).
RENEWAL_GRACE = timedelta(hours=1)


class Mirrored(Protocol):
    status: str
    current_period_end: datetime | None
    cancel_at: datetime | None
    cancel_at_period_end: bool
    ended_at: datetime | None
    trial_end: datetime | None


@dataclass(frozen=True, slots=True)
class Entitlement:
    entitled: bool
    until: datetime | None  # end of what is paid (or the trial), capped by a scheduled end
    renews: bool  # the gateway will charge again at `until`
    reason: str

    def __bool__(self) -> bool:
        return self.entitled


_REFUSED = {
    S.INCOMPLETE: "awaiting_first_payment",
    S.INCOMPLETE_EXPIRED: "never_paid",
    S.PAST_DUE: "past_due",
    S.UNPAID: "unpaid",
    S.PAUSED: "paused",
    S.CANCELED: "ended",
}


def entitlement(sub: Mirrored, now: datetime) -> Entitlement:
    """Whether `sub`'s customer is entitled at `now`, and until when."""
    status = S(sub.status)
    if sub.ended_at is not None and sub.ended_at <= now:
        return Entitlement(False, None, False, "ended")
    if status in _REFUSED:
        return Entitlement(False, None, False, _REFUSED[status])
    paid_until = sub.trial_end if status == S.TRIALING else sub.current_period_end
    if paid_until is None:
        paid_until = sub.current_period_end
    if paid_until is None:
        return Entitlement(False, None, False, "no_period")
    until, ending = paid_until, sub.cancel_at_period_end
    if sub.cancel_at is not None and sub.cancel_at <= paid_until:
        until, ending = sub.cancel_at, True
    reason = "trialing" if status == S.TRIALING else "active"
    if ending:
        reason = "canceling"
    if now < until:
        return Entitlement(True, until, not ending, reason)
    if not ending and now < until + RENEWAL_GRACE:
        return Entitlement(True, until + RENEWAL_GRACE, True, "renewal_due")
    return Entitlement(False, until, False, "ended" if ending else "renewal_overdue")
