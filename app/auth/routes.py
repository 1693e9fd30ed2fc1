"""Login and logout pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.auth import service
from app.auth.forms import EmptyForm, LoginForm
from app.auth.throttle import per_account, per_address

bp = Blueprint("auth", __name__, url_prefix="/auth")
F = TypeVar("F", bound=Callable[..., Any])


def safe_next(target: str | None, default: str) -> str:
    """Only same-site relative paths: never //host, /\\host or an absolute URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def roles_required(*roles: str) -> Callable[[F], F]:
    """Allow only signed-in users with one of the roles (403 otherwise)."""

    def decorate(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@bp.route("/login", methods=["GET", "POST"])
@per_address
@per_account
def login() -> Response | str | tuple[str, int]:
    """Merchant sign-in."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        user = service.authenticate(form.email.data or "", form.password.data or "")
        if user is not None:
            service.start_session(user)
            return redirect(safe_next(form.next.data, "/dashboard/"), code=303)
        form.form_errors.append("Wrong email or password.")
        return render_template("auth/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout() -> Response:
    """End the session (POST with CSRF, so no one can log you out with a link)."""
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    service.end_session(current_user if current_user.is_authenticated else None)
    return redirect(url_for("auth.login"), code=303)
