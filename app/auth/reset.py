"""Password reset by email: a signed link that expires and works once.

The link carries the user's id and a fingerprint of their current password hash and
session token, signed with SECRET_KEY (itsdangerous, timestamped). It expires after
PASSWORD_RESET_MINUTES, and it is single-use because using it changes both the password
hash and the session token, so the fingerprint no longer matches (a sign-in in between
rotates the token too). Asking for a link answers the same whether or not the address has
an account, so the form tells no one who works here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urljoin

from flask import current_app, render_template, url_for
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from app.auth.passwords import password_problem
from app.extensions import db
from app.mail import deliver, new_message
from app.models import User
from app.payments import audit
from app.payments.audit import Actor
from app.payments.uow import lock, unit_of_work

SALT = "kassa-password-reset"


class ResetError(Exception):
    """The link is not (or no longer) valid, or the new password is refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=SALT)


def _fingerprint(user: User) -> str:
    material = f"{user.password_hash}|{user.session_token or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:24]


def make_token(user: User) -> str:
    return _serializer().dumps({"uid": user.id, "fp": _fingerprint(user)})


def _max_age() -> int:
    return int(current_app.config.get("PASSWORD_RESET_MINUTES", 60)) * 60


def request_reset(email: str) -> None:
    """Mail a reset link if an active account has this email; nothing otherwise."""
    user = db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()
    if user is None or not user.active:
        return
    with unit_of_work():
        audit.record(Actor("user", str(user.id)), "user.password_reset_requested", user)
    link = urljoin(
        current_app.config["PUBLIC_BASE_URL"].rstrip("/") + "/",
        url_for("auth.reset_password", token=make_token(user)).lstrip("/"),
    )
    store = current_app.config["STORE_NAME"]
    minutes = _max_age() // 60
    text = render_template(
        "emails/password_reset.txt", user=user, link=link, minutes=minutes, store=store
    )
    html = render_template(
        "emails/password_reset.html", user=user, link=link, minutes=minutes, store=store
    )
    message = new_message(user.email, f"Reset your {store} dashboard password", text, html)
    deliver(message, f"password-reset-{user.id}-{secrets.token_hex(4)}")


def user_for_token(token: str) -> User:
    """The user a valid, unused, unexpired link belongs to."""
    try:
        data = _serializer().loads(token, max_age=_max_age())
    except SignatureExpired:
        raise ResetError(_("This reset link has expired. Ask for a new one.")) from None
    except BadSignature:
        raise ResetError(_("This reset link is not valid. Ask for a new one.")) from None
    user = db.session.get(User, int(data.get("uid", 0))) if isinstance(data, dict) else None
    if (
        user is None
        or not user.active
        or not hmac.compare_digest(str(data.get("fp", "")), _fingerprint(user))
    ):
        raise ResetError(_("This reset link was already used or replaced. Ask for a new one."))
    return user


def reset_password(token: str, password: str) -> User:
    """Set the new password (the link then stops working) and end the user's sessions."""
    user = user_for_token(token)
    problem = password_problem(password, email=user.email)
    if problem:
        raise ResetError(problem)
    seen, user_id = _fingerprint(user), user.id
    with unit_of_work():
        fresh = lock(User, id=user_id)  # two tabs with the same link: one wins
        if fresh is None or not hmac.compare_digest(_fingerprint(fresh), seen):
            raise ResetError(_("This reset link was already used or replaced. Ask for a new one."))
        fresh.password_hash = generate_password_hash(password)
        fresh.session_token = secrets.token_hex(16)  # every signed-in session ends
        audit.record(Actor("user", str(fresh.id)), "user.password_reset", fresh)
    return fresh
