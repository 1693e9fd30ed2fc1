"""Stripe Checkout behind the gateway port, with the official SDK's StripeClient.

The only module that imports `stripe`. Credentials come in through the
constructor (no global `stripe.api_key`), so tests and a local Stripe emulator
can point one client at another address. Everything Stripe-specific (lowercase
currencies, Stripe's own minor units, status words, event types, error classes)
is translated here into the plain types of app.gateways.base.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import stripe
from stripe.params import EventListParams

if TYPE_CHECKING:
    # The SDK's typed request parameters (TypedDicts: plain dicts at run time).
    # BaseAddresses is not re-exported by stripe; StripeClient's base_addresses takes it.
    from stripe._base_address import BaseAddresses
    from stripe.params import (
        PaymentIntentCaptureParams,
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
    )
    from stripe.params.checkout import (
        SessionCreateParams,
        SessionCreateParamsPaymentIntentData,
        SessionCreateParamsSubscriptionData,
    )

from app.gateways.base import (
    AuthenticationRequest,
    AuthenticationStart,
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    DisputeUpdate,
    GatewayError,
    InvoiceSnapshot,
    MethodSetupRequest,
    MethodSetupSession,
    MethodSetupUpdate,
    PaymentRef,
    PaymentUpdate,
    PlanSpec,
    RefundRequest,
    RefundResult,
    RefundUpdate,
    ReturnParams,
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
from app.money import exponent as iso_exponent

log = logging.getLogger(__name__)

# Stripe's error codes for a charge the bank wants authenticated, and for an
# authentication the customer did not pass on the bank's page.
AUTH_REQUIRED = "authentication_required"
AUTH_FAILED = "payment_intent_authentication_failure"
AUTH_FAILED_MESSAGE = (
    "Your bank did not confirm this payment (the authentication failed), so nothing was charged."
)

# --------------------------------------------------------------------------- amounts
# Stripe's own minor units (https://docs.stripe.com/currencies). They differ from
# ISO 4217 for a few currencies, so conversion from our ISO minor units happens here.
STRIPE_ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
# Three-decimal currencies: Stripe requires the last digit to be 0 (amounts in tens).
STRIPE_THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
# ISK is zero-decimal in ISO but two-decimal in Stripe's API (amounts in hundreds).
STRIPE_WHOLE_UNITS_ONLY = frozenset({"ISK"})


def stripe_exponent(currency: str) -> int:
    """Decimal places of an amount as Stripe's API counts them."""
    cur = currency.upper()
    if cur in STRIPE_ZERO_DECIMAL:
        return 0
    if cur in STRIPE_THREE_DECIMAL:
        return 3
    return 2  # Stripe: "unless otherwise noted, currencies are two-decimal"


def to_stripe_amount(amount_minor: int, currency: str) -> int:
    """Our integer ISO minor units → Stripe's integer amount, or GatewayError.

    Never rounds: an amount Stripe cannot take exactly is refused with a message
    the merchant can act on (fix the price), rather than charging something else.
    """
    cur = currency.upper()
    ours, theirs = iso_exponent(cur), stripe_exponent(cur)
    value: int
    if theirs >= ours:
        value = amount_minor * 10 ** (theirs - ours)
    else:
        factor = 10 ** (ours - theirs)
        if amount_minor % factor:
            raise GatewayError("invalid_request", f"Stripe only accepts whole {cur} amounts.")
        value = amount_minor // factor
    if cur in STRIPE_THREE_DECIMAL and value % 10:
        raise GatewayError(
            "invalid_request",
            f"Stripe requires {cur} amounts to end in 0 (multiples of 0.010 {cur}).",
        )
    if cur in STRIPE_WHOLE_UNITS_ONLY and value % 100:
        raise GatewayError("invalid_request", f"Stripe only accepts whole {cur} amounts.")
    return value


def from_stripe_amount(amount: int, currency: str) -> int:
    """Stripe's integer amount → our integer ISO minor units."""
    cur = currency.upper()
    ours, theirs = iso_exponent(cur), stripe_exponent(cur)
    if ours >= theirs:
        return int(amount) * int(10 ** (ours - theirs))
    factor = int(10 ** (theirs - ours))
    if amount % factor:
        # Cannot happen for amounts we created; a dashboard-made odd amount is
        # rounded down rather than crashing event processing forever.
        log.warning("stripe amount %s %s has sub-unit digits; rounding down", amount, cur)
    return int(amount) // factor


# --------------------------------------------------------------------------- keys
def key_mode(secret_key: str) -> str:
    """'test' or 'live' from a Stripe secret or restricted key's prefix."""
    for prefix in ("sk_", "rk_"):
        if secret_key.startswith(prefix + "test_"):
            return "test"
        if secret_key.startswith(prefix + "live_"):
            return "live"
    raise ValueError("not a Stripe secret key (expected sk_test_/sk_live_/rk_test_/rk_live_)")


def check_key_safety(secret_key: str, debug: bool) -> None:
    """Refuse a live key in debug mode, and anything that is not a secret key."""
    try:
        mode = key_mode(secret_key)
    except ValueError as exc:
        raise RuntimeError(f"STRIPE_SECRET_KEY is {exc}") from None
    if mode == "live" and debug:
        raise RuntimeError("Refusing to start: a live Stripe key is configured in debug mode")


# --------------------------------------------------------------------------- helpers
EXPIRY_MIN = timedelta(minutes=30)
EXPIRY_MAX = timedelta(hours=24)
# Stripe checks the window when the request arrives, so keep a margin for transit.
EXPIRY_MARGIN = timedelta(seconds=120)

REFUND_REASONS = {
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
    "fraud": "fraudulent",
    "requested_by_customer": "requested_by_customer",
    "customer_request": "requested_by_customer",
    "customer": "requested_by_customer",
}

REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}

DISPUTE_STATUS = {
    "won": DisputeStatus.WON,
    "lost": DisputeStatus.LOST,
    "warning_closed": DisputeStatus.CLOSED,
    "prevented": DisputeStatus.CLOSED,
}

SESSION_EXPAND = ["payment_intent", "payment_intent.latest_charge"]

# The event types interpret() turns into updates. Reconciliation lists these (and the
# subscription events below) from /v1/events; anything else gives no update.
HANDLED_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.expired",
    "payment_intent.succeeded",
    "charge.refunded",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
)
# Subscriptions: each only names its subscription, which is re-fetched
# (subscription_events); listed by reconciliation with the others (LISTED_EVENTS, in
# groups of EVENT_TYPES_PER_LIST: Stripe's limit for listing events by type).
SUBSCRIPTION_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.payment_action_required",
)
LISTED_EVENTS = HANDLED_EVENTS + SUBSCRIPTION_EVENTS
EVENT_TYPES_PER_LIST = 20  # Stripe's limit for `types` in one events list
SUBSCRIPTION_EVENT_PREFIXES = ("customer.subscription.", "invoice.")
# Stripe's subscription statuses are the port's words.
SUBSCRIPTION_STATUS = {s.value: s for s in SubscriptionStatus}
EVENTS_PAGE_SIZE = 100  # Stripe's largest page
EVENTS_MAX = 5000  # per list_events call, so one reconcile run stays bounded

USER_MESSAGES = {
    "card_declined": "Your card was declined. Please try another card or payment method.",
    "invalid_request": "The payment could not be started. Please try again or contact the store.",
    "authentication_failed": "Payments are temporarily unavailable. Please try again later.",
    "rate_limited": "The payment provider is busy. Please try again in a moment.",
    "gateway_unavailable": "The payment provider is not reachable right now. "
    "Please try again in a moment.",
    "idempotency_conflict": "This payment is already being processed. Please refresh the page.",
    "not_found": "The payment could not be found at the payment provider.",
}


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def _id(value: Any) -> str | None:
    """An expandable field: an id string, an expanded object, or null."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value if isinstance(value, str) else None


def _obj(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _plain(obj: Any) -> dict[str, Any]:
    """StripeObject → plain dict (recursively), so one mapper serves API and webhooks."""
    plain: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return plain


def _card_details(charge: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Brand, last 4 and the wallet (Apple Pay, Google Pay, Link): the details safe to keep."""
    if not charge:
        return None
    pmd = charge.get("payment_method_details") or {}
    if pmd.get("type") == "link":
        # Link as its own payment method: no card details to show, the wallet is the fact.
        return {"method": "wallet", "wallet": "link"}
    card = pmd.get("card") or {}
    if not card:
        return None
    details = {k: str(card[k]) for k in ("brand", "last4") if card.get(k)}
    wallet = (card.get("wallet") or {}).get("type")
    if wallet:
        # apple_pay, google_pay, link, samsung_pay...: a card paid through a wallet.
        details.update(method="card", wallet=str(wallet))
    return details or None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if key.lower() == lname:
                return val
    return value


def _quiet_sdk_debug_log() -> None:
    """The SDK logs whole request and response bodies at DEBUG (client secrets, card
    brand and last 4, customer emails); keep its logger at INFO unless an operator set
    a level for it on purpose."""
    sdk_log = logging.getLogger("stripe")
    if sdk_log.level == logging.NOTSET:
        sdk_log.setLevel(logging.INFO)


def redact(payload: Any) -> Any:
    """A copy of a JSON-like tree without client secrets (anywhere in it)."""
    if isinstance(payload, Mapping):
        return {k: redact(v) for k, v in payload.items() if k != "client_secret"}
    if isinstance(payload, list):
        return [redact(v) for v in payload]
    return payload


class PooledHTTPClient(stripe.HTTPClient):
    """The SDK's HTTP client on one urllib3 connection pool shared by all threads.

    The SDK's default (requests) keeps a session per thread and, per call, reads the
    environment for proxies and .netrc, which costs more CPU than the rest of the call;
    with many request threads that is also many idle connections. This is the SDK's
    documented extension point (HTTPClient), so retries, idempotency keys, headers and
    error handling stay the SDK's own. A proxy comes from HTTPS_PROXY, read once.
    """

    name = "urllib3"

    def __init__(self, timeout: float, *, pool_size: int = 256, proxy: str | None = None) -> None:
        import urllib3

        super().__init__(verify_ssl_certs=True, proxy=proxy)
        self._urllib3 = urllib3
        self._timeout = urllib3.Timeout(total=timeout)
        options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": pool_size,
            "block": False,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": stripe.ca_bundle_path,
        }
        self._pool: Any = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_: Any,
    ) -> tuple[str, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=True)
        # The SDK decodes a bytes body as UTF-8 itself; its interface says str.
        return response.data.decode("utf-8"), response.status, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        **_: Any,
    ) -> tuple[Any, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data, preload=False)
        return response, response.status, response.headers

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any,
        *,
        preload: bool,
    ) -> Any:
        errors = self._urllib3.exceptions
        try:
            return self._pool.request(
                method.upper(),
                url,
                headers=dict(headers or {}),
                body=post_data,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=preload,
            )
        except errors.SSLError as exc:
            # Never retried: a certificate problem doesn't fix itself.
            raise stripe.APIConnectionError(
                f"Could not verify Stripe's SSL certificate ({type(exc).__name__}).",
                should_retry=False,
            ) from exc
        except (
            errors.TimeoutError,
            errors.ProtocolError,
            errors.NewConnectionError,
            errors.ProxyError,
            ConnectionError,
        ) as exc:
            # The SDK retries these (max_network_retries) with the same idempotency key.
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe ({type(exc).__name__}: {exc}).",
                should_retry=True,
            ) from exc
        except errors.HTTPError as exc:
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe ({type(exc).__name__}: {exc}).",
                should_retry=False,
            ) from exc

    def close(self) -> None:
        self._pool.clear()


def _proxy_from_environment() -> str | None:
    """HTTPS_PROXY as requests would have honoured it (NO_PROXY aside)."""
    import os

    return os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or None


class StripeGateway:
    """Stripe Checkout Sessions, refunds, capture and signed webhooks."""

    name = "stripe"
    display_name = "Card (Stripe)"

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        *,
        api_base: str | None = None,
        checkout_expiry_minutes: int = 30,
        public_base_url: str = "",
        timeout: float = 10.0,
        max_network_retries: int = 2,
        webhook_tolerance: int = 300,
        stripe_version: str | None = None,
        events_max: int = EVENTS_MAX,
    ) -> None:
        if not secret_key:
            raise ValueError("a Stripe secret key is required")
        if not webhook_secret:
            raise ValueError("a Stripe webhook secret is required")
        self.mode = key_mode(secret_key)
        _quiet_sdk_debug_log()
        self._webhook_secret = webhook_secret
        self._payment_ids: dict[str, str] = {}  # payment intent → our payment (immutable)
        self._tolerance = webhook_tolerance
        self._events_max = max(1, events_max)
        self._expiry = timedelta(minutes=checkout_expiry_minutes)
        self._public_base_url = public_base_url.rstrip("/")
        self._http = PooledHTTPClient(timeout, proxy=_proxy_from_environment())
        bases: BaseAddresses | None = None
        if api_base:
            base = api_base.rstrip("/")
            # Every base, so no call can leak to the real Stripe from a dev/CI setup.
            bases = {"api": base, "connect": base, "files": base, "meter_events": base}
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=bases,
            max_network_retries=max_network_retries,
            http_client=self._http,
            stripe_version=stripe_version,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeGateway:
        return cls(
            config["STRIPE_SECRET_KEY"],
            config["STRIPE_WEBHOOK_SECRET"],
            api_base=config.get("STRIPE_API_BASE"),
            checkout_expiry_minutes=int(config.get("CHECKOUT_EXPIRY_MINUTES") or 30),
            public_base_url=config.get("PUBLIC_BASE_URL") or "",
            timeout=float(config.get("STRIPE_TIMEOUT_SECONDS") or 10.0),
            max_network_retries=int(config.get("STRIPE_MAX_NETWORK_RETRIES", 2)),
            webhook_tolerance=int(config.get("WEBHOOK_TOLERANCE_SECONDS") or 300),
        )

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ checkout
    def _absolute(self, url: str) -> str:
        if url.startswith("/") and self._public_base_url:
            return self._public_base_url + url
        return url

    def _success_url(self, url: str) -> str:
        url = self._absolute(url)
        if "{CHECKOUT_SESSION_ID}" not in url:
            url += ("&" if "?" in url else "?") + "session_id={CHECKOUT_SESSION_ID}"
        return url

    def _expires_at(self, requested: datetime | None) -> int:
        """Stripe's expires_at for an attempt: deterministic for one request.

        A repeated create (double click, retried job) must send identical parameters,
        or Stripe answers idempotency_error instead of replaying the session. So the
        value depends on the requested expiry, not on the clock, except when the
        request falls outside Stripe's 30 min .. 24 h window; then it is clamped on a
        5 minute grid so repeats within minutes still agree.
        """
        now = time.time()
        wanted = requested or datetime.now(UTC) + self._expiry
        if wanted.tzinfo is None:
            wanted = wanted.replace(tzinfo=UTC)
        # Whole minutes plus a margin for the request's transit to Stripe.
        value = -(-int(wanted.timestamp()) // 60) * 60 + int(EXPIRY_MARGIN.total_seconds())
        low = now + (EXPIRY_MIN + EXPIRY_MARGIN).total_seconds()
        high = now + (EXPIRY_MAX - EXPIRY_MARGIN).total_seconds()
        if value < low:
            value = -(-int(low) // 300) * 300
        elif value > high:
            value = int(high) // 300 * 300
        return value

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        currency = request.currency.upper()
        if sum(li.unit_amount * li.quantity for li in request.line_items) != request.amount:
            raise GatewayError("invalid_request", "Line items do not add up to the amount.")
        to_stripe_amount(request.amount, currency)
        metadata = {"order_id": request.order_id, "payment_id": request.payment_id}
        if request.capture_method == "manual":
            # Lets a webhook's session (which names its payment intent only by id) say
            # that a "paid" session is an authorization, without another API call.
            metadata["capture_method"] = "manual"
        pi_data: SessionCreateParamsPaymentIntentData = {"metadata": dict(metadata)}
        if request.capture_method == "manual":
            pi_data["capture_method"] = "manual"
        if request.description:
            pi_data["description"] = request.description[:1000]
        customer_id = None
        if request.save_payment_method:
            # Saved for off-session charges later, on a Stripe customer of its own.
            metadata["save_payment_method"] = "true"
            pi_data["metadata"] = dict(metadata)
            pi_data["setup_future_usage"] = "off_session"
            customer_id = request.gateway_customer_id or self._create_customer(request)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": to_stripe_amount(li.unit_amount, currency),
                        "product_data": {"name": li.name[:250]},
                    },
                    "quantity": li.quantity,
                }
                for li in request.line_items
            ],
            "client_reference_id": request.payment_id,
            "metadata": metadata,
            "payment_intent_data": pi_data,
            "success_url": self._success_url(request.success_url),
            "cancel_url": self._absolute(request.cancel_url),
            "expires_at": self._expires_at(request.expires_at),
        }
        if customer_id:
            params["customer"] = customer_id  # Stripe takes customer or customer_email
        elif request.customer_email:
            params["customer_email"] = request.customer_email
        # Three fields of the answer are read, so the SDK's object is read as it is, not
        # copied into plain dicts first (every checkout's hot path).
        session = self._call_object(
            "checkout.create",
            lambda: self._client.v1.checkout.sessions.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        log.info("stripe checkout session %s created for %s", session["id"], request.payment_id)
        return CheckoutSession(
            reference=session["id"],
            redirect_url=session["url"],
            expires_at=_ts(getattr(session, "expires_at", None)),
        )

    def _create_customer(self, request: CheckoutRequest) -> str:
        return self._create_customer_for(
            request.customer_email,
            request.customer_name,
            {"payment_id": request.payment_id},
            f"{request.idempotency_key}-customer",
        )

    def _create_customer_for(
        self, email: str, name: str, metadata: dict[str, str], idempotency_key: str
    ) -> str:
        customer = self._call(
            "customer.create",
            lambda: self._client.v1.customers.create(
                params={"email": email, "name": name[:256], "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            ),
        )
        return str(customer["id"])

    # ------------------------------------------------------------------ saved methods
    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        """An off-session PaymentIntent, confirmed at once. Stripe answers a charge the bank
        wants authenticated with a card error `authentication_required` whose payment
        intent waits in requires_action."""
        currency = request.currency.upper()
        params: PaymentIntentCreateParams = {
            "amount": to_stripe_amount(request.amount, currency),
            "currency": currency.lower(),
            "payment_method": request.token,
            "off_session": True,
            "confirm": True,
            "metadata": {"order_id": request.order_id, "payment_id": request.payment_id},
            "expand": ["latest_charge"],
        }
        if request.gateway_customer_id is not None:  # the SDK leaves a None out too
            params["customer"] = request.gateway_customer_id
        if request.description:
            params["description"] = request.description[:1000]
        try:
            pi = _plain(
                self._client.v1.payment_intents.create(
                    params=params,
                    options={"idempotency_key": request.idempotency_key},
                )
            )
        except stripe.CardError as exc:
            waiting = getattr(exc.error, "payment_intent", None) if exc.error else None
            if getattr(exc, "code", None) == "authentication_required" and waiting:
                pi = _plain(waiting)
                update = replace(
                    self.payment_intent_update(pi, payment_id=request.payment_id),
                    status=PaymentStatus.REQUIRES_ACTION,
                )
                return ChargeResult(update=update, reference=str(pi["id"]))
            raise self._translate("payment_intent.create", exc) from None
        except stripe.StripeError as exc:
            raise self._translate("payment_intent.create", exc) from None
        update = self.payment_intent_update(pi, payment_id=request.payment_id)
        return ChargeResult(update=update, reference=str(pi["id"]))

    def start_authentication(self, request: AuthenticationRequest) -> AuthenticationStart:
        """The customer is back for a charge their bank wants authenticated: confirm the
        PaymentIntent on-session (no off_session) with a return_url, Stripe's manual
        redirect for 3D Secure without Stripe.js. Its answer is requires_action with
        next_action redirect_to_url (the bank's page, then back to return_url), or final
        at once (authenticated without a challenge, or declined).

        An intent already waiting on our return_url is sent there again (a second visit
        confirms nothing twice); one that moved on meanwhile is only read."""
        pi_id = request.gateway_payment_id
        pi = self._payment_intent(pi_id)
        if not self._redirect_url(pi, request.return_url) and self._confirmable(pi):
            params: PaymentIntentConfirmParams = {
                "payment_method": request.token,
                "return_url": request.return_url,
                "expand": ["latest_charge"],
            }
            try:
                pi = _plain(
                    self._client.v1.payment_intents.confirm(
                        pi_id,
                        params=params,
                        options={"idempotency_key": request.idempotency_key},
                    )
                )
            except stripe.StripeError as exc:
                raise self._translate("payment_intent.confirm", exc) from None
        update = self.charge_update(pi, payment_id=request.payment_id)
        if pi.get("status") != "requires_action":
            return AuthenticationStart(update=update)
        url = self._redirect_url(pi, request.return_url)
        if not url:
            kind = (pi.get("next_action") or {}).get("type")
            raise GatewayError(
                "invalid_request",
                f"Stripe asked for a step Kassa cannot show without Stripe.js ({kind}).",
            )
        return AuthenticationStart(update=update, redirect_url=url)

    @staticmethod
    def _redirect_url(pi: Mapping[str, Any], return_url: str) -> str | None:
        action = pi.get("next_action") or {}
        if pi.get("status") != "requires_action" or action.get("type") != "redirect_to_url":
            return None
        redirect = action.get("redirect_to_url") or {}
        if redirect.get("return_url") not in (None, return_url):
            return None  # confirmed for another page: confirm again for ours
        url = redirect.get("url")
        return str(url) if url else None

    @staticmethod
    def _confirmable(pi: Mapping[str, Any]) -> bool:
        status = pi.get("status")
        if status in ("requires_confirmation", "requires_action"):
            return True
        # After an off-session attempt Stripe may leave the intent wanting a method, with
        # authentication_required as its error: the saved one, confirmed on-session.
        error = pi.get("last_payment_error") or {}
        return status == "requires_payment_method" and error.get("code") == AUTH_REQUIRED

    def charge_update(
        self, pi: Mapping[str, Any], *, payment_id: str | None = None
    ) -> PaymentUpdate:
        """What the PaymentIntent of an off-session charge says: unlike Checkout's intents
        (whose session stays open for another card), an intent that wants a method again
        is an end: authentication required (the customer's link), or failed."""
        update = self.payment_intent_update(pi, payment_id=payment_id, reference=pi.get("id"))
        error = pi.get("last_payment_error") or {}
        if pi.get("status") != "requires_payment_method" or not error:
            return update
        if error.get("code") == AUTH_REQUIRED:
            return replace(update, status=PaymentStatus.REQUIRES_ACTION)
        message = update.failure_message
        if error.get("code") == AUTH_FAILED:
            message = AUTH_FAILED_MESSAGE
        return replace(update, status=PaymentStatus.FAILED, failure_message=message)

    def detach_method(self, token: str) -> None:
        self._call(
            "payment_method.detach",
            lambda: self._client.v1.payment_methods.detach(token),
        )

    def _saved_method(self, pi: Mapping[str, Any], customer: str | None) -> SavedMethod | None:
        pm_id = _id(pi.get("payment_method"))
        if not pm_id:
            return None
        pm = self._call(
            "payment_method.retrieve", lambda: self._client.v1.payment_methods.retrieve(pm_id)
        )
        card = pm.get("card") or {}
        wallet = card.get("wallet") or {}
        return SavedMethod(
            token=pm_id,
            brand=card.get("brand"),
            last4=card.get("last4"),
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
            wallet=wallet.get("type") if isinstance(wallet, Mapping) else None,
            gateway_customer_id=customer or _id(pi.get("customer")),
        )

    # ------------------------------------------------------------------ retrieve
    def _retrieve_session(self, session_id: str) -> dict[str, Any]:
        return self._call(
            "checkout.retrieve",
            lambda: self._client.v1.checkout.sessions.retrieve(
                session_id, params={"expand": SESSION_EXPAND}
            ),
        )

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        if ref.reference and ref.reference.startswith("pi_"):
            # An off-session charge: its reference is the PaymentIntent (no session).
            return self.charge_update(self._payment_intent(ref.reference))
        if ref.reference:
            return self.session_update(self._retrieve_session(ref.reference))
        if ref.gateway_payment_id:
            return self.payment_intent_update(self._payment_intent(ref.gateway_payment_id))
        raise GatewayError("not_found", "No Stripe reference is known for this payment.")

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        if not ref.reference:
            return None
        if ref.reference.startswith("pi_"):
            # Back from the bank's page (on-session authentication): Stripe adds
            # payment_intent to the return_url; only our stored intent counts.
            if params.args.get("payment_intent") not in (None, ref.reference):
                log.warning(
                    "stripe return for %s carried a foreign payment intent; ignored",
                    ref.payment_id,
                )
            return self.retrieve(ref)
        hint = params.args.get("session_id")
        if hint and hint != ref.reference:
            # The URL is the customer's to edit: only our stored session counts.
            log.warning(
                "stripe return for %s carried a foreign session id; ignored", ref.payment_id
            )
        return self.retrieve(ref)

    def cancel_checkout(self, ref: PaymentRef) -> None:
        """Expire an open session. Already expired: done. Completed (the customer paid
        meanwhile): GatewayError, so the core leaves the payment to the webhook instead
        of marking money that was taken as canceled."""
        session_id = ref.reference
        if not session_id:
            return
        session = self._retrieve_session(session_id)
        if session.get("status") == "open":
            try:
                self._call(
                    "checkout.expire",
                    lambda: self._client.v1.checkout.sessions.expire(
                        session_id,
                        options={"idempotency_key": f"expire-{ref.reference}"},
                    ),
                )
                return
            except GatewayError as exc:
                if exc.code != "invalid_request":
                    raise
                # Completed or expired between our retrieve and the expire.
                session = self._retrieve_session(session_id)
                if session.get("status") == "open":
                    raise
        if session.get("status") == "complete":
            raise GatewayError(
                "invalid_request", "This checkout was already completed; it cannot be canceled."
            )

    # ------------------------------------------------------------------ refunds
    def _payment_intent_id(self, reference: str | None, gateway_payment_id: str | None) -> str:
        if gateway_payment_id:
            return gateway_payment_id
        if reference:
            pi = _id(self._retrieve_session(reference).get("payment_intent"))
            if pi:
                return pi
        raise GatewayError("invalid_request", "This payment has no captured Stripe payment.")

    def refund(self, request: RefundRequest) -> RefundResult:
        if request.amount <= 0:
            raise GatewayError("invalid_request", "A refund must be for a positive amount.")
        params: RefundCreateParams = {
            "payment_intent": self._payment_intent_id(
                request.reference, request.gateway_payment_id
            ),
            "amount": to_stripe_amount(request.amount, request.currency),
            "metadata": {"refund_id": request.refund_id, "payment_id": request.payment_id},
        }
        reason = REFUND_REASONS.get((request.reason or "").strip().lower())
        if reason:
            params["reason"] = reason
        refund = self._call(
            "refund.create",
            lambda: self._client.v1.refunds.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        return RefundResult(
            gateway_refund_id=refund["id"],
            status=REFUND_STATUS.get(refund.get("status") or "", RefundStatus.PENDING),
            failure_reason=refund.get("failure_reason"),
        )

    def retrieve_refund(self, ref: PaymentRef, gateway_refund_id: str) -> RefundUpdate:
        """One refund's current state (reconciliation of a refund whose webhook was lost)."""
        refund = self._call(
            "refund.retrieve", lambda: self._client.v1.refunds.retrieve(gateway_refund_id)
        )
        update = self.refund_update(refund)
        pi_id = update.ref.gateway_payment_id
        if pi_id and ref.gateway_payment_id and pi_id != ref.gateway_payment_id:
            raise GatewayError(
                "invalid_request", f"Stripe refund {gateway_refund_id} belongs to another payment."
            )
        # A dashboard refund carries no metadata of ours: the caller knows whose it is.
        return replace(
            update,
            ref=PaymentRef(
                payment_id=update.ref.payment_id or ref.payment_id,
                reference=ref.reference,
                gateway_payment_id=pi_id or ref.gateway_payment_id,
            ),
        )

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        pi_id = self._payment_intent_id(request.reference, request.gateway_payment_id)
        params: PaymentIntentCaptureParams = {
            "amount_to_capture": to_stripe_amount(request.amount, request.currency),
            "expand": ["latest_charge"],
        }
        pi = self._call(
            "payment_intent.capture",
            lambda: self._client.v1.payment_intents.capture(
                pi_id,
                params=params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        return self.payment_intent_update(
            pi, payment_id=request.payment_id, reference=request.reference
        )

    def void_payment(self, request: CaptureRequest) -> PaymentUpdate:
        """Release an uncaptured authorization: cancel its PaymentIntent (idempotent on
        the request's key). Answers the intent as canceled, the authorization's end."""
        pi_id = self._payment_intent_id(request.reference, request.gateway_payment_id)
        pi = self._call(
            "payment_intent.cancel",
            lambda: self._client.v1.payment_intents.cancel(
                pi_id,
                params={"cancellation_reason": "requested_by_customer"},
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        update = self.payment_intent_update(
            pi, payment_id=request.payment_id, reference=request.reference
        )
        return replace(update, authorization_ended=update.status == PaymentStatus.CANCELED)

    # ------------------------------------------------------------------ mapping
    def session_update(self, session: Mapping[str, Any]) -> PaymentUpdate:
        """What a Checkout Session (payment_intent maybe expanded) says about our payment."""
        metadata = session.get("metadata") or {}
        pi = _obj(session.get("payment_intent"))
        pi_id = _id(session.get("payment_intent"))
        currency = (session.get("currency") or "").upper() or None
        amount = session.get("amount_total")
        ref = PaymentRef(
            payment_id=metadata.get("payment_id") or session.get("client_reference_id"),
            reference=session.get("id"),
            gateway_payment_id=pi_id,
        )
        status_word, payment_status = session.get("status"), session.get("payment_status")
        pi_status = pi.get("status") if pi else None
        error = (pi or {}).get("last_payment_error") or {}
        failure_code = error.get("decline_code") or error.get("code")
        failure_message = error.get("message")
        capture_deadline = None
        if status_word == "expired":
            status = PaymentStatus.EXPIRED
        elif status_word == "complete":
            if pi_status == "requires_capture" or (
                pi is None
                and payment_status == "paid"
                and metadata.get("capture_method") == "manual"
            ):
                status = PaymentStatus.AUTHORIZED
                capture_deadline = self._capture_deadline(pi)
            elif pi_status == "canceled":
                status = PaymentStatus.CANCELED
            elif payment_status in ("paid", "no_payment_required"):
                status = PaymentStatus.SUCCEEDED
            elif pi_status == "requires_payment_method" and error:
                status = PaymentStatus.FAILED  # async method failed after completion
            else:
                status = PaymentStatus.PROCESSING  # async method still in flight
        else:
            # Open: the customer is (or may come back) at Stripe; a failed attempt is
            # recorded but is not final, they may retry on the same page.
            status = PaymentStatus.PROCESSING
        if status in (PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED):
            failure_code = failure_message = None
        return PaymentUpdate(
            ref=ref,
            status=status,
            amount=from_stripe_amount(amount, currency)
            if amount is not None and currency
            else None,
            currency=currency,
            gateway_payment_id=pi_id,
            failure_code=failure_code,
            failure_message=failure_message,
            payment_method=_card_details(_obj((pi or {}).get("latest_charge"))),
            capture_deadline=capture_deadline,
            # Filled in from the PaymentMethod when the event is enriched (_enrich).
            saved_method=SavedMethod(token="", gateway_customer_id=_id(session.get("customer")))
            if metadata.get("save_payment_method") == "true"
            and status in (PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED)
            else None,
        )

    @staticmethod
    def _capture_deadline(pi: Mapping[str, Any] | None) -> datetime | None:
        charge = _obj((pi or {}).get("latest_charge")) or {}
        card = (charge.get("payment_method_details") or {}).get("card") or {}
        if card.get("capture_before"):
            return _ts(card["capture_before"])
        if pi and pi.get("created"):
            # Card authorizations are held for 7 days by default.
            created = _ts(pi["created"])
            if created is not None:
                return created + timedelta(days=7)
        return None

    def payment_intent_update(
        self, pi: Mapping[str, Any], *, payment_id: str | None = None, reference: str | None = None
    ) -> PaymentUpdate:
        """What a PaymentIntent says (sync without a session, capture responses)."""
        metadata = pi.get("metadata") or {}
        currency = (pi.get("currency") or "").upper() or None
        status_map = {
            "succeeded": PaymentStatus.SUCCEEDED,
            "requires_capture": PaymentStatus.AUTHORIZED,
            "canceled": PaymentStatus.CANCELED,
            "requires_action": PaymentStatus.REQUIRES_ACTION,
        }
        status = status_map.get(pi.get("status") or "", PaymentStatus.PROCESSING)
        error = pi.get("last_payment_error") or {}
        amount = pi.get("amount_received") if status == PaymentStatus.SUCCEEDED else None
        amount = amount or pi.get("amount")
        return PaymentUpdate(
            ref=PaymentRef(
                payment_id=payment_id or metadata.get("payment_id"),
                reference=reference,
                gateway_payment_id=pi.get("id"),
            ),
            status=status,
            amount=from_stripe_amount(amount, currency)
            if amount is not None and currency
            else None,
            currency=currency,
            gateway_payment_id=pi.get("id"),
            failure_code=None
            if status == PaymentStatus.SUCCEEDED
            else (error.get("decline_code") or error.get("code")),
            failure_message=None if status == PaymentStatus.SUCCEEDED else error.get("message"),
            payment_method=_card_details(_obj(pi.get("latest_charge"))),
            capture_deadline=self._capture_deadline(pi)
            if status == PaymentStatus.AUTHORIZED
            else None,
        )

    @staticmethod
    def refund_update(
        refund: Mapping[str, Any], charge: Mapping[str, Any] | None = None
    ) -> RefundUpdate:
        metadata = refund.get("metadata") or {}
        charge_meta = (charge or {}).get("metadata") or {}
        currency = (refund.get("currency") or (charge or {}).get("currency") or "").upper()
        pi_id = _id(refund.get("payment_intent")) or _id((charge or {}).get("payment_intent"))
        return RefundUpdate(
            ref=PaymentRef(
                payment_id=metadata.get("payment_id") or charge_meta.get("payment_id"),
                gateway_payment_id=pi_id,
            ),
            gateway_refund_id=refund["id"],
            amount=from_stripe_amount(int(refund.get("amount") or 0), currency),
            currency=currency,
            status=REFUND_STATUS.get(refund.get("status") or "", RefundStatus.PENDING),
            refund_id=metadata.get("refund_id") or None,
            reason=refund.get("reason"),
            failure_reason=refund.get("failure_reason"),
        )

    @staticmethod
    def dispute_update(dispute: Mapping[str, Any]) -> DisputeUpdate:
        currency = (dispute.get("currency") or "").upper()
        metadata = dispute.get("metadata") or {}
        evidence = dispute.get("evidence_details") or {}
        return DisputeUpdate(
            ref=PaymentRef(
                payment_id=metadata.get("payment_id"),
                gateway_payment_id=_id(dispute.get("payment_intent")),
            ),
            gateway_dispute_id=dispute["id"],
            amount=from_stripe_amount(int(dispute.get("amount") or 0), currency),
            currency=currency,
            status=DISPUTE_STATUS.get(dispute.get("status") or "", DisputeStatus.OPEN),
            gateway_status=dispute.get("status"),
            reason=dispute.get("reason"),
            evidence_due_by=_ts(evidence.get("due_by")),
        )

    # ------------------------------------------------------------------ webhooks
    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        header = _header(headers, "Stripe-Signature")
        if not header:
            raise SignatureError("missing Stripe-Signature header")
        try:
            text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else str(body)
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8") from None
        try:
            self._client.construct_event(text, header, self._webhook_secret, self._tolerance)
        except stripe.SignatureVerificationError as exc:
            raise SignatureError(f"bad Stripe signature: {exc.user_message}") from None
        except ValueError:
            raise SignatureError("signed body is not a Stripe event") from None
        # The SDK only rejects old timestamps; a future one is as suspicious.
        try:
            items = [part.split("=", 1) for part in header.split(",")]
            timestamp = int(next(v for k, *v in items if k == "t")[0])
        except (StopIteration, ValueError, IndexError):
            raise SignatureError("bad Stripe-Signature timestamp") from None
        if timestamp > time.time() + self._tolerance:
            raise SignatureError("Stripe-Signature timestamp is in the future")
        try:
            payload = json.loads(text)
        except ValueError:
            raise SignatureError("body is not JSON") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("id"), str)
            or not isinstance(payload.get("type"), str)
        ):
            raise SignatureError("signed body is not a Stripe event")
        return VerifiedEvent(event_id=payload["id"], event_type=payload["type"], payload=payload)

    def list_events(self, since: datetime) -> list[VerifiedEvent]:
        """Events of the handled types created at or after `since`, oldest first, each as
        a webhook delivers it (the Event object, redacted): reconciliation stores them
        through the inbox, so only the ones never delivered are applied.

        Stripe lists newest first; pages follow `starting_after` and stop after
        `events_max` events. When more exist, the oldest are left out and logged (a
        shorter RECONCILE_EVENTS_LOOKBACK_HOURS or a higher bound covers them).
        """
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        # Stripe takes at most 20 types per list: one listing per group of them.
        found: list[Mapping[str, Any]] = []
        for start in range(0, len(LISTED_EVENTS), EVENT_TYPES_PER_LIST):
            found += self._list_events_of(
                since, LISTED_EVENTS[start : start + EVENT_TYPES_PER_LIST]
            )
        events: list[VerifiedEvent] = []
        seen: set[str] = set()
        # Oldest first: applied in the order Stripe created them. A listing is newest first,
        # so it is turned round before the (stable) sort keeps same-second events in order.
        oldest_first = found[::-1]
        for item in sorted(oldest_first, key=lambda e: int(e.get("created") or 0)):
            event_id, event_type = item.get("id"), item.get("type")
            if not (isinstance(event_id, str) and isinstance(event_type, str)) or event_id in seen:
                continue
            seen.add(event_id)
            events.append(VerifiedEvent(event_id, event_type, redact(dict(item))))
        return events[-self._events_max :] if len(events) > self._events_max else events

    def _list_events_of(self, since: datetime, types: Sequence[str]) -> list[Mapping[str, Any]]:
        """One listing of these types since `since`, newest first, at most events_max."""
        params: EventListParams = {
            "created": {"gte": int(since.timestamp())},
            "types": list(types),
            "limit": min(EVENTS_PAGE_SIZE, self._events_max),
        }
        listed: list[Mapping[str, Any]] = []
        while True:
            page = self._call_raw(
                "events.list", lambda: self._client.v1.events.list(params=params.copy())
            )
            items = [e for e in page.get("data") or [] if isinstance(e, Mapping)]
            listed += items
            if not page.get("has_more") or not items:
                break
            if len(listed) >= self._events_max:
                log.warning(
                    "stripe events since %s: stopped after %s; older ones were not listed",
                    since.isoformat(),
                    len(listed),
                )
                break
            params["starting_after"] = str(items[-1].get("id"))
        return listed[: self._events_max]

    def interpret(self, event: VerifiedEvent) -> list[Update]:
        updates = self._interpret(event)
        return [self._enrich(update) for update in updates]

    def _interpret(self, event: VerifiedEvent) -> list[Update]:
        obj = ((event.payload.get("data") or {}).get("object")) or {}
        kind = event.event_type
        if kind not in HANDLED_EVENTS:
            return []
        if kind.startswith(SUBSCRIPTION_EVENT_PREFIXES) or obj.get("mode") == "subscription":
            return []  # subscription_events(): the subscription is re-fetched instead
        if obj.get("mode") == "setup":
            return self._setup_updates(kind, obj)
        if kind.startswith("checkout.session."):
            update = self.session_update(obj)
            if kind == "checkout.session.async_payment_succeeded":
                update = _replace_status(update, PaymentStatus.SUCCEEDED)
            elif kind == "checkout.session.async_payment_failed":
                update = _replace_status(update, PaymentStatus.FAILED)
            elif kind == "checkout.session.expired":
                update = _replace_status(update, PaymentStatus.EXPIRED)
            elif kind != "checkout.session.completed":
                return []
            return [update]
        if kind == "payment_intent.succeeded":
            # Checkout's payments are settled by the session's events; an off-session
            # charge (no session) is settled by its intent's.
            if obj.get("setup_future_usage") or not obj.get("customer"):
                return []
            return [self.payment_intent_update(obj)]
        if kind == "payment_intent.payment_failed":
            if _off_session_charge(obj):
                # A charge of a saved method (no session): its failure is an end, and an
                # authentication failed on the bank's page says so in plain words.
                return [self.charge_update(obj)]
            # Not terminal in Checkout: the session stays open and the customer may try
            # another card. Record why, keep the payment processing.
            update = self.payment_intent_update(obj)
            return [_replace_status(update, PaymentStatus.PROCESSING)]
        if kind == "payment_intent.canceled":
            # Only an authorization's end is news here: an intent canceled with a charge
            # that was never captured (voided in Stripe's dashboard, by us, or lapsed:
            # cancellation_reason "automatic"). One canceled without any charge is a
            # checkout closing, which the session's own events report.
            if not obj.get("latest_charge"):
                return []
            update = self.payment_intent_update(obj)
            lapsed = obj.get("cancellation_reason") == "automatic"
            return [
                replace(
                    update,
                    status=PaymentStatus.EXPIRED if lapsed else PaymentStatus.CANCELED,
                    authorization_ended=True,
                    payment_method=None,
                )
            ]
        if kind == "charge.expired":
            # An uncaptured charge whose authorization lapsed.
            if obj.get("captured"):
                return []
            metadata = obj.get("metadata") or {}
            currency = (obj.get("currency") or "").upper() or None
            pi_id = _id(obj.get("payment_intent"))
            return [
                PaymentUpdate(
                    ref=PaymentRef(payment_id=metadata.get("payment_id"), gateway_payment_id=pi_id),
                    status=PaymentStatus.EXPIRED,
                    amount=from_stripe_amount(obj["amount"], currency)
                    if obj.get("amount") is not None and currency
                    else None,
                    currency=currency,
                    gateway_payment_id=pi_id,
                    authorization_ended=True,
                )
            ]
        if kind == "charge.refunded":
            refunds = (obj.get("refunds") or {}).get("data") or []
            return [self.refund_update(r, obj) for r in refunds if isinstance(r, Mapping)]
        if kind in ("refund.created", "refund.updated", "refund.failed"):
            return [self.refund_update(obj)]
        if kind in ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"):
            return [self.dispute_update(obj)]
        return []

    def _setup_updates(self, kind: str, session: Mapping[str, Any]) -> list[Update]:
        """A completed setup session (mode=setup) of ours: the method its SetupIntent
        saved, read from Stripe (runs in the event job, like _enrich)."""
        customer_id = (session.get("metadata") or {}).get("customer_id")
        si_id = _id(session.get("setup_intent"))
        if kind != "checkout.session.completed" or not customer_id or not si_id:
            return []
        si = self._call(
            "setup_intent.retrieve",
            lambda: self._client.v1.setup_intents.retrieve(
                si_id, params={"expand": ["payment_method"]}
            ),
        )
        if si.get("status") != "succeeded":
            return []
        pm = _obj(si.get("payment_method"))
        if not pm:
            return []
        card = pm.get("card") or {}
        wallet = card.get("wallet") or {}
        saved = SavedMethod(
            token=str(pm["id"]),
            brand=card.get("brand"),
            last4=card.get("last4"),
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
            wallet=wallet.get("type") if isinstance(wallet, Mapping) else None,
            gateway_customer_id=_id(si.get("customer")) or _id(session.get("customer")),
        )
        return [
            MethodSetupUpdate(
                customer_id=str(customer_id), reference=str(session["id"]), saved_method=saved
            )
        ]

    def create_method_setup(self, request: MethodSetupRequest) -> MethodSetupSession:
        """A Checkout Session in setup mode: the customer enters a card on Stripe's page,
        it is saved on their Stripe customer without a payment (checkout.session.completed
        then names the SetupIntent). Dynamic payment methods need the currency."""
        customer_id = request.gateway_customer_id or self._create_customer_for(
            request.customer_email,
            request.customer_name,
            {"customer_id": request.customer_id},
            f"{request.idempotency_key}-customer",
        )
        metadata = {"customer_id": request.customer_id}
        params: SessionCreateParams = {
            "mode": "setup",
            "customer": customer_id,
            "currency": request.currency.lower(),
            "client_reference_id": request.customer_id,
            "metadata": metadata,
            "setup_intent_data": {"metadata": dict(metadata)},
            "success_url": self._success_url(request.success_url),
            "cancel_url": self._absolute(request.cancel_url),
        }
        session = self._call(
            "checkout.create_setup",
            lambda: self._client.v1.checkout.sessions.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        return MethodSetupSession(
            reference=str(session["id"]),
            redirect_url=str(session["url"]),
            gateway_customer_id=customer_id,
            expires_at=_ts(session.get("expires_at")),
        )

    def _enrich(self, update: Update) -> Update:
        """Fill in what an event's object does not carry, from the PaymentIntent.

        A dispute, or a refund made in Stripe's dashboard, names only the payment
        intent; its metadata names our payment, so the event matches even when it
        arrives before the one that told us the intent's id. A session event names its
        intent only by id; the intent's latest charge has the card brand and last 4, and
        its last payment error says why an async payment failed.
        Runs in the event job (never in the webhook request), so a failure here is
        retried with the job.
        """
        pi_id = update.ref.gateway_payment_id
        if not pi_id:
            return update
        if (
            isinstance(update, PaymentUpdate)
            and update.saved_method
            and not update.saved_method.token
        ):
            # The customer agreed to save the method: which one the intent was paid with,
            # read from the PaymentMethod (brand, last four, expiry; never the number).
            pi = self._payment_intent(pi_id)
            update = replace(
                update,
                saved_method=self._saved_method(pi, update.saved_method.gateway_customer_id),
                payment_method=update.payment_method
                or _card_details(_obj(pi.get("latest_charge"))),
            )
        if isinstance(update, PaymentUpdate):
            paid = update.status in (PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED)
            failed = update.status == PaymentStatus.FAILED
            if not ((paid and not update.payment_method) or (failed and not update.failure_code)):
                return update
            try:
                pi = self._payment_intent(pi_id)
            except GatewayError:
                return update  # details are a nicety; the status is what matters
            changes: dict[str, Any] = {}
            if paid:
                changes["payment_method"] = _card_details(_obj(pi.get("latest_charge")))
                if pi.get("status") == "requires_capture":
                    changes["status"] = PaymentStatus.AUTHORIZED
                    changes["capture_deadline"] = self._capture_deadline(pi)
            else:
                error = pi.get("last_payment_error") or {}
                changes["failure_code"] = error.get("decline_code") or error.get("code")
                changes["failure_message"] = error.get("message")
            return replace(update, **changes)
        if update.ref.payment_id:
            return update
        payment_id = self._payment_ids.get(pi_id)
        if payment_id is None:
            try:
                pi = self._payment_intent(pi_id)
            except GatewayError as exc:
                if exc.code == "not_found":
                    return update
                raise
            payment_id = (pi.get("metadata") or {}).get("payment_id")
            if not payment_id:
                return update  # not one of ours (made outside Kassa)
            if len(self._payment_ids) > 4096:
                self._payment_ids.clear()
            self._payment_ids[pi_id] = payment_id
        return replace(update, ref=replace(update.ref, payment_id=payment_id))

    def _payment_intent(self, pi_id: str) -> dict[str, Any]:
        return self._call(
            "payment_intent.retrieve",
            lambda: self._client.v1.payment_intents.retrieve(
                pi_id, params={"expand": ["latest_charge"]}
            ),
        )

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        redacted: dict[str, Any] = redact(payload)
        return redacted

    # ------------------------------------------------------------------ errors
    # ------------------------------------------------------------------ subscriptions
    def _price(self, request: SubscriptionRequest) -> tuple[str, str | None]:
        return self._price_for(request.plan)

    def _price_for(self, plan: PlanSpec) -> tuple[str, str | None]:
        """The plan's Price, created (with its Product) on first use; idempotent on the
        plan, so a retried start never makes a second one."""
        if plan.gateway_plan_id:
            return plan.gateway_plan_id, None
        product = self._call(
            "product.create",
            lambda: self._client.v1.products.create(
                params={"name": plan.name[:250], "metadata": {"plan_id": plan.plan_id}},
                options={"idempotency_key": f"kassa-product-{plan.plan_id}"},
            ),
        )
        price = self._call(
            "price.create",
            lambda: self._client.v1.prices.create(
                params={
                    "product": product["id"],
                    "currency": plan.currency.lower(),
                    "unit_amount": to_stripe_amount(plan.amount, plan.currency),
                    "recurring": {
                        "interval": plan.interval,
                        "interval_count": plan.interval_count,
                    },
                    "metadata": {"plan_id": plan.plan_id},
                },
                options={"idempotency_key": f"kassa-price-{plan.plan_id}"},
            ),
        )
        return str(price["id"]), str(product["id"])

    def create_subscription(self, request: SubscriptionRequest) -> SubscriptionCheckout:
        price_id, product_id = self._price(request)
        metadata = {"subscription_id": request.subscription_id}
        data: SessionCreateParamsSubscriptionData = {"metadata": dict(metadata)}
        if request.trial_days:
            data["trial_period_days"] = request.trial_days
        params: SessionCreateParams = {
            "mode": "subscription",
            "line_items": [{"price": price_id, "quantity": 1}],
            "client_reference_id": request.subscription_id,
            "metadata": metadata,
            "subscription_data": data,
            "success_url": self._absolute(request.success_url),
            "cancel_url": self._absolute(request.cancel_url),
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        session = self._call(
            "checkout.create_subscription",
            lambda: self._client.v1.checkout.sessions.create(
                params=params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        return SubscriptionCheckout(
            reference=session["id"],
            redirect_url=session["url"],
            gateway_plan_id=price_id,
            gateway_product_id=product_id,
        )

    def _subscription_id(self, ref: SubscriptionRef) -> str | None:
        if ref.gateway_subscription_id:
            return ref.gateway_subscription_id
        if ref.reference:
            session = self._call(
                "checkout.retrieve",
                lambda: self._client.v1.checkout.sessions.retrieve(ref.reference or ""),
            )
            return _id(session.get("subscription"))
        return None

    def retrieve_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        sub_id = self._subscription_id(ref)
        if sub_id is None:  # the customer has not finished the checkout yet
            return SubscriptionSnapshot(
                ref=ref, status=SubscriptionStatus.INCOMPLETE, gateway_status="checkout_open"
            )
        sub = self._call(
            "subscription.retrieve",
            lambda: self._client.v1.subscriptions.retrieve(
                sub_id, params={"expand": ["latest_invoice"]}
            ),
        )
        invoices = self._call(
            "invoice.list",
            lambda: self._client.v1.invoices.list(
                params={
                    "subscription": sub_id,
                    "status": "paid",
                    "limit": 100,
                    "expand": ["data.payments"],
                }
            ),
        )
        return self.subscription_snapshot(sub, invoices.get("data") or [], ref)

    @staticmethod
    def subscription_snapshot(
        sub: Mapping[str, Any], paid: list[Any], ref: SubscriptionRef | None = None
    ) -> SubscriptionSnapshot:
        """A Stripe subscription (and its paid invoices) in the port's words. Periods are
        on the items since API version 2025-03-31; older versions had them at the top."""
        items = ((sub.get("items") or {}).get("data")) or [{}]
        item = items[0] if isinstance(items[0], Mapping) else {}
        start = item.get("current_period_start", sub.get("current_period_start"))
        end = item.get("current_period_end", sub.get("current_period_end"))
        latest = _obj(sub.get("latest_invoice")) or {}
        status = str(sub.get("status") or "incomplete")
        meta = sub.get("metadata") or {}
        return SubscriptionSnapshot(
            ref=SubscriptionRef(
                subscription_id=meta.get("subscription_id")
                or (ref.subscription_id if ref else None),
                reference=ref.reference if ref else None,
                gateway_subscription_id=str(sub["id"]),
            ),
            status=SUBSCRIPTION_STATUS.get(status, SubscriptionStatus.INCOMPLETE),
            gateway_status=status,
            gateway_customer_id=_id(sub.get("customer")),
            current_period_start=_ts(start),
            current_period_end=_ts(end),
            cancel_at=_ts(sub.get("cancel_at")),
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
            canceled_at=_ts(sub.get("canceled_at")),
            ended_at=_ts(sub.get("ended_at")),
            trial_end=_ts(sub.get("trial_end")),
            latest_invoice_id=_id(sub.get("latest_invoice")),
            latest_invoice_status=latest.get("status"),
            next_payment_attempt=_ts(latest.get("next_payment_attempt")),
            paid_invoices=tuple(
                _invoice(inv) for inv in paid if isinstance(inv, Mapping) and inv.get("id")
            ),
        )

    def cancel_subscription(
        self, ref: SubscriptionRef, *, at_period_end: bool
    ) -> SubscriptionSnapshot:
        sub_id = self._subscription_id(ref)
        if sub_id is None:
            raise GatewayError("invalid_request", "This subscription has not started yet.")
        if at_period_end:
            self._call(
                "subscription.update",
                lambda: self._client.v1.subscriptions.update(
                    sub_id, params={"cancel_at_period_end": True}
                ),
            )
        else:
            self._call("subscription.cancel", lambda: self._client.v1.subscriptions.cancel(sub_id))
        return self.retrieve_subscription(ref)

    def resume_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot:
        sub_id = self._subscription_id(ref)
        if sub_id is None:
            raise GatewayError("invalid_request", "This subscription has not started yet.")
        self._call(
            "subscription.update",
            lambda: self._client.v1.subscriptions.update(
                sub_id, params={"cancel_at_period_end": False}
            ),
        )
        return self.retrieve_subscription(ref)

    def change_plan(self, ref: SubscriptionRef, plan: PlanSpec) -> SubscriptionSnapshot:
        """The subscription's one item moves to the new Price; Stripe prorates the rest of
        the period (credited or charged on the next invoice)."""
        sub_id = self._subscription_id(ref)
        if sub_id is None:
            raise GatewayError("invalid_request", "This subscription has not started yet.")
        price_id, _ = self._price_for(plan)
        sub = self._call(
            "subscription.retrieve", lambda: self._client.v1.subscriptions.retrieve(sub_id)
        )
        item_id = str(((sub.get("items") or {}).get("data") or [{}])[0].get("id"))
        self._call(
            "subscription.update",
            lambda: self._client.v1.subscriptions.update(
                sub_id,
                params={
                    "items": [{"id": item_id, "price": price_id}],
                    "proration_behavior": "create_prorations",
                },
            ),
        )
        return self.retrieve_subscription(ref)

    def billing_portal_url(self, ref: SubscriptionRef, return_url: str) -> str:
        sub_id = self._subscription_id(ref)
        if sub_id is None:
            raise GatewayError("invalid_request", "This subscription has not started yet.")
        sub = self._call(
            "subscription.retrieve", lambda: self._client.v1.subscriptions.retrieve(sub_id)
        )
        portal = self._call(
            "billing_portal.create",
            lambda: self._client.v1.billing_portal.sessions.create(
                params={"customer": str(_id(sub.get("customer"))), "return_url": return_url}
            ),
        )
        return str(portal["url"])

    def subscription_events(self, event: VerifiedEvent) -> list[SubscriptionEvent]:
        obj = ((event.payload.get("data") or {}).get("object")) or {}
        kind = event.event_type
        if kind.startswith("customer.subscription."):
            meta = obj.get("metadata") or {}
            ref = SubscriptionRef(
                subscription_id=meta.get("subscription_id"),
                gateway_subscription_id=_id(obj.get("id")),
            )
        elif kind.startswith("invoice."):
            details = (obj.get("parent") or {}).get("subscription_details") or {}
            sub_id = _id(details.get("subscription")) or _id(obj.get("subscription"))
            if sub_id is None:
                return []  # a one-off invoice
            meta = details.get("metadata") or {}
            ref = SubscriptionRef(
                subscription_id=meta.get("subscription_id"), gateway_subscription_id=sub_id
            )
        elif kind == "checkout.session.completed" and obj.get("mode") == "subscription":
            ref = SubscriptionRef(
                subscription_id=(obj.get("metadata") or {}).get("subscription_id"),
                reference=_id(obj.get("id")),
                gateway_subscription_id=_id(obj.get("subscription")),
            )
        else:
            return []
        return [SubscriptionEvent(ref=ref, event_type=kind)]

    def _call(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """The SDK's answer as plain dicts, its errors as GatewayErrors."""
        return _plain(self._call_object(what, fn))

    def _call_object(self, what: str, fn: Callable[[], Any]) -> Any:
        """The SDK's answer as it is (an object read in place), its errors as GatewayErrors."""
        try:
            return fn()
        except stripe.StripeError as exc:
            raise self._translate(what, exc) from None

    def _call_raw(self, what: str, fn: Any) -> dict[str, Any]:
        """Like _call, but the response's JSON exactly as Stripe sent it (list pages: the
        events in them are stored as delivered, untouched by the SDK's object model)."""
        try:
            result = fn()
        except stripe.StripeError as exc:
            raise self._translate(what, exc) from None
        raw = getattr(getattr(result, "last_response", None), "data", None)
        if isinstance(raw, dict):
            return raw
        plain: dict[str, Any] = result.to_dict(for_json=True)
        return plain

    @staticmethod
    def _translate(what: str, exc: stripe.StripeError) -> GatewayError:
        status = exc.http_status
        stripe_code = getattr(exc, "code", None)
        headers = exc.headers or {}
        should_retry = headers.get("stripe-should-retry") or headers.get("Stripe-Should-Retry")
        decline_code = None
        if isinstance(exc, stripe.CardError):
            decline_code = exc.error.decline_code if exc.error else None
            code = "card_declined"
            message = exc.user_message or USER_MESSAGES[code]
            retryable = False
        elif isinstance(exc, stripe.IdempotencyError):
            code, retryable = "idempotency_conflict", False
        elif isinstance(exc, stripe.InvalidRequestError):
            code = (
                "not_found"
                if status == 404 or stripe_code == "resource_missing"
                else "invalid_request"
            )
            retryable = False
        elif isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            code, retryable = "authentication_failed", False
        elif isinstance(exc, stripe.RateLimitError):
            code, retryable = "rate_limited", True
        elif isinstance(exc, stripe.APIConnectionError):
            code, retryable = "gateway_unavailable", True
        else:
            code = "gateway_unavailable"
            # Same rule as the SDK's own retries: Stripe's header decides, else 409/5xx.
            if should_retry is not None:
                retryable = should_retry == "true"
            else:
                retryable = status is not None and (status == 409 or status >= 500)
        if code != "card_declined":
            message = USER_MESSAGES[code]
        log.warning(
            "stripe %s failed: %s (%s) http=%s stripe_code=%s decline=%s request=%s retryable=%s",
            what,
            code,
            type(exc).__name__,
            status,
            stripe_code,
            decline_code,
            getattr(exc, "request_id", None),
            retryable,
        )
        return GatewayError(
            code, message, retryable=retryable, http_status=status, decline_code=decline_code
        )


def _invoice(inv: Mapping[str, Any]) -> InvoiceSnapshot:
    """A paid invoice: its charge is under `payments` (API 2025-03-31 on) or, before,
    `payment_intent`."""
    pi = _id(inv.get("payment_intent"))
    for payment in ((inv.get("payments") or {}).get("data")) or []:
        if isinstance(payment, Mapping) and payment.get("status") == "paid":
            pi = _id((payment.get("payment") or {}).get("payment_intent")) or pi
    currency = str(inv.get("currency") or "").upper()
    lines = ((inv.get("lines") or {}).get("data")) or [{}]
    period = (lines[0] or {}).get("period") or {}
    return InvoiceSnapshot(
        invoice_id=str(inv["id"]),
        amount=from_stripe_amount(int(inv.get("amount_paid") or 0), currency),
        currency=currency,
        gateway_payment_id=pi,
        reference=None,
        period_start=_ts(period.get("start", inv.get("period_start"))),
        period_end=_ts(period.get("end", inv.get("period_end"))),
    )


def _off_session_charge(pi: Mapping[str, Any]) -> bool:
    """A PaymentIntent Kassa made to charge a saved method (charge_saved_method): on a
    customer, naming our payment, not Checkout's (which saves with setup_future_usage)."""
    return bool(
        pi.get("customer")
        and not pi.get("setup_future_usage")
        and (pi.get("metadata") or {}).get("payment_id")
    )


def _replace_status(update: PaymentUpdate, status: PaymentStatus) -> PaymentUpdate:
    if status in (PaymentStatus.SUCCEEDED,):
        return replace(update, status=status, failure_code=None, failure_message=None)
    return replace(update, status=status)
