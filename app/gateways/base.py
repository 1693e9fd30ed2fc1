"""The gateway port: a small protocol and plain value types.

Only app/gateways/<name>.py imports a gateway SDK. The core sees these types:
it asks an adapter to create a hosted checkout, to retrieve the truth about a
payment, to refund, to capture, and to verify and interpret webhooks. Adapters
translate everything gateway-specific (amount forms, status words, event types)
into the updates below, which the core applies through its state machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus, SubscriptionStatus


class GatewayCode(StrEnum):
    """Kassa's gateway error codes: what an adapter's GatewayError says went wrong. Each
    carries what pages, the API and jobs make of it (its facts, below)."""

    CARD_DECLINED = "card_declined"
    PAYMENT_FAILED = "payment_failed"
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION_FAILED = "authentication_failed"  # our credentials
    RATE_LIMITED = "rate_limited"  # the gateway throttles us
    GATEWAY_UNAVAILABLE = "gateway_unavailable"  # connection, 5xx, timeout, breaker open
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    NOT_FOUND = "not_found"

    @property
    def http_status(self) -> int:
        """The status Kassa answers with (pages and the API alike)."""
        return _CODE_FACTS[self].http_status

    @property
    def api_code(self) -> str:
        """The JSON API's error code."""
        return _CODE_FACTS[self].api_code

    @property
    def transient(self) -> bool:
        """The gateway struggles (the breaker counts it; a retry may succeed)."""
        return _CODE_FACTS[self].transient

    def customer_message(self, gateway_message: str) -> str:
        """What a customer is told when a checkout fails with this code."""
        return _CODE_FACTS[self].customer_message or gateway_message


@dataclass(frozen=True, slots=True)
class _CodeFacts:
    http_status: int
    api_code: str
    customer_message: str | None  # None: the gateway's own words (a decline reason)
    transient: bool = False


_TRY_AGAIN = "We could not start the payment. Please try again, or choose another method."
_NOT_ANSWERING = "The payment provider is not answering right now. Please try again in a minute."
_CODE_FACTS = {
    GatewayCode.CARD_DECLINED: _CodeFacts(402, "card_declined", None),
    GatewayCode.PAYMENT_FAILED: _CodeFacts(402, "payment_failed", None),
    GatewayCode.INVALID_REQUEST: _CodeFacts(502, "gateway_error", _TRY_AGAIN),
    GatewayCode.AUTHENTICATION_FAILED: _CodeFacts(502, "gateway_error", _TRY_AGAIN),
    # Throttled by the gateway: for an integrator that is the gateway being unavailable
    # (the API's own 429 "rate_limited" means *they* are sending too much).
    GatewayCode.RATE_LIMITED: _CodeFacts(503, "gateway_unavailable", _NOT_ANSWERING, True),
    GatewayCode.GATEWAY_UNAVAILABLE: _CodeFacts(503, "gateway_unavailable", _NOT_ANSWERING, True),
    GatewayCode.IDEMPOTENCY_CONFLICT: _CodeFacts(409, "gateway_error", _TRY_AGAIN),
    GatewayCode.NOT_FOUND: _CodeFacts(404, "gateway_error", _TRY_AGAIN),
}


def gateway_code(code: str) -> GatewayCode:
    """The GatewayCode for an error's code; an unknown one counts as an invalid request."""
    try:
        return GatewayCode(code)
    except ValueError:
        return GatewayCode.INVALID_REQUEST


class GatewayError(Exception):
    """A gateway call failed. `code` is one of Kassa's error codes (GatewayCode).

    `retryable` is True only when the gateway says a retry with the same
    idempotency key is safe.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.http_status = http_status
        self.decline_code = decline_code


# The Gateway methods that go over the network (the rest is local work): what resilience
# retries and what a request waits for outside the worker's line (app/serving/admission.py).
NETWORK_CALLS = (
    "create_checkout",
    "retrieve",
    "confirm_return",
    "cancel_checkout",
    "refund",
    "capture",
    "void_payment",
    "list_events",
    "retrieve_refund",
    "charge_saved_method",
    "detach_method",
    "start_authentication",
    "create_method_setup",
    "create_subscription",
    "retrieve_subscription",
    "cancel_subscription",
    "resume_subscription",
    "billing_portal_url",
    "change_plan",
    "confirm_subscription_return",
)


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong, or outside the time tolerance."""


class ReturnRejected(Exception):
    """A browser return proven false, not merely unproven: its signature does not verify
    with our secret, or it names a gateway payment that belongs to another order. The
    core answers it as a 400 and changes nothing (the genuine return may still come)."""


@dataclass(frozen=True, slots=True)
class LineItem:
    name: str
    unit_amount: int  # minor units
    quantity: int


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """Everything an adapter needs to open a hosted checkout for one payment attempt."""

    payment_id: str  # our public payment id (pay_...)
    order_id: str  # our public order id (ord_...)
    amount: int  # minor units; equals the sum of line items
    currency: str  # ISO 4217, upper case (adapters convert to their form)
    line_items: tuple[LineItem, ...]
    customer_email: str
    customer_name: str
    success_url: str  # may contain {CHECKOUT_SESSION_ID} for Stripe-style gateways
    cancel_url: str
    idempotency_key: str  # stable per attempt: a retried create never makes a second one
    expires_at: datetime
    capture_method: str = "automatic"  # or "manual"
    description: str = ""
    # The customer agreed to save the method for later charges (off-session).
    save_payment_method: bool = False
    # The gateway's id for this customer, when Kassa knows it already.
    gateway_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """A payment method the gateway saved for later charges: its token and what is safe to
    show. Never card data."""

    token: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    wallet: str | None = None
    gateway_customer_id: str | None = None
    # A wallet's account (PayPal: the payer's email), shown so the customer knows which.
    account_email: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """Charge a saved method off-session (the customer is not there)."""

    payment_id: str  # ours (pay_...)
    order_id: str  # ours (ord_...)
    amount: int
    currency: str
    token: str  # SavedMethod.token
    gateway_customer_id: str | None
    description: str
    idempotency_key: str  # from the committed attempt
    return_url: str  # where an authentication the customer completes comes back to
    customer_email: str = ""  # the customer's, for gateways that ask (Razorpay recurring)


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What an off-session charge came to: the update to apply and, when the bank wants the
    customer to authenticate (status requires_action), the gateway page that does it."""

    update: PaymentUpdate
    reference: str
    action_url: str | None = None


@dataclass(frozen=True, slots=True)
class AuthenticationRequest:
    """The customer is back (on-session) to authenticate a charge that waits for them."""

    payment_id: str  # ours (pay_...)
    gateway_payment_id: str  # the gateway's payment (Stripe: the PaymentIntent)
    token: str  # the saved method being charged (SavedMethod.token)
    return_url: str  # where the gateway sends the customer after their bank's page
    idempotency_key: str  # stable per payment: a second visit never confirms twice


@dataclass(frozen=True, slots=True)
class AuthenticationStart:
    """What confirming on-session came to: the bank's page to send the customer to
    (redirect_url), and the payment as the gateway now has it (applied through the state
    machine; with no redirect_url it is final news, e.g. authenticated without a challenge)."""

    update: PaymentUpdate
    redirect_url: str | None = None


@dataclass(frozen=True, slots=True)
class MethodSetupRequest:
    """Save a customer's payment method without paying (Stripe Checkout mode=setup)."""

    customer_id: str  # ours (cus_...)
    customer_email: str
    customer_name: str
    gateway_customer_id: str | None  # known already, or None: the adapter creates one
    currency: str  # ISO 4217, upper case: the currency later charges will be in
    success_url: str
    cancel_url: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class MethodSetupSession:
    reference: str  # the gateway's id for the setup (Stripe: the Checkout Session)
    redirect_url: str  # the gateway's page where the customer enters the method
    gateway_customer_id: str | None = None  # created on demand: the core keeps it
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    reference: str  # gateway's id for the checkout (session id / order id)
    redirect_url: str  # where to send the customer's browser (303)
    expires_at: datetime | None = None
    # The gateway customer the checkout saves the method on, when the adapter made or
    # found one (Razorpay: its checkout page needs it); the core keeps it.
    gateway_customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentRef:
    """How an update names its payment: any of these may be known."""

    payment_id: str | None = None  # ours, from metadata / receipt
    reference: str | None = None  # gateway checkout reference
    gateway_payment_id: str | None = None  # payment intent / payment id


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    """What the gateway says about a payment. Applied through the state machine."""

    ref: PaymentRef
    status: PaymentStatus
    amount: int | None = None  # as the gateway sees it (checked against ours)
    currency: str | None = None  # upper case
    gateway_payment_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    payment_method: Mapping[str, Any] | None = None  # brand, last4, vpa...: safe fields only
    capture_deadline: datetime | None = None
    # With status CANCELED or EXPIRED: an authorization ended (voided by the merchant or
    # the gateway, or lapsed), news from after it, unlike a checkout's own cancel/expiry.
    authorization_ended: bool = False
    # The method the gateway saved with this payment (the customer agreed at checkout).
    saved_method: SavedMethod | None = None


@dataclass(frozen=True, slots=True)
class RefundUpdate:
    ref: PaymentRef
    gateway_refund_id: str
    amount: int
    currency: str
    status: RefundStatus
    refund_id: str | None = None  # ours (rfd_...), from metadata / notes
    reason: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class DisputeUpdate:
    ref: PaymentRef
    gateway_dispute_id: str
    amount: int
    currency: str
    status: DisputeStatus
    gateway_status: str | None = None
    reason: str | None = None
    evidence_due_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class MethodSetupUpdate:
    """A method setup finished at the gateway (no payment): save `saved_method` for our
    customer `customer_id`, once. `ref` names no payment (the inbox links none)."""

    customer_id: str  # ours (cus_...), from the setup's metadata
    reference: str  # the setup's id at the gateway
    saved_method: SavedMethod
    ref: PaymentRef = field(default_factory=PaymentRef)


Update = PaymentUpdate | RefundUpdate | DisputeUpdate | MethodSetupUpdate


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """A webhook whose signature checked out. `payload` is the parsed body."""

    event_id: str
    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str  # ours (rfd_...)
    payment_id: str  # ours (pay_...)
    reference: str | None  # gateway checkout reference
    gateway_payment_id: str | None
    amount: int
    currency: str
    reason: str | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    gateway_refund_id: str
    status: RefundStatus
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    payment_id: str
    reference: str | None
    gateway_payment_id: str | None
    amount: int
    currency: str
    idempotency_key: str


@dataclass(slots=True)
class ReturnParams:
    """What the browser brought back to a return URL: a hint, never proof."""

    args: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Gateway(Protocol):
    name: str  # "sandbox", "stripe", "razorpay"
    display_name: str  # shown to customers

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """Open a hosted checkout. Must be idempotent on request.idempotency_key."""
        ...

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        """Ask the gateway for the truth about one payment (sync, return pages, reconcile)."""
        ...

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        """Called when the browser lands on the success URL.

        Return a verified update (re-fetched from the gateway, never read from the URL),
        or None to wait for the webhook.
        """
        ...

    def cancel_checkout(self, ref: PaymentRef) -> None:
        """Close an open checkout so it can no longer be paid (expire the session)."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund all or part of a captured payment. Idempotent on request.idempotency_key."""
        ...

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        """Capture an authorized payment (manual capture)."""
        ...

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """Check the signature over the raw body; raise SignatureError if it fails."""
        ...

    def interpret(self, event: VerifiedEvent) -> list[Update]:
        """Translate a verified event into updates; [] for types we only store."""
        ...

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Remove secrets (client secrets and the like) before the payload is stored."""
        ...


@runtime_checkable
class PagedCheckout(Protocol):
    """Optional: a gateway whose checkout opens from a page of ours with the gateway's script
    (Razorpay Standard Checkout): the options the script opens it with (no secrets)."""

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
    ) -> dict[str, Any]: ...


@runtime_checkable
class VoidsAuthorizations(Protocol):
    """Optional: a gateway that can release an authorization without capturing it
    (Stripe: cancel the PaymentIntent; PayPal: void the authorization). The answer is the
    payment as the gateway now has it: canceled, with authorization_ended set."""

    def void_payment(self, request: CaptureRequest) -> PaymentUpdate: ...


@runtime_checkable
class SavesMethods(Protocol):
    """Optional: a gateway that saves payment methods at checkout and charges them later
    off-session (issue 18)."""

    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        """Charge a saved method without the customer. Idempotent on
        request.idempotency_key. A decline raises GatewayError; authentication required
        answers status requires_action with an action_url."""
        ...

    def detach_method(self, token: str) -> None:
        """Remove a saved method at the gateway (it can never be charged again)."""
        ...


@runtime_checkable
class AuthenticatesCharges(Protocol):
    """Optional: a gateway whose waiting charge is authenticated by confirming it again
    with the customer present (Stripe: confirm the PaymentIntent with a return_url; the
    answer's next_action redirect_to_url is the bank's page)."""

    def start_authentication(self, request: AuthenticationRequest) -> AuthenticationStart: ...


@runtime_checkable
class SetsUpMethods(Protocol):
    """Optional: a gateway that saves a payment method without a payment (Stripe Checkout
    mode=setup); its webhook then gives a MethodSetupUpdate."""

    def create_method_setup(self, request: MethodSetupRequest) -> MethodSetupSession: ...


@runtime_checkable
class ListsEvents(Protocol):
    """Optional: a gateway that can list its recent events (Stripe's /v1/events).

    Reconciliation feeds them through the inbox's insert-or-ignore path, so events that
    were delivered already are skipped and any that never arrived are applied.
    """

    def list_events(self, since: datetime) -> list[VerifiedEvent]: ...


@runtime_checkable
class RetrievesRefunds(Protocol):
    """Optional: ask the gateway for one refund's current state (reconciliation)."""

    def retrieve_refund(self, ref: PaymentRef, gateway_refund_id: str) -> RefundUpdate: ...


# --- subscriptions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A recurring price, as an adapter creates it at its gateway (on demand)."""

    plan_id: str  # ours (plan_...)
    name: str
    amount: int  # minor units, per interval
    currency: str
    interval: str  # day, week, month, year
    interval_count: int
    gateway_plan_id: str | None = None  # Stripe Price / Razorpay Plan id, once created


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """Start a subscription: the customer is sent to the gateway's checkout."""

    subscription_id: str  # ours (sub_...)
    plan: PlanSpec
    customer_email: str
    customer_name: str
    trial_days: int
    success_url: str
    cancel_url: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class SubscriptionCheckout:
    reference: str  # the checkout (Stripe session id) or the subscription id itself
    redirect_url: str
    gateway_subscription_id: str | None = None  # known at once for Razorpay and the sandbox
    gateway_plan_id: str | None = None  # created on demand: the core keeps it on the plan
    gateway_product_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRef:
    subscription_id: str | None = None  # ours, from metadata / notes
    reference: str | None = None  # the checkout that started it
    gateway_subscription_id: str | None = None


@dataclass(frozen=True, slots=True)
class InvoiceSnapshot:
    """One paid period: becomes one payment (refundable like any other)."""

    invoice_id: str
    amount: int
    currency: str
    gateway_payment_id: str | None  # the charge to refund (payment intent / payment id)
    reference: str | None  # what the adapter's refund looks the payment up by
    period_start: datetime | None
    period_end: datetime | None
    paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    """A subscription exactly as its gateway has it now (from a re-fetch, never an event)."""

    ref: SubscriptionRef
    status: SubscriptionStatus
    gateway_status: str
    customer_email: str | None = None
    gateway_customer_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    trial_end: datetime | None = None
    latest_invoice_id: str | None = None
    latest_invoice_status: str | None = None
    next_payment_attempt: datetime | None = None
    paid_invoices: tuple[InvoiceSnapshot, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscriptionEvent:
    """An event said something about a subscription: the core re-fetches it (the event's
    own copy may be older than another event already applied)."""

    ref: SubscriptionRef
    event_type: str


@runtime_checkable
class Subscriptions(Protocol):
    """Optional: a gateway with recurring billing (Stripe Billing, Razorpay, the sandbox)."""

    def create_subscription(self, request: SubscriptionRequest) -> SubscriptionCheckout: ...

    def retrieve_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot: ...

    def cancel_subscription(
        self, ref: SubscriptionRef, *, at_period_end: bool
    ) -> SubscriptionSnapshot: ...

    def resume_subscription(self, ref: SubscriptionRef) -> SubscriptionSnapshot: ...

    def billing_portal_url(self, ref: SubscriptionRef, return_url: str) -> str:
        """Where the customer updates their payment method."""
        ...

    def change_plan(self, ref: SubscriptionRef, plan: PlanSpec) -> SubscriptionSnapshot:
        """Move the subscription to another price, prorated where the gateway can."""
        ...

    def subscription_events(self, event: VerifiedEvent) -> list[SubscriptionEvent]:
        """Which subscriptions a verified event is about ([] for none)."""
        ...


@runtime_checkable
class PagedSubscriptionCheckout(Protocol):
    """Optional: a gateway whose subscription is authorised on a page of ours with the
    gateway's script (Razorpay Checkout with `subscription_id`), and whose callback is
    verified by signature before the subscription is re-fetched."""

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
    ) -> dict[str, Any]: ...

    def confirm_subscription_return(
        self, ref: SubscriptionRef, params: ReturnParams
    ) -> SubscriptionSnapshot:
        """Verify the callback against our stored subscription id (ReturnRejected when it
        does not verify), then answer the re-fetched subscription."""
        ...


@runtime_checkable
class LimitsSubscriptionChanges(Protocol):
    """Optional: a gateway that cannot make every change (Razorpay cannot undo a
    cancellation). Local work: asked before anything is written or sent."""

    def unsupported_change(
        self, what: str, status: SubscriptionStatus, cancel_at_period_end: bool
    ) -> str | None:
        """Why `what` ("resume", "change_plan", ...) cannot be done, or None."""
        ...
