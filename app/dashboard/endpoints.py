"""Dashboard views for outgoing webhooks (endpoints, delivery log) and fulfilment.

The endpoint pages show signing secrets and request bodies, so only owners and admins
see them. Every POST answers 303 to the page it came from (HX-Redirect under htmx).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext, ngettext
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from app.auth.routes import roles_required
from app.dashboard import bp
from app.dashboard.endpoint_forms import EndpointForm, FulfillmentForm, RecoverForm
from app.dashboard.forms import ButtonForm
from app.extensions import htmx
from app.i18n import N_
from app.models import FulfillmentStatus, Role, WebhookEndpoint
from app.payments import fulfillment
from app.payments.audit import Actor
from app.payments.errors import KassaError, NotFound
from app.payments.outgoing import endpoints

MANAGERS = (Role.OWNER.value, Role.ADMIN.value)


def _actor() -> Actor:
    return Actor("user", str(current_user.id))


def _see_other(url: str) -> BaseResponse:
    if htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def _endpoint_or_404(public_id: str) -> WebhookEndpoint:
    try:
        return endpoints.get_endpoint(public_id)
    except NotFound:
        abort(404)


def _endpoint_page(public_id: str, status: int = 200, **extra: object) -> BaseResponse:
    endpoint = _endpoint_or_404(public_id)
    page = endpoints.list_deliveries(endpoint, limit=50)
    context = {
        "endpoint": endpoint,
        "deliveries": page.items,
        "secret": endpoints.current_secret(endpoint),
        "button_form": ButtonForm(),
        "recover_form": RecoverForm(formdata=None),
        "edit_form": EndpointForm(
            formdata=None,
            data={
                "url": endpoint.url,
                "description": endpoint.description,
                "event_types": list(endpoint.event_types),
            },
        ),
    }
    context.update(extra)
    return make_response(render_template("dashboard/endpoint.html", **context), status)


@bp.get("/endpoints")
@roles_required(*MANAGERS)
def endpoint_list() -> BaseResponse:
    """The merchant's webhook endpoints, and a form to add one."""
    return make_response(
        render_template(
            "dashboard/endpoints.html",
            endpoints=endpoints.list_endpoints(),
            form=EndpointForm(formdata=None),
        )
    )


@bp.post("/endpoints")
@roles_required(*MANAGERS)
def endpoint_create() -> BaseResponse:
    """Add an endpoint; on to its page, where its secret is."""
    form = EndpointForm()
    if form.validate_on_submit():
        try:
            endpoint, _secret = endpoints.create_endpoint(
                form.url.data or "", form.event_types.data, form.description.data, _actor()
            )
        except KassaError as exc:
            form.url.errors = [exc.message]
        else:
            flash(
                gettext("Endpoint added. Verify its deliveries with the signing secret below."),
                "success",
            )
            return _see_other(url_for("dashboard.endpoint_detail", public_id=endpoint.public_id))
    return make_response(
        render_template(
            "dashboard/endpoints.html", endpoints=endpoints.list_endpoints(), form=form
        ),
        422,
    )


@bp.get("/endpoints/<public_id>")
@roles_required(*MANAGERS)
def endpoint_detail(public_id: str) -> BaseResponse:
    """One endpoint: settings, secret, actions and its delivery log."""
    return _endpoint_page(public_id)


@bp.post("/endpoints/<public_id>")
@roles_required(*MANAGERS)
def endpoint_update(public_id: str) -> BaseResponse:
    """Change the URL, description and events."""
    form = EndpointForm()
    if form.validate_on_submit():
        try:
            endpoints.update_endpoint(
                public_id,
                _actor(),
                url=form.url.data,
                description=form.description.data or "",
                event_types=form.event_types.data or [],
            )
        except NotFound:
            return _endpoint_page(public_id)  # 404s there
        except KassaError as exc:
            form.url.errors = [exc.message]
        else:
            flash(gettext("Endpoint saved."), "success")
            return _see_other(url_for("dashboard.endpoint_detail", public_id=public_id))
    return _endpoint_page(public_id, 422, edit_form=form)


def _action(public_id: str, run: Callable[[], object], message: str) -> BaseResponse:
    form = ButtonForm()
    if form.validate_on_submit():
        try:
            result = run()
        except NotFound:
            _endpoint_or_404(public_id)
            raise
        except KassaError as exc:
            flash(exc.message, "error")
        else:
            flash(gettext(message).format(result=result), "success")
    return _see_other(url_for("dashboard.endpoint_detail", public_id=public_id))


@bp.post("/endpoints/<public_id>/enable")
@roles_required(*MANAGERS)
def endpoint_enable(public_id: str) -> BaseResponse:
    """Start sending again (forgets the failures that disabled it)."""
    return _action(
        public_id,
        lambda: endpoints.update_endpoint(public_id, _actor(), enabled=True),
        N_("Endpoint enabled. Recover what it missed below."),
    )


@bp.post("/endpoints/<public_id>/disable")
@roles_required(*MANAGERS)
def endpoint_disable(public_id: str) -> BaseResponse:
    """Stop sending; events meanwhile are kept as failed deliveries."""
    return _action(
        public_id,
        lambda: endpoints.update_endpoint(public_id, _actor(), enabled=False),
        N_("Endpoint disabled."),
    )


@bp.post("/endpoints/<public_id>/rotate")
@roles_required(*MANAGERS)
def endpoint_rotate(public_id: str) -> BaseResponse:
    """New signing secret; the old one signs too for 24 hours."""
    return _action(
        public_id,
        lambda: endpoints.rotate_secret(public_id, _actor()),
        N_("New secret made. The previous one keeps signing for 24 hours: update your receiver."),
    )


@bp.post("/endpoints/<public_id>/test")
@roles_required(*MANAGERS)
def endpoint_test(public_id: str) -> BaseResponse:
    """Send a webhook_endpoint.test event."""
    return _action(
        public_id,
        lambda: endpoints.send_test(public_id, _actor()),
        N_("Test event {result.public_id} sent; see the log below."),
    )


@bp.post("/endpoints/<public_id>/delete")
@roles_required(*MANAGERS)
def endpoint_delete(public_id: str) -> BaseResponse:
    """Remove the endpoint and its log."""
    form = ButtonForm()
    if form.validate_on_submit():
        try:
            endpoints.delete_endpoint(public_id, _actor())
        except KassaError as exc:
            flash(exc.message, "error")
            return _see_other(url_for("dashboard.endpoint_detail", public_id=public_id))
        flash(gettext("Endpoint deleted."), "success")
    return _see_other(url_for("dashboard.endpoint_list"))


@bp.post("/endpoints/<public_id>/recover")
@roles_required(*MANAGERS)
def endpoint_recover(public_id: str) -> BaseResponse:
    """Send again every failed delivery since a time."""
    form = RecoverForm()
    if not form.validate_on_submit() or form.since.data is None:
        return _endpoint_page(public_id, 422, recover_form=form)
    since = form.since.data.replace(tzinfo=UTC)
    try:
        count = endpoints.recover(public_id, since, _actor())
    except NotFound:
        return _endpoint_page(public_id)
    except KassaError as exc:
        form.since.errors = [exc.message]
        return _endpoint_page(public_id, 422, recover_form=form)
    flash(
        ngettext(
            "%(num)s failed delivery sent again.", "%(num)s failed deliveries sent again.", count
        ),
        "success",
    )
    return _see_other(url_for("dashboard.endpoint_detail", public_id=public_id))


@bp.get("/endpoints/<public_id>/deliveries/<delivery_id>")
@roles_required(*MANAGERS)
def delivery_detail(public_id: str, delivery_id: str) -> BaseResponse:
    """One delivery: every attempt with its request, response and timing."""
    endpoint = _endpoint_or_404(public_id)
    try:
        delivery = endpoints.get_delivery(endpoint, delivery_id)
    except NotFound:
        abort(404)
    return make_response(
        render_template(
            "dashboard/delivery.html",
            endpoint=endpoint,
            delivery=delivery,
            button_form=ButtonForm(),
        )
    )


@bp.post("/endpoints/<public_id>/deliveries/<delivery_id>/replay")
@roles_required(*MANAGERS)
def delivery_replay(public_id: str, delivery_id: str) -> BaseResponse:
    """Send one delivery again now (same webhook-id, current secret)."""
    form = ButtonForm()
    back = url_for("dashboard.delivery_detail", public_id=public_id, delivery_id=delivery_id)
    if form.validate_on_submit():
        try:
            endpoints.replay(public_id, delivery_id, _actor())
        except NotFound:
            _endpoint_or_404(public_id)
            abort(404)
        except KassaError as exc:
            flash(exc.message, "error")
        else:
            flash(gettext("Sent again."), "success")
    return _see_other(back)


# --- live updates -----------------------------------------------------------------------


@bp.get("/events")
def events() -> BaseResponse:
    """The dashboard's live stream (server-sent events), filtered by the viewer's role."""
    from app import live
    from app.extensions import db

    role = current_user.role
    db.session.rollback()  # hold no connection while the stream is open
    return live.response(live.for_merchant(role), live.merchant_event_name)


# --- fulfilment -------------------------------------------------------------------------


@bp.post("/payments/<payment_id>/fulfillment/<status>")
@roles_required(*MANAGERS)
def fulfil(payment_id: str, status: str) -> BaseResponse:
    """Mark the payment's order fulfilled (or its fulfilment canceled)."""
    from app.payments.checkout import get_payment

    try:
        target = FulfillmentStatus(status)
        payment = get_payment(payment_id)
    except (ValueError, NotFound):
        abort(404)
    form = FulfillmentForm()
    if form.validate_on_submit():
        try:
            fulfillment.set_fulfillment(
                payment.order.public_id, target, _actor(), note=form.note.data
            )
        except KassaError as exc:
            flash(exc.message, "error")
        else:
            done = (
                "fulfilled; the customer is emailed"
                if target == FulfillmentStatus.FULFILLED
                else "canceled"
            )
            flash(f"Order {payment.order.public_id} {done}.", "success")
    else:
        flash(" ".join(form.note.errors) or "Try again.", "error")
    return _see_other(url_for("dashboard.payment", public_id=payment_id))
