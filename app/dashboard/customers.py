"""Dashboard: customers, their payments and saved methods; charging a saved method (with a
confirmation step, safe against double submits) and removing one."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app.auth.routes import roles_required
from app.dashboard import bp
from app.dashboard.forms import ButtonForm, ChargeForm, CustomerPageForm, SetupLinkForm
from app.extensions import db
from app.models import Customer, Payment, Role, SavedPaymentMethod
from app.payments import charges, customers
from app.payments.audit import Actor
from app.payments.errors import KassaError, NotFound
from app.presentation import status_label

MANAGERS = (Role.OWNER.value, Role.ADMIN.value)
CUSTOMERS_PER_PAGE = 50


def _actor() -> Actor:
    return Actor("user", str(current_user.id))


def _customer_or_404(public_id: str) -> Customer:
    try:
        return customers.get_customer(public_id)
    except NotFound:
        abort(404)


def _method_or_404(customer: Customer, method_id: str) -> SavedPaymentMethod:
    try:
        return customers.get_method(method_id, customer)
    except NotFound:
        abort(404)


@bp.get("/customers")
def customer_list() -> str:
    """Customers, newest first, with how many methods they saved; a page at a time."""
    form = CustomerPageForm(request.args)
    if not form.validate():  # not a row id (e.g. beyond INTEGER): no page starts there
        abort(400)
    rows, next_before = customers.customer_page(
        CUSTOMERS_PER_PAGE, email=form.email.data or None, before_id=form.before.data
    )
    return render_template(
        "dashboard/customers.html",
        customers=rows,
        next_before=next_before,
        first_page=form.before.data is None,
        form=form,
    )


@bp.get("/customers/<public_id>")
def customer_page(public_id: str) -> str:
    """One customer: saved methods (charge, remove) and payments."""
    customer = _customer_or_404(public_id)
    payments = (
        db.session.execute(
            select(Payment).where(Payment.customer_id == customer.id).order_by(Payment.id.desc())
        )
        .scalars()
        .all()
    )
    setup_form = SetupLinkForm(formdata=None)
    setup_form.gateway.choices = customers.setup_gateways()
    setup_form.currency.data = payments[0].currency if payments else "USD"
    return render_template(
        "dashboard/customer.html",
        customer=customer,
        methods=[m for m in customer.methods if m.active],
        payments=payments,
        button_form=ButtonForm(),
        setup_form=setup_form,
    )


@bp.post("/customers/<public_id>/setup")
@roles_required(*MANAGERS)
def send_setup_link(public_id: str) -> BaseResponse:
    """Email the customer a link to save a card without paying (Stripe Checkout setup
    mode); the card appears here once the gateway confirms."""
    customer = _customer_or_404(public_id)
    form = SetupLinkForm()
    form.gateway.choices = customers.setup_gateways()
    if not form.validate_on_submit():
        flash(" ".join(str(e) for errors in form.errors.values() for e in errors), "error")
        return redirect(url_for("dashboard.customer_page", public_id=public_id), code=303)
    try:
        session = customers.start_method_setup(
            customer.public_id, form.gateway.data or "", form.currency.data or None, _actor()
        )
    except KassaError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        flash(
            _(
                "A link to save a card was emailed to %(email)s: %(url)s",
                email=customer.email,
                url=session.redirect_url,
            ),
            "success",
        )
    return redirect(url_for("dashboard.customer_page", public_id=public_id), code=303)


def _charge_page(
    customer: Customer, method: SavedPaymentMethod, form: ChargeForm, status: int = 200
) -> tuple[str, int]:
    return render_template(
        "dashboard/charge.html", customer=customer, method=method, form=form
    ), status


@bp.get("/customers/<public_id>/methods/<method_id>/charge")
@roles_required(*MANAGERS)
def charge_form(public_id: str, method_id: str) -> tuple[str, int]:
    customer = _customer_or_404(public_id)
    method = _method_or_404(customer, method_id)
    form = ChargeForm(formdata=None)
    latest = customer.payments[-1] if customer.payments else None
    if latest is not None:
        form.currency.data = latest.currency
    return _charge_page(customer, method, form)


@bp.post("/customers/<public_id>/methods/<method_id>/charge")
@roles_required(*MANAGERS)
def charge_method(public_id: str, method_id: str) -> BaseResponse | tuple[str, int]:
    """First POST: the confirmation step (what will be charged to which card). The second,
    with `confirmed`, charges; its key makes a double submit charge once."""
    customer = _customer_or_404(public_id)
    method = _method_or_404(customer, method_id)
    form = ChargeForm()
    if not form.validate_on_submit():
        form.confirmed.data = ""
        return _charge_page(customer, method, form, 422)
    if form.confirmed.data != "yes":
        form.confirmed.data = "yes"
        return _charge_page(customer, method, form)
    try:
        payment = charges.charge_saved_method(
            method.public_id,
            amount=form.amount_minor,
            currency=(form.currency.data or "").upper(),
            description=form.description.data or "",
            request_key=f"dashboard\n{current_user.id}\n{form.key.data}",
            actor=_actor(),
        )
    except KassaError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        form.confirmed.data = ""
        # A decline is final for this key: a new attempt gets a new key.
        form.key.data = ChargeForm(formdata=None).key.data
        return _charge_page(customer, method, form, exc.http_status)
    if payment.status == "requires_action":
        flash(
            _("The customer's bank wants them to confirm this charge: they were emailed a link."),
            "success",
        )
    else:
        flash(_("Charge: %(status)s.", status=_(status_label(payment.status))), "success")
    return redirect(url_for("dashboard.payment", public_id=payment.public_id), code=303)


@bp.post("/customers/<public_id>/methods/<method_id>/remove")
@roles_required(*MANAGERS)
def remove_method(public_id: str, method_id: str) -> BaseResponse:
    customer = _customer_or_404(public_id)
    method = _method_or_404(customer, method_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        customers.detach_method(method.public_id, _actor(), customer)
    except KassaError as exc:
        flash(exc.message, "error")
    else:
        flash(_("Payment method removed."), "success")
    return redirect(url_for("dashboard.customer_page", public_id=public_id), code=303)
