"""Dashboard views: parse, call the core (or a read-only query), render.

Full pages include their `_partial.html`; htmx requests get the partial alone
(except boosted navigation and history restores, which need whole pages).
Every POST needs CSRF (CSRFProtect, token in a hidden field or htmx's header) and
the owner or admin role; viewers read only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from app import live
from app.api.keys import create_api_key, list_api_keys, revoke_api_key
from app.auth.routes import roles_required
from app.dashboard import bp, queries
from app.dashboard.charts import bar_chart
from app.dashboard.endpoint_forms import FulfillmentForm
from app.dashboard.forms import (
    ApiKeyForm,
    ButtonForm,
    FilterForm,
    PaymentLinkForm,
    RefundForm,
    WebhookFilterForm,
    options,
)
from app.dashboard.timeline import requester
from app.extensions import db, htmx, login_manager
from app.i18n import current_locale
from app.models import Payment, Role
from app.money import format_minor, major_text
from app.payments import events
from app.payments import links as links_core
from app.payments.audit import Actor
from app.payments.errors import KassaError
from app.payments.refunds import (
    can_void,
    capture_payment,
    create_refund,
    refundable_amount,
    sync_payment,
    void_authorization,
)
from app.payments.subscriptions import metrics as subscription_metrics
from app.presentation import shown_status

MANAGERS = (Role.OWNER.value, Role.ADMIN.value)
POLL_STOP = 286  # htmx: stop polling this element


@bp.before_request
def require_login() -> BaseResponse | None:
    """Everything here needs a signed-in merchant; writes need owner or admin."""
    if not current_user.is_authenticated:
        if htmx:
            # An expired session during a swap: send the whole page to sign-in.
            response = make_response("", 401)
            response.headers["HX-Redirect"] = url_for("auth.login", next=request.full_path)
            return response
        # flask_login ships no types: its answer is the redirect to sign-in (or a 401).
        to_sign_in: BaseResponse = login_manager.unauthorized()
        return to_sign_in
    if request.method not in ("GET", "HEAD", "OPTIONS") and current_user.role not in MANAGERS:
        abort(403)
    return None


@bp.after_request
def no_store(response: BaseResponse) -> BaseResponse:
    """Dashboard answers are private and per-fragment."""
    # Merchant data and one-time secrets must not linger in shared caches or history.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Vary", "HX-Request")
    return response


@bp.context_processor
def dashboard_globals() -> dict[str, Any]:
    """Role flags and the sign-out form for every dashboard template."""
    can_manage = current_user.is_authenticated and current_user.role in MANAGERS
    return {
        "can_manage": can_manage,
        "logout_form": ButtonForm(),
        "gateway_dashboard_url": queries.gateway_dashboard_url,
        "requester": requester,
        "can_void": can_void,
    }


@bp.app_template_filter("pretty_json")
def pretty_json(raw: str | None) -> str:
    """Indent a stored JSON body for reading; show it unchanged if it isn't JSON."""
    try:
        return json.dumps(json.loads(raw or ""), indent=2, sort_keys=True)
    except ValueError:
        return raw or ""


def _actor() -> Actor:
    return Actor("user", str(current_user.id))


def _partial_wanted() -> bool:
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def _error_status(code: int) -> int:
    """htmx swaps only 2xx answers; an inline form error is content it must show."""
    return 200 if _partial_wanted() else code


def _render(full: str, partial: str, status: int = 200, **context: Any) -> BaseResponse:
    """The partial for htmx swaps, the full page (which includes it) otherwise."""
    template = partial if _partial_wanted() else full
    if status >= 400:
        status = _error_status(status)
    return make_response(render_template(template, **context), status)


def _payment_or_404(public_id: str) -> Payment:
    payment = queries.payment_detail(public_id)
    if payment is None:
        abort(404)
    return payment


# --- overview ------------------------------------------------------------------------


@bp.get("/")
def overview() -> BaseResponse:
    """Volume, counts and success rate per day for 7, 30 or 90 days."""
    days = request.args.get("days", type=int) or 30
    if days not in (7, 30, 90):
        days = 30
    data = queries.overview(days, currency=request.args.get("currency") or None)
    cur = data.chart_currency
    volume_chart = bar_chart(
        [(p.day, p.volume) for p in data.series], (lambda v: format_minor(v, cur)) if cur else str
    )
    count_chart = bar_chart([(p.day, p.count) for p in data.series], lambda v: f"{v:,}")
    return _render(
        "dashboard/overview.html",
        "dashboard/_overview.html",
        data=data,
        volume_chart=volume_chart,
        count_chart=count_chart,
        subs=subscription_metrics(),
    )


# --- payments list -------------------------------------------------------------------


def _filter_form() -> FilterForm:
    form = FilterForm(
        request.args,
        gateways=queries.gateway_choices(),
        currencies=queries.currency_choices(request.args.get("currency")),
    )
    form.validate()
    return form


@bp.get("/payments")
def payments() -> BaseResponse:
    """Payments with filters, search, sort and keyset pagination."""
    form = _filter_form()
    filters = form.filters()
    page = queries.payment_page(
        filters, after=request.args.get("after"), before=request.args.get("before")
    )
    response = _render(
        "dashboard/payments.html",
        "dashboard/_payments_results.html",
        # A filter that cannot be used is dropped and shown as an error: the page says so.
        status=400 if form.errors else 200,
        form=form,
        page=page,
        filters=filters,
        oob_status=_partial_wanted(),
        live_events_url=live.events_url("dashboard.events"),
    )
    if _partial_wanted():
        # Keep the address bar tidy (no empty parameters) while staying a real link.
        args: dict[str, Any] = filters.query_args()
        for name in ("after", "before"):
            if request.args.get(name):
                args[name] = request.args[name]
        response.headers["HX-Push-Url"] = url_for("dashboard.payments", **args)
    return response


@bp.get("/payments/<public_id>/row")
def payment_row(public_id: str) -> BaseResponse:
    """One list row, polled while the payment is in flight (286 once it is final)."""
    payment = _payment_or_404(public_id)
    if not _partial_wanted():
        return redirect(url_for("dashboard.payment", public_id=public_id))
    response = make_response(render_template("dashboard/_payment_row.html", payment=payment))
    if payment.is_final:
        response.status_code = POLL_STOP
    return response


def _csv_cell(value: str) -> str:
    # Spreadsheet formula injection: text starting with = + - @ is shown, never run.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@bp.get("/payments/export.csv")
def export_csv() -> BaseResponse:
    """The filtered payments as CSV, streamed row by row from a server-side cursor."""
    form = _filter_form()
    if form.errors:  # an export must hold exactly what was asked for, or nothing
        abort(400)
    filters = form.filters()
    header = [
        "payment_id",
        "created_at",
        "order_id",
        "status",
        "gateway",
        "amount",
        "amount_refunded",
        "currency",
        "customer_email",
        "gateway_reference",
        "gateway_payment_id",
        "failure_code",
    ]

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for count, row in enumerate(queries.export_rows(filters), start=1):
            (
                pid,
                created,
                order_id,
                status,
                gateway,
                amount,
                refunded,
                currency,
                email,
                reference,
                gateway_pid,
                failure,
            ) = row
            created_at = created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
            # Only text that came from customers or gateways can start a formula.
            writer.writerow(
                (
                    pid,
                    created_at.isoformat(),
                    order_id,
                    shown_status(status, gateway_pid, failure),
                    gateway,
                    major_text(amount, currency),
                    major_text(refunded, currency),
                    currency,
                    _csv_cell(email),
                    _csv_cell(reference or ""),
                    _csv_cell(gateway_pid or ""),
                    _csv_cell(failure or ""),
                )
            )
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="kassa-payments-{stamp}.csv"'},
    )


# --- one payment ---------------------------------------------------------------------


def _refund_form(payment: Payment, **kwargs: Any) -> RefundForm:
    return RefundForm(currency=payment.currency, remaining=refundable_amount(payment), **kwargs)


def _payment_context(payment: Payment, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "payment": payment,
        "order": payment.order,
        "remaining": refundable_amount(payment),
        "pending_refunds": queries.has_pending_refunds(payment),
        "button_form": ButtonForm(),
        "fulfillment_form": FulfillmentForm(formdata=None),
    }
    context.update(extra)
    if "refund_form" not in context:
        context["refund_form"] = _refund_form(payment, formdata=None)
    return context


@bp.get("/payments/<public_id>")
def payment(public_id: str) -> BaseResponse:
    """A payment: amounts, customer, items, gateway references, refunds, timeline."""
    p = _payment_or_404(public_id)
    return make_response(
        render_template(
            "dashboard/payment.html",
            timeline=queries.timeline(p),
            live_events_url=live.events_url("dashboard.events"),
            **_payment_context(p),
        )
    )


def _with_timeline(payment: Payment, settled: bool, extra: dict[str, Any]) -> dict[str, Any]:
    """Send the timeline along once something finished, so the history catches up."""
    if (
        settled
        or extra.get("action_message")
        or extra.get("action_error")
        or extra.get("refresh_lists")
    ):
        return {**extra, "timeline_oob": True, "timeline": queries.timeline(payment)}
    return extra


def _status_widget(payment: Payment, **extra: Any) -> BaseResponse:
    settled = payment.is_final and not queries.has_pending_refunds(payment)
    context = _payment_context(payment, **_with_timeline(payment, settled, extra))
    context["order_label_oob"] = True  # the order's label follows its payment at once
    # Once everything settled, the refund form says what is left (e.g. "refunded in full").
    context["refund_form_oob"] = settled
    response = make_response(render_template("dashboard/_payment_status.html", **context))
    if settled:
        response.status_code = POLL_STOP
    return response


@bp.get("/payments/by-id/<int:payment_id>")
def payment_by_id(payment_id: int) -> BaseResponse:
    """Links from rows that only know the internal id (webhook inbox)."""
    p = db.session.get(Payment, payment_id)
    if p is None:
        abort(404)
    return redirect(url_for("dashboard.payment", public_id=p.public_id))


@bp.get("/payments/<public_id>/refund-form")
def refund_form(public_id: str) -> BaseResponse:
    """A fresh refund form (the confirmation's "Change" button)."""
    p = _payment_or_404(public_id)
    if not _partial_wanted():
        return redirect(url_for("dashboard.payment", public_id=public_id) + "#refunds")
    return make_response(render_template("dashboard/_refund_form.html", **_payment_context(p)))


@bp.get("/payments/<public_id>/status")
def payment_status(public_id: str) -> BaseResponse:
    """The self-polling status and amounts widget."""
    p = _payment_or_404(public_id)
    if not _partial_wanted():
        return redirect(url_for("dashboard.payment", public_id=public_id))
    return _status_widget(p)


@bp.get("/payments/<public_id>/refunds")
def refund_list(public_id: str) -> BaseResponse:
    """The refunds table, polled while a refund is pending."""
    p = _payment_or_404(public_id)
    if not _partial_wanted():
        return redirect(url_for("dashboard.payment", public_id=public_id) + "#refunds")
    settled = not queries.has_pending_refunds(p)
    response = make_response(
        render_template(
            "dashboard/_refund_list.html", **_payment_context(p, **_with_timeline(p, settled, {}))
        )
    )
    if settled:
        response.status_code = POLL_STOP
    return response


def _refund_form_response(
    payment: Payment, form: RefundForm, status: int, **extra: Any
) -> BaseResponse:
    if not _partial_wanted():
        extra.pop("refresh_lists", None)  # out-of-band swaps only make sense in fragments
    else:
        extra = _with_timeline(payment, False, extra)
    context = _payment_context(payment, refund_form=form, **extra)
    status = _error_status(status) if status >= 400 else status
    if _partial_wanted():
        return make_response(render_template("dashboard/_refund_form.html", **context), status)
    return make_response(
        render_template("dashboard/payment.html", timeline=queries.timeline(payment), **context),
        status,
    )


@bp.post("/payments/<public_id>/refund")
@roles_required(*MANAGERS)
def refund(public_id: str) -> BaseResponse:
    """Refund: first POST shows a confirmation, the confirmed POST creates the refund."""
    p = _payment_or_404(public_id)
    form = _refund_form(p)
    token = (form.token.data or "")[:40]
    key = f"dash-{p.public_id}-{token}"
    # The same form submitted again: answer with the refund it already made.
    done = queries.refund_by_key(key) if form.confirm.data == "yes" else None
    if done is None:
        if not form.validate_on_submit():
            return _refund_form_response(p, form, 422)
        if form.confirm.data != "yes":
            return _refund_form_response(p, form, 200, confirming=True)
        try:
            done = create_refund(
                p.public_id, form.amount_minor, form.reason.data, _actor(), idempotency_key=key
            )
        except KassaError as exc:
            form.form_errors.append(exc.message)
            fresh = queries.payment_detail(public_id) or p
            return _refund_form_response(fresh, form, 422, refresh_lists=True)
    amount = format_minor(done.amount, done.currency, current_locale())
    if done.status == "pending":
        message = gettext("Refund of %(amount)s requested.", amount=amount)
    elif done.status == "succeeded":
        message = gettext("Refund of %(amount)s succeeded.", amount=amount)
    else:
        message = gettext("Refund of %(amount)s failed.", amount=amount)
    if not _partial_wanted():
        flash(message, "success")
        return redirect(url_for("dashboard.payment", public_id=public_id) + "#refunds", code=303)
    fresh = queries.payment_detail(public_id) or p
    new_form = _refund_form(fresh, formdata=None)
    return _refund_form_response(fresh, new_form, 200, refund_message=message, refresh_lists=True)


def _button_action(public_id: str, action: str) -> BaseResponse:
    """Capture, void or sync, then answer the status widget (or 303 back without htmx)."""
    _payment_or_404(public_id)
    error = None
    try:
        if action == "capture":
            capture_payment(public_id, _actor())
            message = gettext("Payment captured.")
        elif action == "void":
            void_authorization(public_id, _actor())
            message = gettext("Authorization voided: nothing was charged.")
        else:
            sync_payment(public_id, _actor())
            message = gettext("Payment synced with the gateway.")
    except KassaError as exc:  # declined, unavailable, wrong state: say so in the panel
        error, message = exc.message, None
    p = _payment_or_404(public_id)
    if not _partial_wanted():
        flash(error or message or "", "error" if error else "success")
        return redirect(url_for("dashboard.payment", public_id=public_id), code=303)
    return _status_widget(p, action_error=error, action_message=message)


@bp.post("/payments/<public_id>/capture")
@roles_required(*MANAGERS)
def capture(public_id: str) -> BaseResponse:
    """Capture an authorized payment; answers the status widget."""
    return _button_action(public_id, "capture")


@bp.post("/payments/<public_id>/void")
@roles_required(*MANAGERS)
def void(public_id: str) -> BaseResponse:
    """Void an authorized payment (release the hold, charge nothing); answers the widget."""
    return _button_action(public_id, "void")


@bp.post("/payments/<public_id>/sync")
@roles_required(*MANAGERS)
def sync(public_id: str) -> BaseResponse:
    """Ask the gateway for the payment's current state; answers the status widget."""
    return _button_action(public_id, "sync")


# --- webhook inbox -------------------------------------------------------------------


@bp.get("/webhooks")
def webhooks() -> BaseResponse:
    """The webhook inbox: status, attempts, errors, outcome; newest first."""
    form = WebhookFilterForm(request.args)
    form.gateway.choices = options(
        [("", "Any gateway")] + [(g, g.capitalize()) for g in queries.gateway_choices()]
    )
    form.validate()
    status = form.status.data if form.status.data and not form.status.errors else None
    gateway = form.gateway.data if form.gateway.data and not form.gateway.errors else None
    if form.before.errors:  # not a row id (e.g. beyond INTEGER): no page starts there
        abort(400)
    rows, next_before = queries.webhook_page(status, gateway, form.before.data)
    args = {k: v for k, v in {"status": status, "gateway": gateway}.items() if v}
    return _render(
        "dashboard/webhooks.html",
        "dashboard/_webhooks_results.html",
        form=form,
        events=rows,
        next_before=next_before,
        filter_args=args,
        button_form=ButtonForm(),
    )


@bp.post("/webhooks/<int:row_id>/reprocess")
@roles_required(*MANAGERS)
def reprocess(row_id: int) -> BaseResponse:
    """Run a stored event through processing again (also dead ones)."""
    if queries.webhook_event(row_id) is None:
        abort(404)
    error = None
    try:
        events.reprocess(row_id, _actor())  # audited as this merchant's request
    except Exception as exc:  # noqa: BLE001  (any failure is recorded on the row; show it)
        current_app.logger.warning("reprocess of event %s failed: %s", row_id, exc)
        error = f"Processing failed: {type(exc).__name__}: {exc}"
    event = queries.webhook_event(row_id)
    if not _partial_wanted():
        flash(error or gettext("Event reprocessed."), "error" if error else "success")
        return redirect(url_for("dashboard.webhooks"), code=303)
    return make_response(
        render_template(
            "dashboard/_webhook_row.html",
            event=event,
            button_form=ButtonForm(),
            row_error=error,
            row_message=None if error else gettext("Reprocessed."),
        )
    )


# --- API keys ------------------------------------------------------------------------


@bp.get("/api-keys")
def api_keys() -> BaseResponse:
    """API keys: list, create (secret shown once), revoke."""
    return _render(
        "dashboard/api_keys.html",
        "dashboard/_api_keys.html",
        keys=list_api_keys(),
        form=ApiKeyForm(formdata=None),
        button_form=ButtonForm(),
    )


@bp.post("/api-keys")
@roles_required(*MANAGERS)
def create_key() -> BaseResponse:
    """Create a key and show its secret this one time (never stored, never redirected)."""
    form = ApiKeyForm()
    secret = None
    status = 422
    if form.validate_on_submit():
        try:
            _key, secret = create_api_key(
                form.name.data or "",
                form.scope.data or "write",
                _actor(),
                created_by_id=current_user.id,
            )
            status = 201
            form = ApiKeyForm(formdata=None)
        except (KassaError, ValueError) as exc:
            form.form_errors.append(
                getattr(exc, "message", None) or gettext("Check the name and access.")
            )
    return _render(
        "dashboard/api_keys.html",
        "dashboard/_api_keys.html",
        status=status,
        keys=list_api_keys(),
        form=form,
        button_form=ButtonForm(),
        new_secret=secret,
    )


@bp.post("/api-keys/<prefix>/revoke")
@roles_required(*MANAGERS)
def revoke_key(prefix: str) -> BaseResponse:
    """Revoke a key: requests with it fail from now on."""
    try:
        key = revoke_api_key(prefix, _actor())
    except KassaError as exc:
        abort(exc.http_status)
    if not _partial_wanted():
        flash(gettext("Key %(prefix)s… revoked.", prefix=key.prefix), "success")
        return redirect(url_for("dashboard.api_keys"), code=303)
    return _render(
        "dashboard/api_keys.html",
        "dashboard/_api_keys.html",
        keys=list_api_keys(),
        form=ApiKeyForm(formdata=None),
        button_form=ButtonForm(),
        key_message=gettext("Key %(prefix)s… revoked.", prefix=key.prefix),
    )


# --- payment links -------------------------------------------------------------------


def _link_form(formdata: Any = None) -> PaymentLinkForm:
    products = [
        (p.sku, f"{p.name} ({format_minor(p.unit_amount, p.currency)})")
        for p in queries.listed_products()
    ]
    if formdata is None:
        return PaymentLinkForm(formdata=None, products=products)
    return PaymentLinkForm(products=products)


def _links_page(form: PaymentLinkForm, status: int = 200, **extra: Any) -> BaseResponse:
    return _render(
        "dashboard/links.html",
        "dashboard/_links.html",
        status=status,
        links=links_core.list_links(),
        form=form,
        button_form=ButtonForm(),
        link_amount=links_core.link_amount,
        link_problem=links_core.unavailable,
        **extra,
    )


@bp.get("/links")
def payment_links() -> BaseResponse:
    """Payment links: create, list with their payments, turn off."""
    return _links_page(_link_form())


@bp.post("/links")
@roles_required(*MANAGERS)
def create_payment_link() -> BaseResponse:
    """Create a link for a catalog product or a custom amount."""
    form = _link_form(formdata=True)
    if not form.validate_on_submit():
        return _links_page(form, 422)
    expires = None
    if form.expires_on.data:
        # The whole chosen day counts: the link works until its end (UTC).
        expires = datetime.combine(form.expires_on.data, datetime.max.time(), tzinfo=UTC)
    try:
        link = links_core.create_link(
            links_core.NewLink(
                description=form.description.data or "",
                sku=form.sku.data or None,
                quantity=form.quantity.data or 1,
                amount=None if form.sku.data else form.amount_minor,
                currency=None if form.sku.data else (form.currency.data or "").upper(),
                reusable=bool(form.reusable.data),
                expires_at=expires,
            ),
            _actor(),
        )
    except KassaError as exc:
        form.form_errors.append(exc.message)
        for detail in exc.details or []:
            if isinstance(detail, dict) and detail.get("message"):
                form.form_errors.append(str(detail["message"]))
        return _links_page(form, 422)
    url = url_for("checkout.pay_link", link_id=link.public_id, _external=True)
    return _links_page(_link_form(), 201, new_link_url=url)


@bp.post("/links/<public_id>/off")
@roles_required(*MANAGERS)
def turn_off_link(public_id: str) -> BaseResponse:
    """Turn a link off: its page then says so and takes no payment."""
    try:
        links_core.set_active(public_id, False, _actor())
    except KassaError as exc:
        abort(exc.http_status)
    if not _partial_wanted():
        flash(gettext("Payment link turned off."), "success")
        return redirect(url_for("dashboard.payment_links"), code=303)
    return _links_page(_link_form())
