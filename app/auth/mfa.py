"""Two-factor sign-in: TOTP (RFC 6238) enrolment, verification, recovery codes.

The TOTP secret is kept on the user row while enrolment is pending and becomes active
only once the user proves their authenticator shows the same codes. Each time-step
counter is accepted once (User.totp_last_counter), so a code seen over a shoulder or in
a phishing proxy cannot be replayed. Recovery codes are shown once and only their SHA-256
is stored (80 random bits each: a stolen table cannot be brute-forced); each works once.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

import pyotp
import segno
from flask import current_app
from markupsafe import Markup

from app.models import User
from app.payments import audit
from app.payments.audit import Actor
from app.payments.uow import lock, unit_of_work

RECOVERY_CODE_COUNT = 10
# One step either side absorbs clock drift between the phone and the server.
VALID_WINDOW = 1


class Outcome(enum.Enum):
    TOTP = "totp"
    RECOVERY = "recovery"
    REUSED = "reused"
    INVALID = "invalid"


def _actor(user: User) -> Actor:
    return Actor("user", str(user.id))


def provisioning_uri(user: User, secret: str) -> str:
    issuer = current_app.config.get("TOTP_ISSUER") or "Kassa"
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_svg(uri: str) -> Markup:
    """The otpauth:// URI as an inline SVG QR code, drawn here (no third-party service)."""
    qr = segno.make(uri, error="m")
    svg = qr.svg_inline(
        scale=5, border=4, dark="#000", light="#fff", title="QR code for your authenticator app"
    )
    return Markup(svg)  # segno's own markup: digits of the code are path data only


def begin_enrolment(user: User) -> str:
    """The pending secret for this user's authenticator (made once, kept until confirmed)."""
    with unit_of_work():
        row = lock(User, id=user.id)
        assert row is not None
        if not row.totp_enabled and not row.totp_secret:
            row.totp_secret = pyotp.random_base32()  # 160 bits
        secret = str(row.totp_secret)
    return secret


def _digits(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "")


def _match_totp(secret: str, code: str, last_counter: int | None) -> tuple[Outcome, int | None]:
    code = _digits(code)
    if not re.fullmatch(r"\d{6}", code):
        return Outcome.INVALID, None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(datetime.now(UTC))
    for counter in range(now - VALID_WINDOW, now + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(counter), code):
            if last_counter is not None and counter <= last_counter:
                return Outcome.REUSED, None
            return Outcome.TOTP, counter
    return Outcome.INVALID, None


def _hash_recovery(code: str) -> str:
    normalized = re.sub(r"[^a-z2-7]", "", code.lower())
    return hashlib.sha256(normalized.encode()).hexdigest()


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 chars
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def confirm_enrolment(user: User, code: str) -> tuple[Outcome, list[str]]:
    """Turn 2FA on if `code` matches the pending secret; returns the recovery codes."""
    with unit_of_work():
        row = lock(User, id=user.id)
        assert row is not None
        if row.totp_enabled or not row.totp_secret:
            return Outcome.INVALID, []
        outcome, counter = _match_totp(row.totp_secret, code, row.totp_last_counter)
        if outcome is not Outcome.TOTP:
            return outcome, []
        codes = new_recovery_codes()
        row.totp_enabled = True
        row.totp_last_counter = counter
        row.recovery_codes = [_hash_recovery(c) for c in codes]
        # A privilege change: other sessions of this user end (the caller re-signs this one).
        row.session_token = secrets.token_hex(16)
        audit.record(_actor(row), "user.2fa_enabled", row)
    return Outcome.TOTP, codes


def verify(user_id: int, code: str) -> Outcome:
    """Check a sign-in's second factor: a fresh TOTP code, or an unused recovery code."""
    with unit_of_work():
        row = lock(User, id=user_id)
        if row is None or not row.totp_enabled or not row.totp_secret:
            return Outcome.INVALID
        if re.search(r"[a-zA-Z]", code or ""):
            digest = _hash_recovery(code)
            remaining = list(row.recovery_codes or [])
            match = next((h for h in remaining if hmac.compare_digest(h, digest)), None)
            if match is None:
                audit.record(_actor(row), "user.2fa_failed", row, details={"kind": "recovery"})
                return Outcome.INVALID
            remaining.remove(match)
            row.recovery_codes = remaining  # a new list, so the JSON column is saved
            audit.record(
                _actor(row),
                "user.2fa_recovery_code_used",
                row,
                details={"remaining": len(remaining)},
            )
            return Outcome.RECOVERY
        outcome, counter = _match_totp(row.totp_secret, code, row.totp_last_counter)
        if outcome is Outcome.TOTP:
            row.totp_last_counter = counter
        else:
            audit.record(_actor(row), "user.2fa_failed", row, details={"kind": outcome.value})
        return outcome


def regenerate_recovery_codes(user: User, code: str) -> tuple[Outcome, list[str]]:
    outcome = verify(user.id, code)
    if outcome not in (Outcome.TOTP, Outcome.RECOVERY):
        return outcome, []
    codes = new_recovery_codes()
    with unit_of_work():
        row = lock(User, id=user.id)
        assert row is not None
        row.recovery_codes = [_hash_recovery(c) for c in codes]
        audit.record(_actor(row), "user.2fa_recovery_codes_regenerated", row)
    return outcome, codes


def disable(user: User, code: str) -> Outcome:
    outcome = verify(user.id, code)
    if outcome not in (Outcome.TOTP, Outcome.RECOVERY):
        return outcome
    with unit_of_work():
        row = lock(User, id=user.id)
        assert row is not None
        row.totp_enabled = False
        row.totp_secret = None
        row.totp_last_counter = None
        row.recovery_codes = None
        row.session_token = secrets.token_hex(16)
        audit.record(_actor(row), "user.2fa_disabled", row)
    return outcome


def required_for(user: User) -> bool:
    return bool(current_app.config.get("REQUIRE_2FA_FOR_OWNERS")) and user.role == "owner"
