"""Two-factor pages: the sign-in's second step and TOTP enrolment, under /auth/2fa."""

from __future__ import annotations

import time

from flask import abort, redirect, render_template, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.auth import mfa, service
from app.auth.forms import TwoFactorForm
from app.auth.routes import bp, safe_next
from app.auth.throttle import throttle
from app.extensions import db
from app.models import User

PENDING_KEY = "kassa_2fa"
PENDING_SECONDS = 300
DEFAULT_NEXT = "/dashboard/"

MESSAGES = {
    mfa.Outcome.INVALID: _l("That code is not right. Check your authenticator app and try again."),
    mfa.Outcome.REUSED: _l("That code was already used. Wait for the next one and enter it."),
}


def password_ok(user: User, next_url: str | None) -> Response:
    """After a correct password: ask for the second factor, or sign in."""
    target = safe_next(next_url, DEFAULT_NEXT)
    if user.totp_enabled:
        session.clear()  # nothing from before the password survives
        session[PENDING_KEY] = {
            "uid": user.id,
            "token": user.session_token,
            "at": int(time.time()),
            "next": target,
        }
        return redirect(url_for("auth.two_factor"), code=303)
    service.start_session(user)
    throttle().succeeded(user.email)
    if mfa.required_for(user):
        return redirect(url_for("auth.two_factor_setup"), code=303)
    return redirect(target, code=303)


def _pending_user() -> tuple[User, str] | None:
    pending = session.get(PENDING_KEY)
    if (
        not isinstance(pending, dict)
        or int(time.time()) - int(pending.get("at", 0)) > PENDING_SECONDS
    ):
        return None
    user = db.session.get(User, int(pending.get("uid", 0)))
    # A password change or logout everywhere since the first step voids it.
    if user is None or not user.active or user.session_token != pending.get("token"):
        return None
    return user, str(pending.get("next") or DEFAULT_NEXT)


@bp.route("/2fa", methods=["GET", "POST"])
def two_factor() -> Response | str | tuple[str, int]:
    """Second sign-in step: a code from the authenticator app, or a recovery code."""
    found = _pending_user()
    if found is None:
        session.pop(PENDING_KEY, None)
        return redirect(url_for("auth.login"), code=303)
    user, next_url = found
    form = TwoFactorForm()
    if form.validate_on_submit():
        blocked = throttle().check(user.email)
        if blocked:
            form.form_errors.append(blocked.message)
            return render_template("auth/two_factor.html", form=form), 429
        outcome = mfa.verify(user.id, form.code.data or "")
        if outcome in (mfa.Outcome.TOTP, mfa.Outcome.RECOVERY):
            db.session.refresh(user)
            service.start_session(user)
            throttle().succeeded(user.email)
            return redirect(safe_next(next_url, DEFAULT_NEXT), code=303)
        throttle().failed(user.email)
        form.code.errors = [MESSAGES[outcome]]
        return render_template("auth/two_factor.html", form=form), 401
    status = 400 if form.is_submitted() else 200
    return render_template("auth/two_factor.html", form=form), status


@bp.route("/2fa/setup", methods=["GET", "POST"])
@login_required
def two_factor_setup() -> Response | str | tuple[str, int]:
    """Turn on two-factor sign-in: scan the QR code, confirm a code, keep recovery codes."""
    user: User = current_user._get_current_object()
    if user.totp_enabled:
        return render_template(
            "auth/two_factor_manage.html",
            user=user,
            form=TwoFactorForm(),
            required=mfa.required_for(user),
        )
    secret = mfa.begin_enrolment(user)
    uri = mfa.provisioning_uri(user, secret)
    form = TwoFactorForm()
    status = 200
    if form.validate_on_submit():
        outcome, codes = mfa.confirm_enrolment(user, form.code.data or "")
        if outcome is mfa.Outcome.TOTP:
            db.session.refresh(user)
            service.start_session(user)  # the token rotated: keep this session, end others
            return render_template("auth/recovery_codes.html", codes=codes, fresh=True)
        form.code.errors = [MESSAGES.get(outcome, MESSAGES[mfa.Outcome.INVALID])]
        status = 422
    elif form.is_submitted():
        status = 400
    return render_template(
        "auth/two_factor_setup.html",
        form=form,
        qr=mfa.qr_svg(uri),
        secret=secret,
        required=mfa.required_for(user),
    ), status


@bp.post("/2fa/recovery-codes")
@login_required
def two_factor_recovery_codes() -> str | tuple[str, int]:
    """Replace the recovery codes (a current code is needed); the new ones are shown once."""
    user: User = current_user._get_current_object()
    form = TwoFactorForm()
    if not user.totp_enabled or not form.validate_on_submit():
        abort(400)
    outcome, codes = mfa.regenerate_recovery_codes(user, form.code.data or "")
    if not codes:
        form.code.errors = [MESSAGES.get(outcome, MESSAGES[mfa.Outcome.INVALID])]
        return render_template(
            "auth/two_factor_manage.html", user=user, form=form, required=mfa.required_for(user)
        ), 422
    return render_template("auth/recovery_codes.html", codes=codes, fresh=False)


@bp.post("/2fa/disable")
@login_required
def two_factor_disable() -> Response | str | tuple[str, int]:
    """Turn two-factor sign-in off (a current code is needed; not when it is required)."""
    user: User = current_user._get_current_object()
    form = TwoFactorForm()
    if not user.totp_enabled or not form.validate_on_submit():
        abort(400)
    if mfa.required_for(user):
        abort(403)
    outcome = mfa.disable(user, form.code.data or "")
    if outcome not in (mfa.Outcome.TOTP, mfa.Outcome.RECOVERY):
        form.code.errors = [MESSAGES.get(outcome, MESSAGES[mfa.Outcome.INVALID])]
        return render_template(
            "auth/two_factor_manage.html", user=user, form=form, required=False
        ), 422
    db.session.refresh(user)
    service.start_session(user)
    return redirect(url_for("auth.two_factor_setup"), code=303)
