"""Merchant authentication: the user loader (login pages live in the dashboard work)."""

from __future__ import annotations

import hmac

from flask import Flask

from app.extensions import db, login_manager
from app.models import User


def load_user(user_id: str) -> User | None:
    """Sessions carry "<id>:<session token>"; a rotated token ends the old session."""
    raw_id, _, token = user_id.partition(":")
    if not raw_id.isdigit():
        return None
    user = db.session.get(User, int(raw_id))
    if user is None or not user.active or not user.session_token:
        return None
    if not hmac.compare_digest(user.session_token, token):
        return None
    return user


def init_app(app: Flask) -> None:
    login_manager.user_loader(load_user)
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_view = "auth.login"
