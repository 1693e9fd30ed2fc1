"""Customer pages: storefront, product and checkout form, return pages, order status."""

from __future__ import annotations

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response

from app import live
from app.checkout import bp, cart
from app.checkout.forms import CartCheckoutForm, CheckoutForm, RetryForm
from app.extensions import db, htmx, limiter
from app.gateways import registry
from app.models import Payment, PaymentLink, PaymentStatus, Product
from app.payments import charges, checkout, customers, links, orders, subscriptions
from app.payments.audit import CUSTOMER
from app.payments.errors import InvalidState, KassaError, NotFound, OutOfStock
from app.payments.orders import ItemRequest
from app.payments.status import is_settled
from app.receipt_facts import facts as receipt_facts

# Each checkout POST that creates an order reserves stock: limit those per client address.
# Only checkouts that went ahead count (a 303 to the gateway): a customer fixing a typo in
# the form is not using up the limit.
checkout_limit = limiter.limit(
    lambda: current_app.config["CHECKOUT_RATE_LIMIT"],
    methods=["POST"],
    deduct_when=lambda response: response.status_code == 303,
    error_message="Too many checkouts from your network in the last minute. Please wait a "
    "minute and press the button again: what you entered is kept.",
)


@bp.errorhandler(429)
def too_many(exc: Exception) -> tuple[str, int]:
    """The rate limit tripped: show the same form again with what the customer typed."""
    message = getattr(exc, "description", None) or "Too many attempts; wait a minute."
    if request.endpoint == "checkout.product" and request.view_args:
        form = _checkout_form()
        form.form_errors.append(str(message))
        product = _product_or_404(str(request.view_args["sku"]))
        return _product_page(product, form), 429
    if request.endpoint == "checkout.cart_checkout":
        form = _cart_form()
        form.form_errors.append(str(message))
        return _cart_page(form), 429
    return render_template(
        "errors/error.html", title="Please slow down", message=message, status=429
    ), 429


def _product_or_404(sku: str) -> Product:
    product = db.session.execute(
        select(Product).where(
            Product.sku == sku, Product.active.is_(True), Product.listed.is_(True)
        )
    ).scalar_one_or_none()
    if product is None:
        abort(404)
    return product


@bp.get("/")
def storefront() -> str:
    """The catalog."""
    products = (
        db.session.execute(
            select(Product)
            .where(Product.active.is_(True), Product.listed.is_(True))
            .order_by(Product.id)
        )
        .scalars()
        .all()
    )
    return render_template(
        "checkout/storefront.html", products=products, plans=subscriptions.plans()
    )


def _checkout_form() -> CheckoutForm:
    form = CheckoutForm()
    form.gateway.choices = registry.choices()
    if len(form.gateway.choices) == 1 and not form.gateway.data:
        form.gateway.data = form.gateway.choices[0][0]
    return form


def _product_page(product: Product, form: CheckoutForm) -> str:
    return render_template(
        "checkout/product.html",
        product=product,
        form=form,
        max_quantity=cart.max_quantity(product),
    )


@bp.route("/products/<sku>", methods=["GET", "POST"])
@checkout_limit
def product(sku: str) -> str | Response | tuple[str, int]:
    """A product with its checkout form; POST starts the payment (303 to the gateway)."""
    form = _checkout_form()
    if request.method == "POST":
        item = _product_or_404(sku)
        if form.validate_on_submit():
            problem = cart.stock_problem(item, form.quantity.data or 0)
            if problem:
                form.quantity.errors = [*form.quantity.errors, problem]
            else:
                try:
                    payment = checkout.create_checkout(
                        [ItemRequest(sku, form.quantity.data or 0)],
                        form.email.data or "",
                        form.name.data or "",
                        form.gateway.data or "",
                        CUSTOMER,
                        save_payment_method=bool(form.save_payment_method.data),
                    )
                except NotFound:
                    abort(404)
                except OutOfStock:
                    # Someone bought the last ones meanwhile: say what is left now.
                    db.session.expire_all()
                    item = _product_or_404(sku)
                    form.quantity.errors = [
                        *form.quantity.errors,
                        cart.stock_problem(item, form.quantity.data or 0)
                        or "Sorry, that many are no longer available.",
                    ]
                except KassaError as exc:
                    # A gateway down: say so on the form, change nothing else.
                    form.form_errors.append(exc.message)
                else:
                    return redirect(payment.checkout_url or "/", code=303)
        return _product_page(item, form), 422
    return _product_page(_product_or_404(sku), form)


# --- the cart ------------------------------------------------------------------------


def _cart_form() -> CartCheckoutForm:
    form = CartCheckoutForm()
    form.gateway.choices = registry.choices()
    if len(form.gateway.choices) == 1 and not form.gateway.data:
        form.gateway.data = form.gateway.choices[0][0]
    return form


def _cart_page(form: CartCheckoutForm, notices: list[str] | None = None) -> str:
    view = cart.view()
    return render_template(
        "checkout/cart.html",
        cart=view,
        form=form,
        button_form=FlaskForm(),
        notices=[*view.notices, *(notices or [])],
        max_quantity=cart.max_quantity,
    )


@bp.get("/cart")
def cart_page() -> str:
    """The cart: items, quantities and total, and the checkout form."""
    return _cart_page(_cart_form())


@bp.post("/cart/add")
def cart_add() -> Response | str | tuple[str, int]:
    """Put a product in the cart (303 to the cart), or say on its page why not."""
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    item = _product_or_404(request.form.get("sku", ""))
    quantity = request.form.get("quantity", type=int)
    try:
        cart.add(item, quantity if quantity is not None else 0)
    except cart.CartError as exc:
        page_form = _checkout_form()
        page_form.quantity.errors = [exc.message]
        return _product_page(item, page_form), 422
    flash(f"{item.name} is in your cart.", "success")
    return redirect(url_for("checkout.cart_page"), code=303)


@bp.post("/cart/update")
def cart_update() -> Response:
    """Change quantities or remove a line (303 back to the cart)."""
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    quantities: dict[str, int] = {}
    for key, value in request.form.items():
        if key.startswith("qty-"):
            try:
                quantities[key[4:]] = max(0, int(value))
            except ValueError:
                flash("Quantities are whole numbers; that one was left as it was.", "error")
    remove = request.form.get("remove")
    if remove:
        quantities[remove] = 0
    for message in cart.update(quantities):
        flash(message, "error")
    return redirect(url_for("checkout.cart_page"), code=303)


@bp.post("/cart")
@checkout_limit
def cart_checkout() -> Response | str | tuple[str, int]:
    """Check the cart out: one order for all its lines, 303 to the gateway."""
    form = _cart_form()
    view = cart.view()
    if not view.lines:
        return redirect(url_for("checkout.cart_page"), code=303)
    if form.validate_on_submit():
        try:
            payment = checkout.create_checkout(
                view.items(),
                form.email.data or "",
                form.name.data or "",
                form.gateway.data or "",
                CUSTOMER,
                save_payment_method=bool(form.save_payment_method.data),
            )
        except (NotFound, OutOfStock):
            db.session.expire_all()
            form.form_errors.append(
                "Something in your cart just sold out or changed; check the cart and try again."
            )
        except KassaError as exc:
            form.form_errors.append(exc.message)
        else:
            cart.clear()  # the order holds the items now (and its page offers a retry)
            return redirect(payment.checkout_url or "/", code=303)
    return _cart_page(form), 422


# --- payment links -------------------------------------------------------------------


def _link_page(link: PaymentLink, form: CartCheckoutForm, status: int = 200) -> tuple[str, int]:
    return render_template(
        "checkout/link.html",
        link=link,
        form=form,
        amount=links.link_amount(link),
        problem=links.unavailable(link),
    ), status


@bp.route("/pay/<link_id>", methods=["GET", "POST"])
@checkout_limit
def pay_link(link_id: str) -> Response | tuple[str, int]:
    """A payment link's page: what it is for, and the form to pay it with any gateway."""
    try:
        link = links.get_link(link_id)
    except NotFound:
        abort(404)
    form = _cart_form()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                payment = links.pay_link(
                    link.public_id,
                    form.email.data or "",
                    form.name.data or "",
                    form.gateway.data or "",
                    CUSTOMER,
                )
            except KassaError as exc:
                db.session.expire_all()
                form.form_errors.append(exc.message)
            else:
                return redirect(payment.checkout_url or "/", code=303)
        return _link_page(links.get_link(link_id), form, 422)
    page, status = _link_page(link, form)
    return make_response(page, 410 if links.unavailable(link) else status)


def _action_page(payment: Payment | None, problem: str | None, status: int) -> tuple[str, int]:
    return render_template(
        "checkout/action.html",
        problem=problem,
        payment=payment,
        confirmable=payment is not None and charges.authenticates_here(payment),
        form=FlaskForm(),
    ), status


@bp.get("/pay/action/<token>")
def payment_action(token: str) -> Response | tuple[str, int]:
    """The customer's link to authenticate a charge of their saved method: on to the
    gateway's page when it is known already, a button that goes there when the gateway
    gives it on confirming, else the payment's status."""
    try:
        payment = charges.payment_for_action(token)
    except NotFound:
        abort(404)
    except InvalidState as exc:
        return _action_page(None, exc.message, 410)
    if payment.status == PaymentStatus.REQUIRES_ACTION and payment.checkout_url:
        return redirect(payment.checkout_url, code=303)
    return _action_page(payment, None, 200)


@bp.post("/pay/action/<token>")
def confirm_payment_action(token: str) -> Response | tuple[str, int]:
    """The customer pressed "continue to your bank": the charge is confirmed with them
    present and they are sent to their bank's page (303), or shown how it ended."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        payment = charges.payment_for_action(token)
        url = charges.start_authentication(payment, CUSTOMER)
    except NotFound:
        abort(404)
    except InvalidState as exc:
        return _action_page(None, exc.message, 410)
    except KassaError as exc:
        db.session.rollback()
        payment = charges.payment_for_action(token)
        return _action_page(payment, exc.message, exc.http_status)
    if url:
        return redirect(url, code=303)
    return _action_page(payment, None, 200)


@bp.get("/pay/setup/<customer_id>/done")
def method_setup_done(customer_id: str) -> str:
    """Where the gateway sends the customer after saving a method (or leaving): a hint,
    never proof, so it changes nothing; the gateway's webhook saves the method."""
    return render_template("checkout/setup_done.html", canceled=bool(request.args.get("canceled")))


@bp.get("/account/methods/<token>")
def saved_methods(token: str) -> tuple[str, int]:
    """The customer's own page (from the receipt's signed link): their saved methods."""
    try:
        customer = customers.customer_for_methods_link(token)
    except NotFound:
        abort(404)
    except InvalidState as exc:
        return render_template("checkout/saved_methods.html", problem=exc.message), 410
    return render_template(
        "checkout/saved_methods.html",
        problem=None,
        customer=customer,
        methods=[m for m in customer.methods if m.active],
        token=token,
        form=FlaskForm(),
    ), 200


@bp.post("/account/methods/<token>/<method_id>/remove")
def remove_saved_method(token: str, method_id: str) -> Response | tuple[str, int]:
    """The customer removes a saved method (detached at the gateway)."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        customer = customers.customer_for_methods_link(token)
        customers.detach_method(method_id, CUSTOMER, customer)
    except NotFound:
        abort(404)
    except KassaError as exc:
        return render_template("checkout/saved_methods.html", problem=exc.message), exc.http_status
    return redirect(url_for("checkout.saved_methods", token=token, removed=1), code=303)


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


@bp.get("/orders/<order_id>/receipt")
def receipt(order_id: str) -> str | Response:
    """The printable receipt of a paid order (the order page until it is paid)."""
    try:
        order = orders.get_order(order_id)
    except NotFound:
        abort(404)
    if order.status not in ("paid", "partially_refunded", "refunded"):
        return redirect(url_for("checkout.order_page", order_id=order.public_id))
    return render_template("checkout/receipt.html", receipt=receipt_facts(order), order=order)


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
