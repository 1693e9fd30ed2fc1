"""Dashboard pages for subscriptions: the list (filters), one subscription with its
timeline and paid periods, the merchant's cancel / resume / sync buttons, and a plan
change with a confirmation step."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from app.auth.routes import roles_required
from app.dashboard import bp
from app.dashboard.forms import PlanChangeForm
from app.dashboard.timeline import subscription_timeline
from app.models import Role, Subscription, SubscriptionStatus
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


def _plan_form(sub: Subscription, formdata: object = None) -> PlanChangeForm:
    form = PlanChangeForm(formdata=formdata) if formdata is not None else PlanChangeForm()
    offered = subscriptions.plan_change_choices(sub)
    if formdata is not None:
        # A repeated confirmed form names the plan the subscription is on now: valid input,
        # answered as done (below), not as a wrong choice.
        offered = [*offered, sub.plan]
    form.plan.choices = [(p.public_id, f"{p.name} ({p.public_id})") for p in offered]
    if formdata is None:
        form.from_plan.data = sub.plan.public_id
    return form


def _page(sub: Subscription, plan_form: PlanChangeForm, status: int = 200, **extra: object) -> Any:
    return (
        render_template(
            "dashboard/subscription.html",
            sub=sub,
            access=entitlement(sub, utcnow()),
            timeline=subscription_timeline(subscriptions.timeline(sub), sub.plan.currency),
            form=FlaskForm(),
            plan_form=plan_form,
            resume_refused=subscriptions.refused_change(sub, "resume"),
            **extra,
        ),
        status,
    )


@bp.get("/subscriptions/<public_id>")
def subscription_page(public_id: str) -> Any:
    """One subscription: the gateway's state, entitlement, timeline and paid periods."""
    try:
        sub = subscriptions.get_subscription(public_id)
    except NotFound:
        abort(404)
    return _page(sub, _plan_form(sub))


@bp.post("/subscriptions/<public_id>/change-plan")
@roles_required(*MANAGERS)
def subscription_change_plan(public_id: str) -> Any:
    """Plan change: the first POST shows what changes, the confirmed POST changes it."""
    try:
        sub = subscriptions.get_subscription(public_id)
    except NotFound:
        abort(404)
    form = _plan_form(sub, formdata=request.form)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _page(sub, form, 422)
    target, shown = form.plan.data, form.from_plan.data
    if form.confirm.data != "yes":
        new_plan = subscriptions.get_plan(str(target))
        return _page(sub, form, confirm_plan=new_plan)
    if sub.plan.public_id == target and shown != target:
        # The same confirmed form again (a double click, a reload): changed once already.
        flash(gettext("The subscription is on %(plan)s.", plan=sub.plan.name), "success")
    elif sub.plan.public_id != shown:
        flash(gettext("The plan changed since this page was shown; nothing was done."), "error")
    else:
        try:
            changed = subscriptions.change_plan(public_id, str(target), _actor())
        except NotFound:
            abort(404)
        except KassaError as exc:
            flash(exc.message, "error")
        else:
            flash(gettext("Plan changed to %(plan)s.", plan=changed.plan.name), "success")
    return redirect(url_for("dashboard.subscription_page", public_id=public_id), code=303)


def _actor() -> Actor:
    return Actor("user", str(current_user.id))


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
