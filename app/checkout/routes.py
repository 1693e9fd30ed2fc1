"""Customer pages: storefront, product and checkout form, return pages, order status."""

from __future__ import annotations

from flask import abort, current_app, make_response, redirect, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response

from app import live
from app.checkout import bp
from app.checkout.forms import CheckoutForm, RetryForm
from app.extensions import db, htmx, limiter
from app.gateways import registry
from app.models import Product
from app.payments import checkout, orders
from app.payments.audit import CUSTOMER
from app.payments.errors import KassaError, NotFound
from app.payments.orders import ItemRequest
from app.payments.status import is_settled

# Each checkout POST creates an order and reserves stock: limit them per client address.
checkout_limit = limiter.limit(
    lambda: current_app.config["CHECKOUT_RATE_LIMIT"],
    methods=["POST"],
    error_message="Too many checkout attempts from your network. Please wait a minute and "
    "try again.",
)


def _product_or_404(sku: str) -> Product:
    product = db.session.execute(
        select(Product).where(Product.sku == sku, Product.active.is_(True))
    ).scalar_one_or_none()
    if product is None:
        abort(404)
    return product


@bp.get("/")
def storefront() -> str:
    """The catalog."""
    products = (
        db.session.execute(select(Product).where(Product.active.is_(True)).order_by(Product.id))
        .scalars()
        .all()
    )
    return render_template("checkout/storefront.html", products=products)


@bp.route("/products/<sku>", methods=["GET", "POST"])
@checkout_limit
def product(sku: str) -> str | Response | tuple[str, int]:
    """A product with its checkout form; POST starts the payment (303 to the gateway)."""
    form = CheckoutForm()
    form.gateway.choices = registry.choices()
    if len(form.gateway.choices) == 1 and not form.gateway.data:
        form.gateway.data = form.gateway.choices[0][0]
    if request.method == "POST":
        # A valid form goes straight to the checkout, which reads the product in its own
        # transaction (an unknown or inactive SKU is its NotFound); the page is only
        # rendered again for errors.
        if form.validate_on_submit():
            try:
                payment = checkout.create_checkout(
                    [ItemRequest(sku, form.quantity.data or 0)],
                    form.email.data or "",
                    form.name.data or "",
                    form.gateway.data or "",
                    CUSTOMER,
                )
            except NotFound:
                abort(404)
            except KassaError as exc:
                # Out of stock, gateway down: say so on the form, change nothing else.
                form.form_errors.append(exc.message)
            else:
                return redirect(payment.checkout_url or "/", code=303)
        item = _product_or_404(sku)
        return render_template("checkout/product.html", product=item, form=form), 422
    return render_template("checkout/product.html", product=_product_or_404(sku), form=form)


@bp.get("/checkout/return/<payment_id>")
def payment_return(payment_id: str) -> str:
    """Where the gateway sends the customer back: verify with the gateway, show status."""
    try:
        payment = checkout.confirm_return(payment_id, request.args.to_dict(), CUSTOMER)
    except NotFound:
        abort(404)
    return render_template(
        "checkout/return.html",
        payment=payment,
        order=payment.order,
        retry_form=_retry_form(),
        live_events_url=live.events_url("checkout.order_events", order_id=payment.order.public_id),
    )


@bp.get("/checkout/cancel/<payment_id>")
def payment_cancel(payment_id: str) -> str:
    """The customer left the hosted page: offer a new attempt."""
    try:
        payment = checkout.get_payment(payment_id)
    except NotFound:
        abort(404)
    return render_template(
        "checkout/cancel.html", payment=payment, order=payment.order, retry_form=_retry_form()
    )


def _retry_form() -> RetryForm:
    form = RetryForm()
    form.gateway.choices = registry.choices()
    if form.gateway.choices and not form.gateway.data:
        form.gateway.data = form.gateway.choices[0][0]
    return form


@bp.post("/orders/<order_id>/retry")
@checkout_limit
def retry(order_id: str) -> Response | tuple[str, int]:
    """Start a new payment attempt for this order (or a new order with the same items)."""
    form = _retry_form()
    try:
        order = orders.get_order(order_id)
    except NotFound:
        abort(404)
    if form.validate_on_submit():
        try:
            payment = checkout.retry_checkout(order.public_id, form.gateway.data or "", CUSTOMER)
        except KassaError as exc:
            form.form_errors.append(exc.message)
        else:
            return redirect(payment.checkout_url or "/", code=303)
    return render_template("checkout/order.html", order=order, retry_form=form), 422


@bp.get("/orders/<order_id>")
def order_page(order_id: str) -> str:
    """An order: items, total and live status."""
    try:
        order = orders.get_order(order_id)
    except NotFound:
        abort(404)
    return render_template(
        "checkout/order.html",
        order=order,
        retry_form=_retry_form(),
        live_events_url=live.events_url("checkout.order_events", order_id=order.public_id),
    )


@bp.get("/orders/<order_id>/events")
def order_events(order_id: str) -> Response:
    """The order page's live stream (server-sent events about this order only)."""
    try:
        orders.get_order(order_id)
    except NotFound:
        abort(404)
    db.session.rollback()  # hold no connection while the stream is open
    return live.response(live.for_order(order_id), lambda _m: "order")


@bp.get("/orders/<order_id>/status")
def order_status(order_id: str) -> Response:
    """The self-polling status widget (a full page without htmx)."""
    try:
        order = orders.get_order(order_id)
    except NotFound:
        abort(404)
    if not htmx:
        return make_response(
            render_template("checkout/order.html", order=order, retry_form=_retry_form())
        )
    response = make_response(
        render_template("checkout/_order_status.html", order=order, retry_form=_retry_form())
    )
    if is_settled(order):
        response.status_code = 286  # htmx: stop polling
    return response
