"""Customer pages for subscriptions: plans with "Subscribe", and the customer's own page
(reached by a signed link) to see the subscription and cancel or resume it."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from app.checkout import bp
from app.checkout.forms import SubscribeForm
from app.models.base import utcnow
from app.payments import subscriptions
from app.payments.audit import CUSTOMER
from app.payments.entitlement import entitlement
from app.payments.errors import KassaError, NotFound


def _form() -> SubscribeForm:
    form = SubscribeForm()
    form.gateway.choices = subscriptions.gateway_choices()
    if len(form.gateway.choices) == 1 and not form.gateway.data:
        form.gateway.data = form.gateway.choices[0][0]
    return form


@bp.get("/plans")
def plans() -> str:
    """The plans on offer."""
    return render_template("checkout/plans.html", plans=subscriptions.plans())


@bp.route("/plans/<public_id>", methods=["GET", "POST"])
def plan_page(public_id: str) -> str | Response | tuple[str, int]:
    """A plan with its subscribe form; POST starts the subscription (303 to the gateway)."""
    try:
        plan = subscriptions.get_plan(public_id)
    except NotFound:
        abort(404)
    form = _form()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                sub = subscriptions.start(
                    public_id,
                    email=form.email.data or "",
                    name=form.name.data or "",
                    gateway_name=form.gateway.data or "",
                    actor=CUSTOMER,
                )
            except KassaError as exc:
                form.form_errors.append(exc.message)
            else:
                return redirect(sub.checkout_url or "/", code=303)
        return render_template("checkout/plan.html", plan=plan, form=form), 422
    return render_template("checkout/plan.html", plan=plan, form=form)


@bp.get("/subscriptions/<public_id>")
def subscription_page(public_id: str) -> str:
    """The customer's subscription (signed link): status, entitlement, invoices."""
    token = request.args.get("t", "")
    try:
        sub = subscriptions.customer_subscription(public_id, token)
    except NotFound:
        abort(404)
    return render_template(
        "checkout/subscription.html",
        sub=sub,
        token=token,
        access=entitlement(sub, utcnow()),
        form=FlaskForm(),
        resume_refused=subscriptions.refused_change(sub, "resume"),
    )


@bp.post("/subscriptions/<public_id>/<action>")
def subscription_action(public_id: str, action: str) -> Response:
    """The customer cancels at the period's end, or resumes (signed link)."""
    token = request.form.get("t", "")
    if not FlaskForm().validate_on_submit() or action not in ("cancel", "resume"):
        abort(400)
    try:
        subscriptions.customer_subscription(public_id, token)
        if action == "cancel":
            subscriptions.cancel(public_id, CUSTOMER, at_period_end=True)
        else:
            subscriptions.resume(public_id, CUSTOMER)
    except NotFound:
        abort(404)
    except KassaError as exc:
        flash(exc.message, "error")
    return redirect(url_for("checkout.subscription_page", public_id=public_id, t=token), code=303)
