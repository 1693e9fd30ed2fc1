"""When a failed delivery is tried again (Svix's schedule, about 27 hours in all).

Attempt 1 is immediate; after attempt n fails the next waits DELAYS[n], with +-10%
jitter so that an endpoint that was down does not get every retry at the same second;
a Retry-After longer than the scheduled wait is honoured. After the 8th attempt the
delivery has failed (the merchant can replay it, or recover everything since a time).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

DELAYS: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(DELAYS)
JITTER = 0.1
# A Retry-After is honoured up to this (a broken header must not park a delivery for ever).
MAX_RETRY_AFTER = timedelta(hours=10)


def next_attempt(
    attempts_made: int,
    now: datetime,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try after `attempts_made` attempts failed, or None when they are used up."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = DELAYS[attempts_made]
    delay *= 1 + (rng or random).uniform(-JITTER, JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(timedelta(0), when - now)
