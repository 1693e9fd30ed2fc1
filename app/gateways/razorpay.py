"""Razorpay adapter: orders, Standard Checkout verification, capture, refunds, webhooks.

The only module that imports the `razorpay` SDK. Everything Razorpay-specific (amount
form, status words, event shapes, signatures, error shapes) is translated here into the
plain value types of app.gateways.base.

Decisions worth knowing (details at each function):

* One Razorpay order per payment attempt, also when `create_checkout` is retried after a
  timeout. The Orders API has no idempotency key, so the order's `receipt` is our payment
  id and, before creating, we list orders filtered by that receipt (GET /v1/orders?receipt=)
  and reuse the one we made. The core runs one create per attempt at a time (row lock on
  the payment), so the only window left is "our create reached Razorpay, the answer was
  lost, and the list does not show it yet"; Razorpay's list is read-your-writes in
  practice, and the worst outcome is a second, never-paid order with the same receipt,
  which `retrieve` and the webhooks would still resolve to the same attempt.
* A browser callback is a hint. `confirm_return` verifies the signature against the order
  id stored in OUR database (never the one the browser sent), re-fetches the payment and
  the order from Razorpay and checks order, receipt, amount, currency and status. Anything
  that does not verify returns None ("nothing proven, wait for the webhook"): a forged
  callback must change nothing, and raising a payment_failed error would let anyone who
  can post to our callback fail somebody else's attempt.
* A failed Razorpay payment does not close its order: the customer may retry in the same
  checkout. So `payment.failed` (and a retrieve that only finds failed payments) maps to
  PROCESSING with the failure code and message; the core expires the attempt when its
  time is up. This also keeps the final state independent of webhook order (a late
  `payment.failed` for an earlier try can never undo a capture).
* Saved methods (issue 18) follow Razorpay's card recurring flow: with the customer's
  consent the attempt's order is an authorisation order (a Razorpay customer, made or
  found with fail_existing=0, `method: card` and a `token` with max_amount, expire_at and
  `frequency: as_presented`), and Checkout opens with `customer_id` and `recurring: 1`.
  Once paid, the payment names its `token_id`; the token (read from
  /customers/{id}/tokens/{token_id}) gives what is safe to show. Kassa keeps the token's
  address, "cust_…/token_…" (deleting a token needs both ids), never card data. A later
  charge is a new order (receipt = our payment id, `payment_capture: true`) and
  POST /payments/create/recurring. Neither call takes an idempotency key: a retry finds
  the order by its receipt, and a payment already on that order is the charge's answer
  (never a second one). A failed recurring payment is final for its attempt (notes say
  `off_session`), unlike a checkout's failed try.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import razorpay
import requests
from razorpay import errors as rzp_errors

from app.gateways.base import (
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    DisputeUpdate,
    GatewayError,
    InvoiceSnapshot,
    PaymentRef,
    PaymentUpdate,
    PlanSpec,
    RefundRequest,
    RefundResult,
    RefundUpdate,
    ReturnParams,
    ReturnRejected,
    SavedMethod,
    SignatureError,
    SubscriptionCheckout,
    SubscriptionEvent,
    SubscriptionRef,
    SubscriptionRequest,
    SubscriptionSnapshot,
    Update,
    VerifiedEvent,
)
from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus, SubscriptionStatus
from app.money import MoneyError, exponent, normalize_currency

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.razorpay.com"
# Razorpay auto-refunds an authorized payment that is not captured within 3 days of its
# creation (capture settings docs); the deadline is shown to the merchant.
CAPTURE_WINDOW = timedelta(days=3)
RECEIPT_MAX_LENGTH = 40
# A saved card's mandate: the most one later charge may take (Razorpay's default for card
# recurring without extra authentication is INR 15,000, in paise) and how long it lasts.
DEFAULT_TOKEN_MAX_AMOUNT = 1_500_000
TOKEN_LIFETIME = timedelta(days=10 * 365)
# The notes that mark a payment: saved at checkout, or a merchant-initiated charge.
SAVE_NOTE = "save_payment_method"
OFF_SESSION_NOTE = "off_session"
# X-Refund-Idempotency: "at least 10 characters, alphabets, numbers, hyphens, underscores".
_REFUND_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{10,}$")
# A customer's name as Razorpay accepts it: 3-50 characters, letters and digits with
# period, apostrophe, forward slash, at and parentheses (its Customers API), and spaces.
_CUSTOMER_NAME_RE = re.compile(r"^[A-Za-z0-9.'/@() ]{3,50}$")
CUSTOMER_EMAIL_MAX_LENGTH = 64
# What a Razorpay payment id looks like; browser-sent ids go into URL paths only if they match.
_PAYMENT_ID_RE = re.compile(r"^pay_[A-Za-z0-9]{6,40}$")
# Three-decimal currencies Razorpay accepts; the last digit must be 0 (its docs).
RAZORPAY_THREE_DECIMAL = frozenset({"KWD", "BHD", "OMR"})

_PAYMENT_STATUS = {
    "captured": PaymentStatus.SUCCEEDED,
    # "refunded" is a captured payment whose money went back; refunds travel as
    # RefundUpdates, the payment itself was paid.
    "refunded": PaymentStatus.SUCCEEDED,
    "authorized": PaymentStatus.AUTHORIZED,
    "created": PaymentStatus.PROCESSING,
    "pending": PaymentStatus.PROCESSING,
    # See the module docstring: a failed payment leaves the order payable.
    "failed": PaymentStatus.PROCESSING,
}
_REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "created": RefundStatus.PENDING,
    "processed": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
}
_REFUND_EVENTS = {
    "refund.created": RefundStatus.PENDING,
    "refund.processed": RefundStatus.SUCCEEDED,
    "refund.failed": RefundStatus.FAILED,
}
_DISPUTE_EVENTS = {
    "payment.dispute.created": DisputeStatus.OPEN,
    "payment.dispute.under_review": DisputeStatus.OPEN,
    "payment.dispute.action_required": DisputeStatus.OPEN,
    "payment.dispute.won": DisputeStatus.WON,
    "payment.dispute.lost": DisputeStatus.LOST,
    "payment.dispute.closed": DisputeStatus.CLOSED,
}
# Each names its subscription, which is re-fetched (subscription_events): never read.
SUBSCRIPTION_EVENTS = frozenset(
    {
        "subscription.authenticated",
        "subscription.activated",
        "subscription.charged",
        "subscription.pending",
        "subscription.halted",
        "subscription.cancelled",
        "subscription.completed",
        "subscription.paused",
        "subscription.resumed",
        "subscription.updated",
    }
)
HANDLED_EVENTS = frozenset(
    {"payment.authorized", "payment.captured", "payment.failed", "order.paid"}
    | set(_REFUND_EVENTS)
    | set(_DISPUTE_EVENTS)
    | SUBSCRIPTION_EVENTS
)
# Razorpay's subscription statuses in the port's words. `authenticated` is a mandate
# waiting for its first charge: a trial when the start is later (subscription_snapshot).
_SUBSCRIPTION_STATUS = {
    "created": SubscriptionStatus.INCOMPLETE,
    "authenticated": SubscriptionStatus.INCOMPLETE,
    "active": SubscriptionStatus.ACTIVE,
    "pending": SubscriptionStatus.PAST_DUE,  # a charge failed; Razorpay retries
    "halted": SubscriptionStatus.UNPAID,  # retries used up
    "paused": SubscriptionStatus.PAUSED,
    "cancelled": SubscriptionStatus.CANCELED,
    "completed": SubscriptionStatus.CANCELED,  # its total_count ran out
    "expired": SubscriptionStatus.INCOMPLETE_EXPIRED,  # never authorised
}
_RUNNING = frozenset({"active", "pending", "halted", "paused", "authenticated"})
RAZORPAY_PERIODS = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}
# Razorpay: "for daily plans, the minimum value [of interval] is 7".
MIN_DAILY_INTERVAL = 7
# Razorpay subscriptions need a number of cycles; Kassa's plans renew until cancelled,
# so a subscription is made for ten years of cycles.
_CYCLES_IN_TEN_YEARS = {"day": 3650, "week": 520, "month": 120, "year": 10}
CANNOT_UNDO_CANCEL = (
    "Razorpay cannot undo a cancellation: a Razorpay subscription set to cancel (now or at "
    "the end of its cycle) can never be renewed or reactivated. Only a paused Razorpay "
    "subscription can be resumed; the customer can subscribe again."
)
# Keys whose values are never stored, wherever they appear in a payload.
_SECRET_KEYS = frozenset(
    {"number", "card_number", "cvv", "cvc", "token", "token_id", "razorpay_signature", "signature"}
)


def key_mode(key_id: str) -> str:
    """ "live", "test", or "unknown" from the key id's prefix (rzp_live_ / rzp_test_)."""
    if key_id.startswith("rzp_live_"):
        return "live"
    if key_id.startswith("rzp_test_"):
        return "test"
    return "unknown"


def check_key_safety(key_id: str, debug: bool) -> None:
    """Refuse live keys in debug mode (the debugger would expose real money)."""
    if key_mode(key_id) == "live" and debug:
        raise RuntimeError("Refusing to start: a live Razorpay key is configured in debug mode")


# ---------------------------------------------------------------- amounts


def _currency(code: str) -> str:
    try:
        return normalize_currency(code)
    except MoneyError as exc:
        raise GatewayError("invalid_request", str(exc)) from exc


def to_razorpay_amount(amount_minor: int, currency: str) -> int:
    """Our minor units -> Razorpay's "currency subunits" (ISO exponents for both).

    Razorpay uses the ISO exponent (JPY 0, INR 2, KWD 3), so the number is unchanged;
    what we check is what Razorpay would reject: an unsupported 3-decimal currency or a
    3-decimal amount whose last digit is not 0.
    """
    cur = _currency(currency)
    places = exponent(cur)
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise GatewayError(
            "invalid_request", "amount must be a positive whole number of minor units"
        )
    if places == 3:
        if cur not in RAZORPAY_THREE_DECIMAL:
            raise GatewayError("invalid_request", f"Razorpay does not accept {cur}")
        if amount_minor % 10:
            raise GatewayError(
                "invalid_request", f"Razorpay needs {cur} amounts whose third decimal is 0"
            )
    return amount_minor


def from_razorpay_amount(amount: Any, currency: str) -> int:
    """Razorpay subunits -> our minor units (same exponent; only type-checked)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise GatewayError("gateway_unavailable", f"Razorpay sent a non-integer amount {amount!r}")
    exponent(currency)  # raises for a currency we do not know
    return amount


# ---------------------------------------------------------------- helpers


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def _notes(entity: Mapping[str, Any] | None) -> dict[str, Any]:
    # Razorpay sends empty notes as [] rather than {}.
    notes = (entity or {}).get("notes")
    return dict(notes) if isinstance(notes, Mapping) else {}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if key.lower() == lname:
                return val
    return value


def _clean(value: Any) -> str | None:
    """Razorpay fills unknown error fields with "NA"."""
    if value in (None, "", "NA"):
        return None
    return str(value)


def payment_method_details(payment: Mapping[str, Any]) -> dict[str, Any]:
    """The method details safe to keep: method, card network and last4, vpa, wallet, bank."""
    details: dict[str, Any] = {}
    method = payment.get("method")
    if method:
        details["method"] = method
    card = payment.get("card")
    if isinstance(card, Mapping):
        for src, dst in (
            ("network", "brand"),
            ("last4", "last4"),
            ("type", "funding"),
            ("issuer", "issuer"),
        ):
            if card.get(src):
                details[dst] = card[src]
    vpa = payment.get("vpa") or (payment.get("upi") or {}).get("vpa")
    if vpa:
        details["vpa"] = vpa
    for key in ("wallet", "bank"):
        if payment.get(key):
            details[key] = payment[key]
    return details


def failure_code(entity: Mapping[str, Any]) -> str | None:
    """Razorpay's specific reason (insufficient_funds, ...) over its generic code."""
    return _clean(entity.get("error_reason")) or _clean(entity.get("error_code"))


def failure_message(entity: Mapping[str, Any]) -> str | None:
    """Razorpay's description, written for the customer."""
    return _clean(entity.get("error_description"))


def redact(payload: Any) -> Any:
    """Drop card numbers, tokens and signatures anywhere in a payload; keep last4."""
    if isinstance(payload, Mapping):
        out: dict[str, Any] = {}
        for key, value in payload.items():
            if str(key).lower() in _SECRET_KEYS:
                continue
            out[key] = redact(value)
        return out
    if isinstance(payload, list):
        return [redact(v) for v in payload]
    if isinstance(payload, str):
        return _PAN_RE.sub(lambda m: "[redacted]" if _luhn(m.group()) else m.group(), payload)
    return payload


# 13-19 digits, optionally grouped by spaces or dashes, as card numbers are written.
_PAN_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def sign(secret: str, message: str | bytes) -> str:
    """Hex HMAC-SHA256, Razorpay's signature for callbacks and webhooks."""
    body = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _equal(expected: str, given: str | None) -> bool:
    if not given:
        return False
    # Bytes so a non-ASCII forgery is a mismatch, not a TypeError.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


# ---------------------------------------------------------------- the adapter


class RazorpayGateway:
    """Razorpay Standard Checkout behind the Gateway protocol.

    Credentials are constructor arguments (nothing global); `api_base` points the SDK at
    a local fake or emulator. Every call has a timeout and the SDK's own retry loop stays
    off: retries are the core's decision, made safe by receipt lookup (orders),
    X-Refund-Idempotency (refunds) and re-fetching (capture).
    """

    name = "razorpay"
    display_name = "Razorpay"

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        webhook_secret: str,
        *,
        public_base_url: str,
        api_base: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        session: requests.Session | None = None,
        token_max_amount: int = DEFAULT_TOKEN_MAX_AMOUNT,
    ) -> None:
        if not (key_id and key_secret and webhook_secret):
            raise ValueError("Razorpay needs a key id, a key secret and a webhook secret")
        self.key_id = key_id
        self.mode = key_mode(key_id)
        self._key_secret = key_secret
        self._webhook_secret = webhook_secret
        self.public_base_url = public_base_url.rstrip("/")
        self._timeout = (connect_timeout, timeout)
        self.token_max_amount = token_max_amount
        self._client = razorpay.Client(
            session=session or requests.Session(),
            auth=(key_id, key_secret),
            base_url=(api_base or DEFAULT_API_BASE).rstrip("/"),
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RazorpayGateway | None:
        """The app's Razorpay gateway, or None unless all three secrets are set."""
        key_id = config.get("RAZORPAY_KEY_ID")
        key_secret = config.get("RAZORPAY_KEY_SECRET")
        webhook_secret = config.get("RAZORPAY_WEBHOOK_SECRET")
        if not (key_id and key_secret and webhook_secret):
            return None
        return cls(
            key_id,
            key_secret,
            webhook_secret,
            public_base_url=config.get("PUBLIC_BASE_URL") or "",
            api_base=config.get("RAZORPAY_API_BASE"),
            timeout=float(config.get("RAZORPAY_TIMEOUT_SECONDS") or 10.0),
            token_max_amount=int(
                config.get("RAZORPAY_TOKEN_MAX_AMOUNT") or DEFAULT_TOKEN_MAX_AMOUNT
            ),
        )

    # ------------------------------------------------------------ transport

    def _call(
        self, fn: Callable[..., Any], *args: Any, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Run one SDK call with a timeout and turn every failure into a GatewayError.

        The SDK's exceptions keep only the description, so a per-request `response` hook
        (a plain requests option the SDK passes through) keeps the response for the
        status code and the full Razorpay error object.
        """
        responses: list[requests.Response] = []

        def keep(response: requests.Response, *_: Any, **__: Any) -> requests.Response:
            responses.append(response)
            return response

        options: dict[str, Any] = {"timeout": self._timeout, "hooks": {"response": [keep]}}
        if headers:
            options["headers"] = dict(headers)
        try:
            result = fn(*args, **options)
        except (rzp_errors.BadRequestError, rzp_errors.GatewayError, rzp_errors.ServerError) as exc:
            raise _error_from_response(responses[-1] if responses else None, str(exc)) from exc
        except requests.Timeout as exc:
            raise GatewayError(
                "gateway_unavailable", "Razorpay did not answer in time", retryable=True
            ) from exc
        except requests.ConnectionError as exc:
            raise GatewayError(
                "gateway_unavailable", "Could not reach Razorpay", retryable=True
            ) from exc
        except requests.RequestException as exc:
            # Includes a body that is not JSON (a proxy's HTML 502, say).
            raise _error_from_response(
                responses[-1] if responses else None, "Razorpay sent an unreadable answer"
            ) from exc
        if not isinstance(result, dict):
            raise GatewayError(
                "gateway_unavailable", "Razorpay sent an unexpected answer", retryable=True
            )
        return result

    # ------------------------------------------------------------ checkout

    def checkout_url(self, payment_id: str) -> str:
        """Our own page that opens Razorpay Checkout for this attempt."""
        return f"{self.public_base_url}/checkout/razorpay/{payment_id}"

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Create (or find again) the Razorpay order for this attempt."""
        currency = _currency(request.currency)
        amount = to_razorpay_amount(request.amount, currency)
        receipt = request.payment_id
        if len(receipt) > RECEIPT_MAX_LENGTH:
            raise GatewayError("invalid_request", "payment id is too long for a Razorpay receipt")
        customer_id = None
        if request.save_payment_method:
            # fail_existing=0: the same details find the same customer, so a retry (or a
            # customer Kassa has not stored the id of) never makes a second one.
            customer_id = request.gateway_customer_id or self._customer_id(
                request.customer_email, request.customer_name
            )
        order = self._find_order(receipt, amount, currency)
        if order is None:
            notes = {"order_id": request.order_id, "payment_id": request.payment_id}
            body: dict[str, Any] = {
                "amount": amount,
                "currency": currency,
                "receipt": receipt,
                "notes": notes,
                # Explicit per order: it overrides the dashboard's capture setting, so a
                # dashboard set to manual cannot leave our payments to be auto-refunded.
                "payment": {
                    "capture": "manual" if request.capture_method == "manual" else "automatic",
                },
            }
            if customer_id:
                # Razorpay's card recurring authorisation order: the token it makes when
                # this order is paid can be charged later, up to max_amount each time.
                notes[SAVE_NOTE] = "true"
                body.update(
                    customer_id=customer_id,
                    method="card",
                    token={
                        "max_amount": self.token_max_amount,
                        "expire_at": int((datetime.now(UTC) + TOKEN_LIFETIME).timestamp()),
                        "frequency": "as_presented",
                    },
                )
            order = self._call(self._client.order.create, body)
        return CheckoutSession(
            reference=str(order["id"]),
            redirect_url=self.checkout_url(request.payment_id),
            expires_at=request.expires_at,
            gateway_customer_id=customer_id,
        )

    def _customer_id(self, email: str, name: str) -> str:
        """POST /customers with fail_existing=0: the customer with these details, made or
        found (Razorpay answers the existing one instead of an error)."""
        if len(email) > CUSTOMER_EMAIL_MAX_LENGTH:
            raise GatewayError(
                "invalid_request",
                f"Razorpay keeps customers' emails of up to {CUSTOMER_EMAIL_MAX_LENGTH} "
                "characters; this one cannot have a saved method",
            )
        body: dict[str, Any] = {"email": email, "fail_existing": "0"}
        name = " ".join(name.split())
        if _CUSTOMER_NAME_RE.match(name):
            # Otherwise left out (the email identifies the customer): Razorpay refuses
            # names outside its rule, and the same rule each time keeps the details equal.
            body["name"] = name
        customer = self._call(self._client.customer.create, body)
        return str(customer["id"])

    def _find_order(self, receipt: str, amount: int, currency: str) -> dict[str, Any] | None:
        """The order we already made for this receipt, if an earlier try got through."""
        listing = self._call(self._client.order.all, {"receipt": receipt, "count": 100})
        # The filter is documented as "contains": compare exactly here.
        mine: list[dict[str, Any]] = [
            o for o in listing.get("items", []) if o.get("receipt") == receipt
        ]
        if not mine:
            return None
        for order in mine:
            if order.get("amount") != amount or order.get("currency") != currency:
                raise GatewayError(
                    "idempotency_conflict",
                    f"Razorpay order {order.get('id')} has receipt {receipt} but "
                    f"{order.get('amount')} {order.get('currency')}, not {amount} {currency}",
                )
        # Prefer one a customer already used; otherwise the oldest.
        mine.sort(key=lambda o: (o.get("status") == "created", o.get("created_at") or 0))
        return mine[0]

    def checkout_options(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        store_name: str,
        description: str,
        customer_name: str,
        customer_email: str,
        callback_url: str,
        order_id: str,
        payment_id: str,
        save_payment_method: bool = False,
        gateway_customer_id: str | None = None,
    ) -> dict[str, Any]:
        """The options for `new Razorpay(options)` on our checkout page (no secrets).

        Saving the method (the customer agreed, and the order is an authorisation order
        on this Razorpay customer): Checkout also gets `customer_id` and `recurring: "1"`.
        """
        options: dict[str, Any] = {
            "key": self.key_id,
            "amount": to_razorpay_amount(amount, currency),
            "currency": _currency(currency),
            "order_id": reference,
            "name": store_name,
            "description": description,
            "prefill": {"name": customer_name, "email": customer_email},
            "notes": {"order_id": order_id, "payment_id": payment_id},
            "callback_url": callback_url,
            # Full-page POST to callback_url: works where pop-ups/iframes are blocked.
            "redirect": True,
        }
        if save_payment_method and gateway_customer_id:
            options["customer_id"] = gateway_customer_id
            options["recurring"] = "1"
            options["notes"][SAVE_NOTE] = "true"
        return options

    def cancel_checkout(self, ref: PaymentRef) -> None:
        """Razorpay orders cannot be closed; nothing to call.

        Our checkout page refuses to open a canceled/expired attempt, and a payment that
        still lands (a modal left open) arrives by webhook, where the core treats money
        on a closed attempt as it does for any gateway.
        """
        return

    # ------------------------------------------------------------ verification

    def verify_payment_signature(
        self, order_id: str, razorpay_payment_id: str, signature: str | None
    ) -> bool:
        """HMAC-SHA256(key_secret, "order_id|payment_id") in constant time.

        `order_id` must be the one stored in our database for this attempt.
        """
        if not order_id or not razorpay_payment_id:
            return False
        return _equal(sign(self._key_secret, f"{order_id}|{razorpay_payment_id}"), signature)

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        """Verify a checkout callback (success or failure fields) with Razorpay itself.

        Returns a PaymentUpdate built only from what Razorpay answers, or None when
        nothing could be proven yet (payment not settled, amounts that do not match).
        Raises ReturnRejected when the fields are proven false: a signature that does not
        verify with our key secret over our stored order id, or a payment that Razorpay
        says belongs to another order. The browser's razorpay_order_id is ignored:
        ref.reference is our stored order id.
        """
        order_id = ref.reference
        args = params.args
        if not order_id:
            return None
        payment_id = args.get("razorpay_payment_id")
        if payment_id or args.get("razorpay_signature"):
            if not self.verify_payment_signature(
                order_id, payment_id or "", args.get("razorpay_signature")
            ):
                log.warning("razorpay callback signature mismatch for order %s", order_id)
                raise ReturnRejected("The payment signature does not verify.")
            update = self._verified_update(ref, payment_id or "")
            if update is None or update.status not in (
                PaymentStatus.SUCCEEDED,
                PaymentStatus.AUTHORIZED,
            ):
                return None
            return update
        failed_id = args.get("error[metadata][payment_id]")
        if failed_id:
            # The failure fields are unsigned: believe only what the payment says.
            return self._verified_update(ref, failed_id)
        return None

    def _verified_update(self, ref: PaymentRef, razorpay_payment_id: str) -> PaymentUpdate | None:
        order_id = ref.reference or ""
        if not _PAYMENT_ID_RE.match(razorpay_payment_id):
            # The failure fields are unsigned: never let them steer a request path.
            log.warning("razorpay callback with a malformed payment id for order %s", order_id)
            raise ReturnRejected("The payment id is not a Razorpay payment id.")
        payment = self._call(self._client.payment.fetch, razorpay_payment_id, {"expand[]": "card"})
        if payment.get("order_id") != order_id:
            log.warning(
                "razorpay payment %s belongs to %s, not our order %s",
                razorpay_payment_id,
                payment.get("order_id"),
                order_id,
            )
            raise ReturnRejected("The payment belongs to another order.")
        order = self._call(self._client.order.fetch, order_id)
        problems = []
        if ref.payment_id and order.get("receipt") != ref.payment_id:
            problems.append(f"receipt {order.get('receipt')!r} is not {ref.payment_id!r}")
        if payment.get("amount") != order.get("amount"):
            problems.append(f"amount {payment.get('amount')} is not {order.get('amount')}")
        if payment.get("currency") != order.get("currency"):
            problems.append(f"currency {payment.get('currency')} is not {order.get('currency')}")
        if problems:
            log.warning(
                "razorpay payment %s does not match order %s: %s",
                razorpay_payment_id,
                order_id,
                "; ".join(problems),
            )
            return None
        return self._with_saved_method(self._payment_update(payment, ref), payment, strict=False)

    def _payment_update(
        self,
        payment: Mapping[str, Any],
        ref: PaymentRef | None = None,
        status: PaymentStatus | None = None,
    ) -> PaymentUpdate:
        currency = str(payment.get("currency", "")).upper()
        raw_status = str(payment.get("status", ""))
        mapped = status or _PAYMENT_STATUS.get(raw_status, PaymentStatus.PROCESSING)
        notes = _notes(payment)
        ref = PaymentRef(
            payment_id=(ref.payment_id if ref and ref.payment_id else notes.get("payment_id")),
            reference=(ref.reference if ref and ref.reference else payment.get("order_id")),
            gateway_payment_id=payment.get("id"),
        )
        deadline = None
        if mapped is PaymentStatus.AUTHORIZED:
            # "within 3 days of creation": created_at is the conservative start.
            created = _ts(payment.get("created_at"))
            deadline = created + CAPTURE_WINDOW if created else None
        failed = raw_status == "failed"
        if failed and notes.get(OFF_SESSION_NOTE) == "true":
            # A merchant-initiated charge has no checkout to retry in: its failure is final.
            mapped = PaymentStatus.FAILED
        return PaymentUpdate(
            ref=ref,
            status=mapped,
            amount=from_razorpay_amount(payment.get("amount"), currency) if currency else None,
            currency=currency or None,
            gateway_payment_id=payment.get("id"),
            failure_code=failure_code(payment) if failed else None,
            failure_message=failure_message(payment) if failed else None,
            payment_method=payment_method_details(payment) or None,
            capture_deadline=deadline,
        )

    # ------------------------------------------------------------ saved methods

    def _with_saved_method(
        self, update: PaymentUpdate, payment: Mapping[str, Any], *, strict: bool
    ) -> PaymentUpdate:
        """A paid payment whose notes carry the customer's consent: add the token it saved.

        `strict` (the event job) lets a failed read raise, so the job retries it; a return
        page or sync carries on without it (the webhook saves it).
        """
        if _notes(payment).get(SAVE_NOTE) != "true" or update.status not in (
            PaymentStatus.SUCCEEDED,
            PaymentStatus.AUTHORIZED,
        ):
            return update
        try:
            saved = self._saved_method(payment)
        except GatewayError:
            if strict:
                raise
            log.warning("razorpay token of payment %s not read yet", payment.get("id"))
            return update
        if saved is None:
            return update
        return replace(update, saved_method=saved)

    def _saved_method(self, payment: Mapping[str, Any]) -> SavedMethod | None:
        """The token a paid authorisation payment made, and what is safe to show of it.

        The payment names its token_id and customer_id (a stored webhook has its token id
        redacted, so the payment is read again); the token itself has the card network,
        last four and expiry, or the wallet. A token Razorpay rejected or no longer has
        is not saved.
        """
        token_id, customer_id = payment.get("token_id"), payment.get("customer_id")
        if not (token_id and customer_id) and payment.get("id"):
            fetched = self._call(self._client.payment.fetch, str(payment["id"]))
            token_id, customer_id = fetched.get("token_id"), fetched.get("customer_id")
        if not (token_id and customer_id):
            return None
        try:
            token = self._call(self._client.token.fetch, str(customer_id), str(token_id))
        except GatewayError as exc:
            if exc.code == "not_found":
                return None
            raise
        if (token.get("recurring_details") or {}).get("status") == "rejected":
            return None
        card = token.get("card") if isinstance(token.get("card"), Mapping) else {}
        exp_month, exp_year = (
            _int_or_none(card.get("expiry_month")),
            _int_or_none(card.get("expiry_year")),
        )
        if exp_month is not None and not 1 <= exp_month <= 12:
            exp_month = None
        expired_at = _ts(token.get("expired_at"))
        if expired_at is not None:
            through = _valid_through(expired_at)
            if exp_month is None or exp_year is None or through < (exp_year, exp_month):
                exp_year, exp_month = through
        return SavedMethod(
            token=f"{customer_id}/{token_id}",
            brand=_clean(card.get("network")),
            last4=_clean(card.get("last4")),
            exp_month=exp_month,
            exp_year=exp_year,
            wallet=_clean(token.get("wallet")),
            gateway_customer_id=str(customer_id),
        )

    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        """Charge a saved token: a new order, then POST /payments/create/recurring.

        Idempotent without an idempotency key: the order's receipt is our payment id, so
        a retry finds the order it made; a payment already on that order (the answer was
        lost) is reported instead of creating another, a failed one as its decline. As
        with checkout orders, the one window left is a payment Razorpay made but does
        not list yet; the core runs one call per attempt at a time (the attempt is
        committed first, its key unique).
        """
        customer_id, token_id = _token_address(request.token, request.gateway_customer_id)
        currency = _currency(request.currency)
        amount = to_razorpay_amount(request.amount, currency)
        receipt = request.payment_id
        if len(receipt) > RECEIPT_MAX_LENGTH:
            raise GatewayError("invalid_request", "payment id is too long for a Razorpay receipt")
        notes = {
            "order_id": request.order_id,
            "payment_id": request.payment_id,
            OFF_SESSION_NOTE: "true",
        }
        ref = PaymentRef(payment_id=request.payment_id)
        order = self._find_order(receipt, amount, currency)
        if order is None:
            order = self._call(
                self._client.order.create,
                {
                    "amount": amount,
                    "currency": currency,
                    "receipt": receipt,
                    "payment_capture": True,
                    "notes": notes,
                },
            )
        else:
            earlier = self._call(self._client.order.payments, str(order["id"]))
            payments = sorted(earlier.get("items", []), key=lambda p: p.get("created_at") or 0)
            if payments:
                done = [p for p in payments if p.get("status") != "failed"]
                if not done:
                    raise _decline(payments[-1])
                ref = replace(ref, reference=str(order["id"]))
                return ChargeResult(
                    update=self._payment_update(done[-1], ref), reference=str(order["id"])
                )
        order_id = str(order["id"])
        ref = replace(ref, reference=order_id)
        body: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "order_id": order_id,
            "customer_id": customer_id,
            "token": token_id,
            "recurring": True,
            "notes": notes,
        }
        if request.customer_email:
            body["email"] = request.customer_email
        if request.description:
            body["description"] = request.description[:255]
        created = self._call(self._client.payment.createRecurring, body)
        rzp_payment_id = created.get("razorpay_payment_id")
        if not isinstance(rzp_payment_id, str) or not _PAYMENT_ID_RE.match(rzp_payment_id):
            raise GatewayError(
                "gateway_unavailable", "Razorpay did not name the recurring payment", retryable=True
            )
        payment = self._call(self._client.payment.fetch, rzp_payment_id, {"expand[]": "card"})
        if payment.get("status") == "failed":
            raise _decline(payment)
        return ChargeResult(update=self._payment_update(payment, ref), reference=order_id)

    def detach_method(self, token: str) -> None:
        """DELETE /customers/{id}/tokens/{token_id}; a token Razorpay no longer has is gone."""
        customer_id, token_id = _token_address(token, None)
        try:
            self._call(self._client.token.delete, customer_id, token_id)
        except GatewayError as exc:
            if exc.code != "not_found":
                raise

    # ------------------------------------------------------------ sync

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        """The attempt's state from its order's payments (any captured wins)."""
        if not ref.reference:
            if not ref.gateway_payment_id:
                raise GatewayError("invalid_request", "nothing to look the payment up by")
            payment = self._call(
                self._client.payment.fetch, ref.gateway_payment_id, {"expand[]": "card"}
            )
            return self._with_saved_method(
                self._payment_update(payment, ref), payment, strict=False
            )
        listing = self._call(self._client.order.payments, ref.reference)
        payments = sorted(listing.get("items", []), key=lambda p: p.get("created_at") or 0)
        for wanted in (("captured", "refunded"), ("authorized",)):
            found = [p for p in payments if p.get("status") in wanted]
            if found:
                return self._with_saved_method(
                    self._payment_update(found[-1], ref), found[-1], strict=False
                )
        if not payments:
            return PaymentUpdate(ref=ref, status=PaymentStatus.PROCESSING)
        in_flight = [p for p in payments if p.get("status") != "failed"]
        # Only failures so far: the order is still payable, so report the latest error
        # on a PROCESSING update (see the module docstring).
        return self._payment_update((in_flight or payments)[-1], ref)

    # ------------------------------------------------------------ capture and refund

    def _payment_in_order(self, order_id: str | None, statuses: tuple[str, ...]) -> str:
        if not order_id:
            raise GatewayError("invalid_request", "no Razorpay order for this payment")
        listing = self._call(self._client.order.payments, order_id)
        found = [p for p in listing.get("items", []) if p.get("status") in statuses]
        if not found:
            raise GatewayError(
                "invalid_request", f"order {order_id} has no {'/'.join(statuses)} payment"
            )
        return str(found[-1]["id"])

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        """Capture an authorized payment; a repeat after success reports the capture."""
        currency = _currency(request.currency)
        amount = to_razorpay_amount(request.amount, currency)
        payment_id = request.gateway_payment_id or self._payment_in_order(
            request.reference, ("authorized", "captured")
        )
        ref = PaymentRef(
            payment_id=request.payment_id,
            reference=request.reference,
            gateway_payment_id=payment_id,
        )
        try:
            payment = self._call(
                self._client.payment.capture, payment_id, amount, {"currency": currency}
            )
        except GatewayError as exc:
            if exc.code != "invalid_request":
                raise
            # Capture has no idempotency key: a retry after a lost answer gets "already
            # captured". The payment itself says whether our capture went through.
            payment = self._call(self._client.payment.fetch, payment_id, {"expand[]": "card"})
            if payment.get("status") != "captured" or payment.get("amount") != amount:
                raise
        return self._payment_update(payment, ref)

    def refund_idempotency_key(self, request: RefundRequest) -> str:
        """Our refund id, or a digest of it when it breaks Razorpay's key rules."""
        key = request.refund_id
        if _REFUND_KEY_RE.match(key):
            return key
        return "rfd-" + hashlib.sha256(key.encode()).hexdigest()[:32]

    def refund(self, request: RefundRequest) -> RefundResult:
        """POST /payments/{id}/refund with X-Refund-Idempotency = our refund id.

        The body is built only from the request, so a retry sends the same bytes
        (Razorpay rejects a different body under the same key).
        """
        currency = _currency(request.currency)
        amount = to_razorpay_amount(request.amount, currency)
        payment_id = request.gateway_payment_id or self._payment_in_order(
            request.reference, ("captured", "refunded")
        )
        notes = {"refund_id": request.refund_id, "payment_id": request.payment_id}
        if request.reason:
            notes["reason"] = request.reason[:256]
        body = {
            "amount": amount,
            "speed": "normal",
            "notes": notes,
            "receipt": request.refund_id[:RECEIPT_MAX_LENGTH],
        }
        refund = self._call(
            self._client.payment.refund,
            payment_id,
            body,
            headers={"X-Refund-Idempotency": self.refund_idempotency_key(request)},
        )
        return RefundResult(
            gateway_refund_id=str(refund["id"]),
            status=_REFUND_STATUS.get(str(refund.get("status")), RefundStatus.PENDING),
        )

    def retrieve_refund(self, ref: PaymentRef, gateway_refund_id: str) -> RefundUpdate:
        """GET /refunds/{id}: one refund's current state, for reconciliation.

        Normal-speed refunds stay pending for days; when refund.processed is lost, this is
        how the refund settles (re-sending works only while the idempotency key lives).
        """
        refund = self._call(self._client.refund.fetch, gateway_refund_id)
        currency = str(refund.get("currency", "")).upper()
        notes = _notes(refund)
        rzp_payment = refund.get("payment_id") or None
        if rzp_payment and ref.gateway_payment_id and rzp_payment != ref.gateway_payment_id:
            raise GatewayError(
                "invalid_request",
                f"Razorpay refund {gateway_refund_id} belongs to another payment.",
            )
        status = _REFUND_STATUS.get(str(refund.get("status")), RefundStatus.PENDING)
        return RefundUpdate(
            # A dashboard refund has no notes of ours: the caller knows whose it is.
            ref=PaymentRef(
                payment_id=notes.get("payment_id") or ref.payment_id,
                reference=ref.reference,
                gateway_payment_id=rzp_payment or ref.gateway_payment_id,
            ),
            gateway_refund_id=str(refund.get("id") or gateway_refund_id),
            amount=from_razorpay_amount(refund.get("amount"), currency),
            currency=currency,
            status=status,
            refund_id=notes.get("refund_id"),
            reason=notes.get("reason"),
            failure_reason=(
                _clean(refund.get("error_description")) if status == RefundStatus.FAILED else None
            ),
        )

    # ------------------------------------------------------------ webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """X-Razorpay-Signature = hex HMAC-SHA256(webhook secret, raw body), checked first."""
        signature = _header(headers, "X-Razorpay-Signature")
        if not signature:
            raise SignatureError("missing X-Razorpay-Signature")
        if not _equal(sign(self._webhook_secret, body), signature.strip()):
            raise SignatureError("X-Razorpay-Signature does not match the body")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError("signed body is not JSON") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            raise SignatureError("signed body is not a Razorpay event")
        event_id = _header(headers, "x-razorpay-event-id")
        if not event_id:
            # Razorpay always sends it; if a proxy drops it, the signed body's digest is
            # still a stable dedupe key across Razorpay's retries of the same event.
            event_id = "sha256:" + hashlib.sha256(body).hexdigest()
        return VerifiedEvent(event_id=event_id, event_type=payload["event"], payload=payload)

    def interpret(self, event: VerifiedEvent) -> list[Update]:
        """Translate one verified event. Every update is a level (a state), not a delta,
        so duplicates and any arrival order converge on the same final state."""
        kind = event.event_type
        body = event.payload.get("payload") or {}
        payment = (body.get("payment") or {}).get("entity") or {}
        if kind in ("payment.authorized", "payment.captured", "payment.failed", "order.paid"):
            if not payment:
                return []
            status = {
                "payment.authorized": PaymentStatus.AUTHORIZED,
                "payment.captured": PaymentStatus.SUCCEEDED,
                "payment.failed": PaymentStatus.PROCESSING,
                "order.paid": PaymentStatus.SUCCEEDED,
            }[kind]
            ref = None
            if kind == "order.paid":
                order = (body.get("order") or {}).get("entity") or {}
                ref = PaymentRef(payment_id=order.get("receipt") or None, reference=order.get("id"))
            # Runs in the event job: a failed read of the saved token is retried with it.
            return [
                self._with_saved_method(
                    self._payment_update(payment, ref, status=status), payment, strict=True
                )
            ]
        if kind in _REFUND_EVENTS:
            refund = (body.get("refund") or {}).get("entity") or {}
            if not refund.get("id"):
                return []
            currency = str(refund.get("currency", "")).upper()
            notes = _notes(refund)
            return [
                RefundUpdate(
                    ref=PaymentRef(
                        payment_id=notes.get("payment_id") or _notes(payment).get("payment_id"),
                        reference=payment.get("order_id"),
                        gateway_payment_id=refund.get("payment_id"),
                    ),
                    gateway_refund_id=str(refund["id"]),
                    amount=from_razorpay_amount(refund.get("amount"), currency),
                    currency=currency,
                    status=_REFUND_EVENTS[kind],
                    # Absent for a refund made in Razorpay's dashboard: the core records it
                    # as a refund that came from the gateway.
                    refund_id=notes.get("refund_id"),
                    reason=notes.get("reason"),
                    failure_reason=(
                        _clean(refund.get("error_description")) if kind == "refund.failed" else None
                    ),
                )
            ]
        if kind in _DISPUTE_EVENTS:
            dispute = (body.get("dispute") or {}).get("entity") or {}
            if not dispute.get("id"):
                return []
            currency = str(dispute.get("currency", "")).upper()
            return [
                DisputeUpdate(
                    ref=PaymentRef(
                        payment_id=_notes(payment).get("payment_id"),
                        reference=payment.get("order_id"),
                        gateway_payment_id=dispute.get("payment_id") or payment.get("id"),
                    ),
                    gateway_dispute_id=str(dispute["id"]),
                    amount=from_razorpay_amount(dispute.get("amount"), currency),
                    currency=currency,
                    status=_DISPUTE_EVENTS[kind],
                    gateway_status=dispute.get("status"),
                    reason=dispute.get("reason_code") or dispute.get("reason_description"),
                    evidence_due_by=_ts(dispute.get("respond_by")),
                )
            ]
        return []

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Razorpay payloads carry no API secrets; drop card numbers and tokens if present."""
        redacted: dict[str, Any] = redact(payload)
        return redacted

    # ------------------------------------------------------------ subscriptions

    def _plan_for(self, plan: PlanSpec) -> str:
        """The plan's Razorpay Plan, created on first use. Plans have no idempotency key:
        before creating, the newest plans are searched for ours (notes.plan_id), so a
        create whose answer was lost is found again, not made twice."""
        if plan.gateway_plan_id:
            return plan.gateway_plan_id
        period = RAZORPAY_PERIODS.get(plan.interval)
        if period is None:
            raise GatewayError("invalid_request", f"Razorpay has no {plan.interval!r} plans")
        if period == "daily" and plan.interval_count < MIN_DAILY_INTERVAL:
            raise GatewayError(
                "invalid_request",
                f"Razorpay's daily plans repeat every {MIN_DAILY_INTERVAL} days or more",
            )
        currency = _currency(plan.currency)
        amount = to_razorpay_amount(plan.amount, currency)
        listing = self._call(self._client.plan.all, {"count": 100})
        for found in listing.get("items", []):
            if _notes(found).get("plan_id") == plan.plan_id:
                item = found.get("item") or {}
                if item.get("amount") != amount or item.get("currency") != currency:
                    raise GatewayError(
                        "idempotency_conflict",
                        f"Razorpay plan {found.get('id')} is ours but costs "
                        f"{item.get('amount')} {item.get('currency')}",
                    )
                return str(found["id"])
        created = self._call(
            self._client.plan.create,
            {
                "period": period,
                "interval": plan.interval_count,
                "item": {"name": plan.name[:250], "amount": amount, "currency": currency},
                "notes": {"plan_id": plan.plan_id},
            },
        )
        return str(created["id"])

    def create_subscription(self, request: SubscriptionRequest) -> SubscriptionCheckout:
        """POST /v1/subscriptions (found again by notes.subscription_id when a retry
        follows a lost answer); the customer authorises it on our Checkout page."""
        plan_id = self._plan_for(request.plan)
        found = self._find_subscription(plan_id, request.subscription_id)
        if found is None:
            body: dict[str, Any] = {
                "plan_id": plan_id,
                "total_count": total_count(request.plan.interval, request.plan.interval_count),
                "quantity": 1,
                "customer_notify": 1,
                "notes": {
                    "subscription_id": request.subscription_id,
                    "plan_id": request.plan.plan_id,
                },
            }
            if request.trial_days:
                # The trial: the mandate is authorised now, the first charge at start_at.
                start = datetime.now(UTC) + timedelta(days=request.trial_days)
                body["start_at"] = int(start.timestamp())
            found = self._call(self._client.subscription.create, body)
        return SubscriptionCheckout(
            reference=str(found["id"]),
            redirect_url=self.subscription_checkout_url(request.subscription_id),
            gateway_subscription_id=str(found["id"]),
            gateway_plan_id=plan_id,
        )

    def _find_subscription(self, plan_id: str, subscription_id: str) -> dict[str, Any] | None:
        listing = self._call(self._client.subscription.all, {"plan_id": plan_id, "count": 100})
        for sub in listing.get("items", []):
            if _notes(sub).get("subscription_id") == subscription_id:
                return dict(sub)
        return None

    def subscription_checkout_url(self, subscription_id: str) -> str:
        """Our own page that opens Razorpay Checkout for this subscription."""
        return f"{self.public_base_url}/checkout/razorpay/subscriptions/{subscription_id}"

    def subscription_checkout_options(
        self,
        *,
        gateway_subscription_id: str,
        store_name: str,
        description: str,
        customer_name: str,
        customer_email: str,
        callback_url: str,
        subscription_id: str,
    ) -> dict[str, Any]:
        """The options for `new Razorpay(options)` with a subscription (no secrets)."""
        return {
            "key": self.key_id,
            "subscription_id": gateway_subscription_id,
            "name": store_name,
            "description": description,
            "prefill": {"name": customer_name, "email": customer_email},
            "notes": {"subscription_id": subscription_id},
            "callback_url": callback_url,
            "redirect": True,
        }

    def verify_subscription_signature(
        self, gateway_subscription_id: str, razorpay_payment_id: str, signature: str | None
    ) -> bool:
        """HMAC-SHA256(key_secret, "payment_id|subscription_id"), checked by the SDK's own
        utility (hmac.compare_digest: constant time). `gateway_subscription_id` must be
        the one stored in our database, never the one the browser sent."""
        if not (gateway_subscription_id and razorpay_payment_id and signature):
            return False
        try:
            return bool(
                self._client.utility.verify_subscription_payment_signature(
                    {
                        "razorpay_subscription_id": gateway_subscription_id,
                        "razorpay_payment_id": razorpay_payment_id,
                        "razorpay_signature": signature,
                        "secret": self._key_secret,
                    }
                )
            )
        except (rzp_errors.SignatureVerificationError, TypeError, ValueError):
            # TypeError: a non-ASCII forgery (compare_digest refuses such strings).
            return False

    def confirm_subscription_return(
        self, ref: SubscriptionRef, params: ReturnParams
    ) -> SubscriptionSnapshot:
        """Checkout's callback after the customer authorised the subscription: the
        signature is checked against our stored subscription id, then the subscription is
        re-fetched (the callback's fields prove the signature, not the state)."""
        args = params.args
        sub_id = ref.gateway_subscription_id or ""
        payment_id = args.get("razorpay_payment_id") or ""
        if not self.verify_subscription_signature(
            sub_id, payment_id, args.get("razorpay_signature")
        ):
            log.warning("razorpay subscription callback signature mismatch for %s", sub_id)
            raise ReturnRejected("The subscription signature does not verify.")
        return self.retrieve_subscription(ref)

    def retrieve_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        """GET /v1/subscriptions/:id and its invoices (GET /v1/invoices?subscription_id=):
        the subscription as Razorpay has it now, each paid invoice a paid period."""
        sub_id = ref.gateway_subscription_id or ref.reference
        if not sub_id:
            return SubscriptionSnapshot(
                ref=ref, status=SubscriptionStatus.INCOMPLETE, gateway_status="not_created"
            )
        sub = self._call(self._client.subscription.fetch, sub_id)
        invoices: list[Mapping[str, Any]] = []
        skip = 0
        while True:
            page = self._call(
                self._client.invoice.all, {"subscription_id": sub_id, "count": 100, "skip": skip}
            )
            items = [i for i in page.get("items", []) if isinstance(i, Mapping)]
            invoices.extend(items)
            if len(items) < 100:
                break
            skip += 100
        return subscription_snapshot(sub, invoices, ref)

    def _subscription_id(self, ref: SubscriptionRef) -> str:
        sub_id = ref.gateway_subscription_id or ref.reference
        if not sub_id:
            raise GatewayError("invalid_request", "This subscription has not started yet.")
        return sub_id

    def cancel_subscription(
        self, ref: SubscriptionRef, *, at_period_end: bool
    ) -> SubscriptionSnapshot:
        """POST /v1/subscriptions/:id/cancel with cancel_at_cycle_end 1 (at the cycle's
        end: stays active until then) or 0 (now)."""
        sub_id = self._subscription_id(ref)
        self._call(
            self._client.subscription.cancel,
            sub_id,
            {"cancel_at_cycle_end": 1 if at_period_end else 0},
        )
        return self.retrieve_subscription(ref)

    def resume_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        """A paused subscription resumes (POST /v1/subscriptions/:id/resume, resume_at
        now). Razorpay cannot undo a cancellation, at the cycle's end or not: that is
        refused here with Razorpay's reason (the core asks `unsupported_change` first)."""
        sub_id = self._subscription_id(ref)
        current = self._call(self._client.subscription.fetch, sub_id)
        if current.get("status") != "paused":
            raise GatewayError("invalid_request", CANNOT_UNDO_CANCEL)
        self._call(self._client.subscription.resume, sub_id, {"resume_at": "now"})
        return self.retrieve_subscription(ref)

    def change_plan(self, ref: SubscriptionRef, plan: PlanSpec) -> SubscriptionSnapshot:
        """PATCH /v1/subscriptions/:id with the new plan, schedule_change_at now: Razorpay
        charges (or credits) the difference for the rest of the cycle itself."""
        sub_id = self._subscription_id(ref)
        plan_id = self._plan_for(plan)
        self._call(
            self._client.subscription.edit,
            sub_id,
            {"plan_id": plan_id, "schedule_change_at": "now"},
        )
        return self.retrieve_subscription(ref)

    def billing_portal_url(self, ref: SubscriptionRef, return_url: str) -> str:
        """Razorpay's own link for the subscription (short_url): where the customer
        authorises a new payment method. Razorpay has no return URL for it."""
        sub = self._call(self._client.subscription.fetch, self._subscription_id(ref))
        url = sub.get("short_url")
        if not url:
            raise GatewayError("invalid_request", "Razorpay gave no link for this subscription.")
        return str(url)

    def unsupported_change(
        self, what: str, status: SubscriptionStatus, cancel_at_period_end: bool
    ) -> str | None:
        """Why Razorpay cannot make a change, before anything is asked (the core shows
        the reason as it is); None when Razorpay can."""
        if what == "resume" and status != SubscriptionStatus.PAUSED:
            return CANNOT_UNDO_CANCEL
        if what == "change_plan" and (
            status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
            or cancel_at_period_end
        ):
            return "Razorpay changes the plan of active subscriptions only."
        return None

    def subscription_events(self, event: VerifiedEvent) -> list[SubscriptionEvent]:
        """Every subscription.* event names its subscription (payload.subscription)."""
        if not event.event_type.startswith("subscription."):
            return []
        body = event.payload.get("payload") or {}
        entity = (body.get("subscription") or {}).get("entity") or {}
        sub_id = entity.get("id")
        if not isinstance(sub_id, str) or not sub_id:
            return []
        ref = SubscriptionRef(
            subscription_id=_notes(entity).get("subscription_id"),
            gateway_subscription_id=sub_id,
        )
        return [SubscriptionEvent(ref=ref, event_type=event.event_type)]


def total_count(interval: str, interval_count: int) -> int:
    """The number of cycles a Razorpay subscription is made for (ten years' worth)."""
    return max(_CYCLES_IN_TEN_YEARS.get(interval, 120) // max(interval_count, 1), 1)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def subscription_snapshot(
    sub: Mapping[str, Any],
    invoices: Sequence[Mapping[str, Any]],
    ref: SubscriptionRef | None = None,
) -> SubscriptionSnapshot:
    """A Razorpay subscription (and its invoices) in the port's words.

    A scheduled end shows as `cancel_at_cycle_end` (a cancellation at the cycle's end) or
    as the last cycle running (`remaining_count` 0): either way it ends at `current_end`
    without another charge. Razorpay keeps no separate cancellation time: `ended_at` is
    when it ended."""
    raw = str(sub.get("status") or "created")
    status = _SUBSCRIPTION_STATUS.get(raw, SubscriptionStatus.INCOMPLETE)
    start_at, paid_count = _ts(sub.get("start_at")), _int(sub.get("paid_count")) or 0
    trial_end = None
    if raw == "authenticated" and paid_count == 0 and start_at and start_at > datetime.now(UTC):
        status, trial_end = SubscriptionStatus.TRIALING, start_at
    current_end = _ts(sub.get("current_end"))
    ending = raw in _RUNNING and (
        bool(sub.get("cancel_at_cycle_end")) or _int(sub.get("remaining_count")) == 0
    )
    mine = [i for i in invoices if i.get("subscription_id") in (None, sub.get("id"))]
    latest = max(
        mine,
        key=lambda i: (_int(i.get("billing_start")) or 0, _int(i.get("created_at")) or 0),
        default=None,
    )
    notes = _notes(sub)
    return SubscriptionSnapshot(
        ref=SubscriptionRef(
            subscription_id=notes.get("subscription_id") or (ref.subscription_id if ref else None),
            reference=ref.reference if ref else None,
            gateway_subscription_id=str(sub["id"]),
        ),
        status=status,
        gateway_status=raw,
        gateway_customer_id=_clean(sub.get("customer_id")),
        current_period_start=_ts(sub.get("current_start")),
        current_period_end=current_end,
        cancel_at=current_end if ending else None,
        cancel_at_period_end=ending,
        canceled_at=_ts(sub.get("ended_at")) if raw == "cancelled" else None,
        ended_at=_ts(sub.get("ended_at")) if raw in ("cancelled", "completed", "expired") else None,
        trial_end=trial_end,
        latest_invoice_id=str(latest["id"]) if latest and latest.get("id") else None,
        latest_invoice_status=str(latest.get("status")) if latest else None,
        next_payment_attempt=_ts(sub.get("charge_at")) if raw == "pending" else None,
        paid_invoices=tuple(
            _paid_period(i) for i in mine if i.get("status") == "paid" and i.get("id")
        ),
    )


def _paid_period(invoice: Mapping[str, Any]) -> InvoiceSnapshot:
    currency = str(invoice.get("currency") or "").upper()
    amount = invoice.get("amount_paid") or invoice.get("amount")
    return InvoiceSnapshot(
        invoice_id=str(invoice["id"]),
        amount=from_razorpay_amount(amount, currency) if currency else 0,
        currency=currency,
        gateway_payment_id=_clean(invoice.get("payment_id")),
        reference=_clean(invoice.get("order_id")),
        period_start=_ts(invoice.get("billing_start")),
        period_end=_ts(invoice.get("billing_end")),
        paid_at=_ts(invoice.get("paid_at")),
    )


def _error_from_response(response: requests.Response | None, fallback: str) -> GatewayError:
    """Razorpay's error shape -> a Kassa GatewayError.

    {"error": {"code": "BAD_REQUEST_ERROR", "description", "source", "step", "reason",
    "metadata"}}; the HTTP status decides first (401, 409, 429, 5xx), then the code.
    """
    status = response.status_code if response is not None else None
    error: dict[str, Any] = {}
    if response is not None:
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                error = body["error"]
        except ValueError:
            pass
    code = str(error.get("code") or "").upper()
    message = str(error.get("description") or fallback or "Razorpay error")
    reason = _clean(error.get("reason"))
    if status == 401:
        return GatewayError("authentication_failed", message, http_status=401)
    if status == 429:
        return GatewayError("rate_limited", message, retryable=True, http_status=429)
    if status == 409:
        # A request with the same idempotency key is still being processed: retry later.
        return GatewayError("gateway_unavailable", message, retryable=True, http_status=409)
    if status is None or status >= 500 or code in ("GATEWAY_ERROR", "SERVER_ERROR"):
        return GatewayError("gateway_unavailable", message, retryable=True, http_status=status)
    lowered = message.lower()
    if status == 404 or "does not exist" in lowered or "not found" in lowered:
        return GatewayError("not_found", message, http_status=status)
    if "idempotency key" in lowered:
        return GatewayError("idempotency_conflict", message, http_status=status)
    if _clean(error.get("source")) in ("customer", "bank", "issuer", "gateway") or (
        reason and reason.startswith(("payment_", "card_", "insufficient"))
    ):
        return GatewayError("payment_failed", message, http_status=status, decline_code=reason)
    return GatewayError("invalid_request", message, http_status=status, decline_code=reason)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _valid_through(expired_at: datetime) -> tuple[int, int]:
    """The last (year, month) a token ending at `expired_at` can be charged in, as a
    card's expiry is written; one that has ended already counts as ended last month."""
    last = expired_at - timedelta(seconds=1)
    now = datetime.now(UTC)
    if expired_at <= now:
        last = min(last, now.replace(day=1, hour=0, minute=0, second=0) - timedelta(seconds=1))
    return last.year, last.month


def _token_address(token: str, customer_id: str | None) -> tuple[str, str]:
    """A saved method's token as Kassa keeps it, "cust_…/token_…": both ids."""
    owner, _, token_id = token.rpartition("/")
    owner = owner or (customer_id or "")
    if not owner or not token_id:
        raise GatewayError("invalid_request", "this saved method names no Razorpay customer")
    return owner, token_id


def _decline(payment: Mapping[str, Any]) -> GatewayError:
    """A failed recurring payment as the decline it is (402 with Razorpay's reason)."""
    return GatewayError(
        "payment_failed",
        failure_message(payment) or "The payment was declined.",
        decline_code=failure_code(payment),
    )
