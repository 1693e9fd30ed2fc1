"""Sign-in throttling: failed attempts are limited per account and per client address.

Only failures count (a 401 answer), so a merchant who signs in correctly is never
slowed down by their own earlier typos beyond the window. Limits come from settings.
"""

from __future__ import annotations

from flask import current_app, request
from flask_limiter.util import get_remote_address
from werkzeug.wrappers import Response

from app.extensions import limiter


def _account_key() -> str:
    # Case and spaces don't make a new account: "A@x " and "a@x" share one budget.
    return "login-account:" + (request.form.get("email") or "").strip().lower()[:254]


def _address_key() -> str:
    return "login-address:" + get_remote_address()


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _account_limit() -> str:
    return str(current_app.config.get("LOGIN_LIMIT_ACCOUNT") or "5 per 15 minutes")


def _address_limit() -> str:
    return str(current_app.config.get("LOGIN_LIMIT_ADDRESS") or "20 per 15 minutes")


MESSAGE = "Too many failed sign-in attempts. Wait a few minutes and try again."

per_account = limiter.limit(_account_limit, key_func=_account_key, methods=["POST"],
                            deduct_when=_failed, error_message=MESSAGE)
per_address = limiter.limit(_address_limit, key_func=_address_key, methods=["POST"],
                            deduct_when=_failed, error_message=MESSAGE)
