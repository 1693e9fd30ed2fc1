"""Login and logout pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.auth import reset, service
from app.auth.forms import EmptyForm, ForgotPasswordForm, LoginForm, ResetPasswordForm
from app.auth.throttle import remember_device, throttle
from app.extensions import limiter
from app.security import is_safe_next

bp = Blueprint("auth", __name__, url_prefix="/auth")
P = ParamSpec("P")
R = TypeVar("R")


def safe_next(target: str | None, default: str) -> str:
    """Only same-site relative paths: never //host, /\\host, encoded or schemed URLs."""
    return target if is_safe_next(target) else default


def roles_required(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Allow only signed-in users with one of the roles (403 otherwise)."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        @login_required
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Merchant sign-in."""
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        email = form.email.data or ""
        blocked = throttle().check(email)  # before the password is even looked at
        if blocked:
            form.form_errors.append(blocked.message)
            return render_template("auth/login.html", form=form), 429
        user = service.authenticate(email, form.password.data or "")
        if user is not None:
            return remember_device(two_factor.password_ok(user, form.next.data), user.email)
        failure = throttle().failed(email)
        form.form_errors.append(failure.message if failure else _("Wrong email or password."))
        return render_template("auth/login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


reset_limit = limiter.limit(
    lambda: current_app.config["PASSWORD_RESET_RATE_LIMIT"],
    methods=["POST"],
    error_message=lambda: _(
        "Too many reset requests from your network. Please wait a few minutes."
    ),
)


@bp.route("/forgot", methods=["GET", "POST"])
@reset_limit
def forgot_password() -> str | tuple[str, int]:
    """Ask for a password reset link by email (the answer never says if the account exists)."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        reset.request_reset(form.email.data or "")
        return render_template("auth/forgot.html", form=form, sent_to=form.email.data)
    status = 400 if request.method == "POST" else 200
    return render_template("auth/forgot.html", form=form), status


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Response | str | tuple[str, int]:
    """Choose a new password through an emailed link (signed, expiring, single-use)."""
    form = ResetPasswordForm()
    try:
        user = reset.user_for_token(token)
    except reset.ResetError as exc:
        return render_template("auth/reset.html", form=None, problem=exc.message), 400
    if form.validate_on_submit():
        try:
            reset.reset_password(token, form.password.data or "")
        except reset.ResetError as exc:
            form.password.errors = [*form.password.errors, exc.message]
        else:
            throttle().forget_account(user.email)
            service.end_session(current_user if current_user.is_authenticated else None)
            flash(_("Your password is changed. Sign in with the new one."), "success")
            return redirect(url_for("auth.login"), code=303)
        return render_template("auth/reset.html", form=form, email=user.email), 422
    status = 422 if request.method == "POST" else 200
    return render_template("auth/reset.html", form=form, email=user.email), status


@bp.post("/logout")
def logout() -> Response:
    """End the session (POST with CSRF, so no one can log you out with a link)."""
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    service.end_session(current_user if current_user.is_authenticated else None)
    return redirect(url_for("auth.login"), code=303)


from app.auth import two_factor
