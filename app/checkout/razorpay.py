"""Razorpay Standard Checkout: our page that opens checkout.js, and its callback.

The page is the attempt's `checkout_url` (the adapter points create_checkout there).
checkout.js is its only third-party script, allowed by this page's CSP alone; our own
static/js/razorpay-checkout.js reads the options from a data- attribute (no inline
script). With `redirect: true` Razorpay POSTs the result to the callback, which only
asks the core to verify it with Razorpay: the posted fields prove nothing by themselves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from app.checkout import bp
from app.extensions import csrf
from app.gateways import registry
from app.gateways.base import PagedCheckout
from app.models import Payment
from app.models.base import utcnow
from app.models.enums import PAYABLE
from app.payments import checkout, subscriptions
from app.payments.audit import CUSTOMER
from app.payments.errors import KassaError, NotFound, SignatureInvalid
from app.security import csp_allow, origin_of

FAILURE_FIELDS = ("error[code]", "error[metadata][payment_id]")


def _razorpay_payment(payment_id: str) -> tuple[Payment, PagedCheckout]:
    try:
        payment = checkout.get_payment(payment_id)
        gateway = registry.get_gateway("razorpay")
    except KassaError:
        abort(404)
    if payment.gateway != "razorpay" or not isinstance(gateway, PagedCheckout):
        abort(404)
    return payment, gateway


# What the real checkout.js needs besides its own host, from Razorpay's published CSP
# allowlist (razorpay/razorpay-magento etc/csp_whitelist.xml): a bundle and images on
# cdn.razorpay.com, the modal in an iframe on api.razorpay.com, logging to lumberjack;
# in redirect mode it submits a form to api.razorpay.com.
RAZORPAY_HOSTED = {
    "script-src": ["https://cdn.razorpay.com"],
    "img-src": ["https://cdn.razorpay.com"],
    "frame-src": ["https://api.razorpay.com"],
    "connect-src": ["https://lumberjack.razorpay.com", "https://lumberjack-metrics.razorpay.com"],
    "form-action": ["https://api.razorpay.com"],
    # checkout.js builds its overlay with inline styles. Not verified against live
    # Razorpay (no network here); the stand-in in tests runs under style-src 'self'.
    "style-src": ["'unsafe-inline'"],
}


def _allow_checkout_js() -> str:
    """Allow RAZORPAY_CHECKOUT_JS (and what it needs) on this response only."""
    src = str(current_app.config["RAZORPAY_CHECKOUT_JS"])
    script_origin = origin_of(src) or src
    extra: dict[str, list[str]] = {"script-src": [script_origin]}
    if (urlsplit(src).hostname or "").endswith(".razorpay.com"):
        for name, sources in RAZORPAY_HOSTED.items():
            extra.setdefault(name, []).extend(sources)
    else:
        # A local stand-in (tests, development): its modal calls back to its own origin.
        extra["connect-src"] = [script_origin]
    csp_allow(**{name.replace("-", "_"): sources for name, sources in extra.items()})
    return src


@bp.get("/checkout/razorpay/<payment_id>")
def razorpay_pay(payment_id: str) -> str | Response:
    """Razorpay Checkout for one payment attempt: opens the modal, shows a failed try."""
    payment, gateway = _razorpay_payment(payment_id)
    if payment.status not in PAYABLE or not payment.gateway_reference:
        return redirect(url_for("checkout.payment_return", payment_id=payment.public_id), code=303)
    if payment.expires_at is not None and payment.expires_at <= utcnow():
        # Razorpay orders never expire by themselves: past our deadline, never open the
        # modal again; the cancel page offers a fresh attempt.
        return redirect(url_for("checkout.payment_cancel", payment_id=payment.public_id), code=303)
    order = payment.order
    options = gateway.checkout_options(
        reference=payment.gateway_reference,
        amount=payment.amount,
        currency=payment.currency,
        store_name=current_app.config["STORE_NAME"],
        description=", ".join(f"{i.quantity} × {i.name}" for i in order.items)[:255],
        customer_name=order.customer_name,
        customer_email=order.customer_email,
        callback_url=checkout.external_url(
            "checkout.razorpay_callback", payment_id=payment.public_id
        ),
        order_id=order.public_id,
        payment_id=payment.public_id,
        save_payment_method=payment.save_payment_method,
        gateway_customer_id=(
            payment.customer.gateway_customer_id("razorpay")
            if payment.save_payment_method and payment.customer is not None
            else None
        ),
    )
    return render_template(
        "checkout/razorpay.html",
        payment=payment,
        order=order,
        options=options,
        checkout_js=_allow_checkout_js(),
        cancel_url=url_for("checkout.payment_cancel", payment_id=payment.public_id),
        # After a failed try the customer reads Razorpay's reason first, then retries.
        auto_open=not payment.failure_message,
    )


@bp.post("/checkout/razorpay/<payment_id>/callback")
@csrf.exempt
def razorpay_callback(payment_id: str) -> Response:
    """Razorpay posts the outcome here (redirect mode): verify with Razorpay, then redirect."""
    _razorpay_payment(payment_id)
    fields = request.form.to_dict()
    try:
        payment = checkout.confirm_return(payment_id, fields, CUSTOMER)
    except NotFound:
        abort(404)
    except SignatureInvalid:
        # Forged or another order's fields: say so, change nothing; the attempt stays
        # payable (a genuine callback or the webhook may still come).
        return Response(
            render_template(
                "errors/error.html",
                title="We could not verify this payment",
                message="What came back from the payment page does not match this order. "
                "Nothing was charged or changed.",
                status=400,
                back_url=url_for("checkout.razorpay_pay", payment_id=payment_id),
                back_label="Back to the payment page",
            ),
            status=400,
        )
    if any(name in fields for name in FAILURE_FIELDS) and payment.status in PAYABLE:
        # A failed try leaves the Razorpay order payable: back to the page, with the reason.
        return redirect(url_for("checkout.razorpay_pay", payment_id=payment.public_id), code=303)
    return redirect(url_for("checkout.payment_return", payment_id=payment.public_id), code=303)


# --- subscriptions: Razorpay Checkout with a subscription_id -------------------------


@bp.get("/checkout/razorpay/subscriptions/<public_id>")
def razorpay_subscribe(public_id: str) -> str | Response:
    """Razorpay Checkout for one subscription: the customer authorises its mandate."""
    try:
        sub, options = subscriptions.paged_checkout(public_id)
    except NotFound:
        abort(404)
    if options is None:  # authorised already (or ended): the customer's own page
        return redirect(subscriptions.customer_url(sub.public_id), code=303)
    return render_template(
        "checkout/razorpay_subscription.html",
        sub=sub,
        options=options,
        checkout_js=_allow_checkout_js(),
        cancel_url=url_for("checkout.plan_page", public_id=sub.plan.public_id),
    )


@bp.post("/checkout/razorpay/subscriptions/<public_id>/callback")
@csrf.exempt
def razorpay_subscription_callback(public_id: str) -> Response:
    """Razorpay posts the authorisation here: verify its signature, re-fetch, redirect."""
    fields = request.form.to_dict()
    if any(name in fields for name in FAILURE_FIELDS) and "razorpay_signature" not in fields:
        # A failed try (unsigned fields: their words are not shown): back to the page.
        flash(_("The authorisation did not go through; nothing was charged. Please try again."))
        return redirect(url_for("checkout.razorpay_subscribe", public_id=public_id), code=303)
    try:
        sub = subscriptions.confirm_return(public_id, fields, CUSTOMER)
    except NotFound:
        abort(404)
    except SignatureInvalid:
        return Response(
            render_template(
                "errors/error.html",
                title=_("We could not verify this subscription"),
                message=_(
                    "What came back from the payment page does not match this subscription. "
                    "Nothing was charged or changed."
                ),
                status=400,
                back_url=url_for("checkout.razorpay_subscribe", public_id=public_id),
                back_label=_("Back to the payment page"),
            ),
            status=400,
        )
    except KassaError as exc:  # Razorpay not answering: the webhook will still come
        flash(exc.message, "error")
    else:
        public_id = sub.public_id
    return redirect(subscriptions.customer_url(public_id), code=303)
