"""Password rules, shared by the CLI and the dashboard.

At least MIN_LENGTH characters, and not a common password: not in the bundled list
(common-passwords.txt, see its header for where it comes from), not a listed one with
digits or symbols tacked on ("sunshine2024!"), not one repeated ("passwordpassword"),
and not the account's own email or the store's name.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from flask_babel import gettext as _gettext


def gettext(message: str, **variables: object) -> str:
    """Flask-Babel's gettext, typed: the messages are shown in the reader's language."""
    return str(_gettext(message, **variables))


MIN_LENGTH = 12
MAX_LENGTH = 1024
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common-passwords.txt")

_TRAILING = re.compile(r"[\W\d_]+$")
_LEADING = re.compile(r"^[\W\d_]+")


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


def _repeated_unit(text: str) -> str:
    """ "abcabcabc" -> "abc"; text itself when it is not a repetition."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def is_common(password: str) -> bool:
    lowered = password.strip().lower()
    listed = common_passwords()
    candidates = {lowered, _repeated_unit(lowered)}
    # A common word with digits/symbols around it is still a common password.
    core = _LEADING.sub("", _TRAILING.sub("", lowered))
    if len(core) >= 4:
        candidates.update({core, _repeated_unit(core)})
    return any(c in listed for c in candidates) or len(set(lowered)) <= 2


def password_problem(password: str, *, email: str | None = None) -> str | None:
    """A message saying what is wrong with a new password, or None if it is acceptable."""
    if len(password) < MIN_LENGTH:
        return gettext("Use at least %(num)d characters.", num=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        return gettext("Use at most %(num)d characters.", num=MAX_LENGTH)
    if is_common(password):
        return gettext("This password is too common; choose one that is hard to guess.")
    lowered = password.lower()
    if email:
        local = email.split("@", 1)[0].lower()
        if lowered == email.lower() or (
            len(local) >= 4 and local in lowered and len(lowered) - len(local) < 8
        ):
            return gettext("Don't base your password on your email address.")
    if "kassa" in lowered and len(lowered.replace("kassa", "")) < 8:
        return gettext("Don't base your password on the name of this app.")
    return None
