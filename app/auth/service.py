"""Signing merchants in and out."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from flask import current_app, session
from flask_login import login_user, logout_user
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import OFF_THE_EVENT_LOOP, db
from app.models import User
from app.models.base import utcnow
from app.payments import audit
from app.payments.audit import Actor
from app.payments.uow import unit_of_work

# Checked against when the email is unknown, so both paths cost the same time.
_DUMMY_HASH = generate_password_hash("kassa-timing-equaliser")


def _password_matches(stored: str, password: str) -> bool:
    """check_password_hash (~70 ms of scrypt) through the runner serving installed at
    start-up (app.extensions[OFF_THE_EVENT_LOOP]), so under gevent workers the worker's other
    requests keep running; a plain call in an app built without serving's runner."""
    runner: Callable[..., bool] | None = current_app.extensions.get(OFF_THE_EVENT_LOOP)
    if runner is None:
        return check_password_hash(stored, password)
    return runner(check_password_hash, stored, password)


def authenticate(email: str, password: str) -> User | None:
    user = db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()
    if user is None:
        _password_matches(_DUMMY_HASH, password)
        return None
    if not _password_matches(user.password_hash, password) or not user.active:
        return None
    return user


def start_session(user: User) -> None:
    """Log the user in with a fresh session: new token, old session data dropped."""
    with unit_of_work():
        user.session_token = secrets.token_hex(16)
        user.last_login_at = utcnow()
        audit.record(Actor("user", str(user.id)), "user.login", user)
    session.clear()  # no fixation: nothing from the anonymous session survives
    login_user(user)


def end_session(user: User | None) -> None:
    """Log out and invalidate the session on the server (the token rotates)."""
    if user is not None and getattr(user, "id", None):
        with unit_of_work():
            fresh = db.session.get(User, user.id)
            if fresh is not None:
                fresh.session_token = secrets.token_hex(16)
                audit.record(Actor("user", str(fresh.id)), "user.logout", fresh)
    logout_user()
    session.clear()


def change_role(user_id: int, role: str, actor: Actor) -> User:
    """Give a user another role; their sessions end (a privilege change rotates the token)."""
    from app.models import Role

    if role not in {r.value for r in Role}:
        raise ValueError(f"unknown role {role!r}")
    with unit_of_work():
        user = db.session.get(User, user_id)
        if user is None:
            raise LookupError(f"no user {user_id}")
        previous = user.role
        user.role = role
        user.session_token = secrets.token_hex(16)
        audit.record(actor, "user.role_changed", user, from_state=previous, to_state=role)
    return user
