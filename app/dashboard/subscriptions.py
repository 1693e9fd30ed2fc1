"""Dashboard pages for subscriptions: the list (filters), one subscription with its
timeline and paid periods, and the merchant's cancel / resume / sync buttons."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from app.auth.routes import roles_required
from app.dashboard import bp
from app.dashboard.timeline import subscription_timeline
from app.models import Role, SubscriptionStatus
from app.models.base import utcnow
from app.payments import subscriptions
from app.payments.audit import Actor
from app.payments.entitlement import entitlement
from app.payments.errors import KassaError, NotFound

MANAGERS = (Role.OWNER.value, Role.ADMIN.value)
ACTIONS = ("cancel_at_period_end", "cancel_now", "resume", "sync")


@bp.get("/subscriptions")
def subscription_list() -> str:
    """Subscriptions, newest first, filtered by status, gateway and email."""
    status = request.args.get("status") or None
    if status not in {s.value for s in SubscriptionStatus}:
        status = None
    rows = subscriptions.list_subscriptions(
        status=status,
        gateway=request.args.get("gateway") or None,
        email=request.args.get("email") or None,
    )
    now = utcnow()
    return render_template(
        "dashboard/subscriptions.html",
        rows=[(sub, entitlement(sub, now)) for sub in rows],
        statuses=[s.value for s in SubscriptionStatus],
        status=status,
    )


@bp.get("/subscriptions/<public_id>")
def subscription_page(public_id: str) -> str:
    """One subscription: the gateway's state, entitlement, timeline and paid periods."""
    try:
        sub = subscriptions.get_subscription(public_id)
    except NotFound:
        abort(404)
    return render_template(
        "dashboard/subscription.html",
        sub=sub,
        access=entitlement(sub, utcnow()),
        timeline=subscription_timeline(subscriptions.timeline(sub), sub.plan.currency),
        form=FlaskForm(),
    )


@bp.post("/subscriptions/<public_id>/<action>")
@roles_required(*MANAGERS)
def subscription_action(public_id: str, action: str) -> Response:
    """Cancel at the period's end, cancel now, resume, or re-fetch from the gateway."""
    if action not in ACTIONS or not FlaskForm().validate_on_submit():
        abort(400)
    actor = Actor("user", str(current_user.id))
    try:
        if action == "sync":
            subscriptions.sync(public_id, actor)
        elif action == "resume":
            subscriptions.resume(public_id, actor)
        else:
            subscriptions.cancel(public_id, actor, at_period_end=action == "cancel_at_period_end")
    except NotFound:
        abort(404)
    except KassaError as exc:
        flash(exc.message, "error")
    return redirect(url_for("dashboard.subscription_page", public_id=public_id), code=303)
