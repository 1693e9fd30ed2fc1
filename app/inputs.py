"""What text and numbers from outside may be: the limits every door checks against.

Both databases must store what we accept, the same way: PostgreSQL refuses NUL in text
(SQLite would store it), neither can hold a lone UTF-16 surrogate in UTF-8, and row ids are
INTEGER columns: 32-bit on PostgreSQL (beyond, "integer out of range"), 64-bit on SQLite
(beyond, OverflowError); the smaller bound holds on both.
Each door refuses such input with its own 4xx (app/errors.py guards paths and query strings,
app/api/parsing.py JSON bodies, app/forms.py every form field).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# The largest id a row can have (every primary key is INTEGER: PostgreSQL's 32-bit one).
MAX_ROW_ID = 2**31 - 1

# NUL and lone surrogates: text no database here can store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Control characters (C0, DEL, C1): never part of a name or an email address.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# The same rule as JSON Schema patterns (ECMA-262 and Rust/Python regex read these alike:
# no \s, \d or \w, whose meaning differs between them).
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"
SPACE_CLASS = r"\x20\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def unstorable(value: str) -> bool:
    """True when `value` holds a NUL or a lone surrogate."""
    return _UNSTORABLE.search(value) is not None


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def row_id(value: int) -> bool:
    """True when `value` fits a row id (1 .. MAX_ROW_ID)."""
    return 1 <= value <= MAX_ROW_ID


def utc_representable(value: datetime) -> bool:
    """True when an aware datetime has a UTC equivalent inside datetime's years 1..9999
    (0001-01-01T00:00:00+14:00 does not), so it can be compared with stored times."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def day_in_range(value: date) -> bool:
    """True for a calendar day whose next day also exists (not 9999-12-31)."""
    return value < date.max
