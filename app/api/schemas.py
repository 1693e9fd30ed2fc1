"""Request and response schemas of the JSON API (pydantic v2).

The same models validate requests, serialise responses and generate the OpenAPI
document (app/api/openapi.py), so the document can never drift from the code.
Request models forbid unknown fields; every error names its field by path.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from app.inputs import CONTROL_CLASS, SPACE_CLASS, utc_representable
from app.models.enums import OrderStatus, PlanInterval, RefundStatus, SubscriptionStatus
from app.security import is_allowed_return_url

ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
# Patterns mean the same to JSON Schema (ECMA-262) and to pydantic (Rust regex): explicit
# classes only, no \s (ECMA's includes U+FEFF, Rust's does not).
EMAIL_PATTERN = rf"^[^@{CONTROL_CLASS}{SPACE_CLASS}]+@[^@{CONTROL_CLASS}{SPACE_CLASS}]+$"
NAME_PATTERN = rf"^[^{CONTROL_CLASS}]*[^{CONTROL_CLASS}{SPACE_CLASS}][^{CONTROL_CLASS}]*$"


def _integral_float(value: Any) -> Any:
    """JSON Schema's `integer` includes 3798900.0 (a number with a zero fraction): take it
    as the integer it is. 1.5 stays a float and is refused as `int_type`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer in a JSON body, as JSON Schema defines one.
JsonInt = Annotated[int, BeforeValidator(_integral_float)]


def _in_utc_range(value: datetime) -> datetime:
    if not utc_representable(value):
        raise ValueError("must be between 0001-01-01 and 9999-12-31 in UTC")
    return value


# An aware date-time that can be compared with stored (UTC) times.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class Request(BaseModel):
    """Base of request bodies and query strings: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class CheckoutItem(Request):
    sku: str = Field(min_length=1, max_length=64, examples=["tee-usd"])
    quantity: JsonInt = Field(ge=1, le=99, examples=[1])


class Customer(Request):
    email: str = Field(
        min_length=3, max_length=254, pattern=EMAIL_PATTERN, examples=["ada@example.com"]
    )
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["Ada Lovelace"])


def _check_return_url(value: str | None) -> str | None:
    """Only absolute http(s) URLs on our public host or an ALLOWED_RETURN_HOSTS host (the
    one check: app/security.is_allowed_return_url)."""
    if value is None or is_allowed_return_url(value):
        return value
    raise ValueError(
        "must be an absolute http(s) URL (https when the store is) on the store's host or "
        "an ALLOWED_RETURN_HOSTS host, without credentials"
    )


class CheckoutSessionCreate(Request):
    """Start a purchase of catalog items: creates the order and its first payment attempt."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [{"sku": "tee-usd", "quantity": 1}],
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                }
            ]
        },
    )

    items: list[CheckoutItem] = Field(min_length=1, max_length=20)
    customer: Customer
    gateway: str | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        pattern=r"^[a-z0-9_]+$",
        description="stripe, razorpay, paypal or sandbox (when active); defaults to the "
        "first active gateway.",
    )
    success_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the gateway sends the customer after paying. Must be on our "
        "public host or an allowed host. May contain {CHECKOUT_SESSION_ID}.",
    )
    cancel_url: str | None = Field(default=None, max_length=2000)
    save_payment_method: bool = Field(
        default=False,
        description="The customer agreed to save the payment method for future purchases "
        "(charged later with POST /payments/charge). Show them the consent text first.",
    )

    @field_validator("success_url", "cancel_url")
    @classmethod
    def _allowed_host(cls, value: str | None) -> str | None:
        return _check_return_url(value)


class PaymentLinkCreate(Request):
    """A payment link for a catalog product (`sku`, `quantity`) or a custom `amount` in
    `currency` with its `description`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"description": "Deposit for order 1042", "amount": 5000, "currency": "USD"}
            ]
        },
    )

    description: str = Field(min_length=1, max_length=200)
    sku: str | None = Field(default=None, min_length=1, max_length=64)
    quantity: JsonInt = Field(default=1, ge=1, le=99)
    amount: JsonInt | None = Field(default=None, ge=1, le=10**10, description="Minor units.")
    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    reusable: bool = Field(default=False, description="Any number of customers may pay it.")
    expires_at: UtcDatetime | None = None


class RazorpayErrorMetadata(Request):
    order_id: str | None = Field(default=None, max_length=255)
    payment_id: str | None = Field(default=None, max_length=255)


class RazorpayError(Request):
    """Razorpay Checkout's `payment.failed` handler argument (`response.error`)."""

    code: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=1000)
    source: str | None = Field(default=None, max_length=255)
    step: str | None = Field(default=None, max_length=255)
    reason: str | None = Field(default=None, max_length=255)
    metadata: RazorpayErrorMetadata | None = None


class PaymentConfirm(Request):
    """What the browser got back from the gateway. A hint: it is verified with the gateway."""

    session_id: str | None = Field(
        default=None, max_length=255, description="Stripe Checkout Session id (or sandbox session)."
    )
    razorpay_payment_id: str | None = Field(default=None, max_length=255)
    razorpay_order_id: str | None = Field(default=None, max_length=255)
    razorpay_signature: str | None = Field(default=None, max_length=255)
    paypal_order_id: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9-]+$",
        description="PayPal order id (the `token` PayPal appends to the return URL). Kassa "
        "reads the order from PayPal and captures (or authorizes) it with the attempt's "
        "PayPal-Request-Id; an id that is not this attempt's order changes nothing.",
    )
    error: RazorpayError | None = Field(
        default=None,
        description="Razorpay's failure handler fields (unsigned: the payment "
        "they name is fetched from Razorpay).",
    )

    def gateway_args(self) -> dict[str, str]:
        """The fields as the gateway's return parameters (Razorpay's form names)."""
        args = self.model_dump(exclude_none=True, exclude={"error", "paypal_order_id"})
        if self.paypal_order_id is not None:
            args["token"] = self.paypal_order_id  # the name PayPal's return URL uses
        if self.error is not None:
            for name, value in self.error.model_dump(
                exclude_none=True, exclude={"metadata"}
            ).items():
                args[f"error[{name}]"] = value
            if self.error.metadata is not None:
                for name, value in self.error.metadata.model_dump(exclude_none=True).items():
                    args[f"error[metadata][{name}]"] = value
        return args


class CaptureCreate(Request):
    """Capture an authorized payment in full (no fields yet)."""


class ChargeCreate(Request):
    """Charge a customer's saved payment method (off-session; the customer is not there)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "payment_method_id": "pm_3kx0",
                    "amount": 1999,
                    "currency": "USD",
                    "description": "Monthly box",
                }
            ]
        },
    )

    payment_method_id: str = Field(min_length=1, max_length=40, pattern=r"^pm_[A-Za-z0-9]+$")
    amount: int | None = Field(
        default=None, ge=1, le=99_999_999, description="Minor units (or give `items`)."
    )
    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    items: list[CheckoutItem] | None = Field(
        default=None, min_length=1, max_length=20, description="Catalog items instead of an amount."
    )
    description: str = Field(default="", max_length=200)


class RefundCreate(Request):
    amount: JsonInt | None = Field(
        default=None, ge=1, le=10**12, description="Minor units; omit to refund everything left."
    )
    reason: str | None = Field(default=None, max_length=200)


class ShownPaymentStatus(StrEnum):
    """A payment's status as the API reports it: the core's states, except that a checkout
    the customer opened and has not paid is `incomplete` (never `created`), and
    `processing` means the gateway is confirming a payment the customer made."""

    INCOMPLETE = "incomplete"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    SUCCEEDED = "succeeded"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class FulfillmentCreate(Request):
    status: Literal["fulfilled", "canceled"] = Field(
        default="fulfilled",
        description="`fulfilled` (only a paid order) or `canceled` (it will not be sent).",
    )
    note: str | None = Field(
        default=None,
        max_length=500,
        description="Shown to the customer, e.g. the carrier and tracking number.",
    )


EVENT_TYPE_DOC = "Event types to receive; empty or omitted: every type."


class WebhookEndpointCreate(Request):
    url: str = Field(min_length=1, max_length=2000, examples=["https://example.com/hooks"])
    event_types: list[str] = Field(default_factory=list, max_length=20, description=EVENT_TYPE_DOC)
    description: str = Field(default="", max_length=200)


class WebhookEndpointUpdate(Request):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, max_length=20, description=EVENT_TYPE_DOC)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(
        default=None, description="true enables it again (after a 410 or days of failures)."
    )


class WebhookRecover(Request):
    since: UtcDatetime = Field(description="Resend every failed delivery created since then.")


class Empty(Request):
    pass


class PlanCreate(Request):
    """A recurring price: `amount` in minor units every `interval_count` `interval`s."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sku": "pro-monthly",
                    "name": "Pro",
                    "amount": 1500,
                    "currency": "EUR",
                    "interval": "month",
                }
            ]
        },
    )

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    amount: int = Field(ge=1, le=10**12)
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    interval: PlanInterval
    interval_count: int = Field(default=1, ge=1, le=365)
    trial_days: int = Field(default=0, ge=0, le=730)


class SubscriptionCreate(Request):
    """Start a subscription: send the customer's browser to `checkout_url`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": "plan_4fT2kQ9xLm",
                    "gateway": "sandbox",
                    "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                }
            ]
        },
    )

    plan_id: str = Field(pattern=ID_PATTERN)
    customer: Customer
    gateway: str | None = Field(default=None, max_length=20)


class SubscriptionCancel(Request):
    at_period_end: bool = Field(
        default=True, description="true: at the end of the paid period; false: now."
    )


class SubscriptionResume(Request):
    pass


class SubscriptionPlanChange(Request):
    plan_id: str = Field(pattern=ID_PATTERN, description="The new plan (same currency).")


class PageQuery(Request):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None, max_length=100, description="next_cursor of the previous page."
    )


class OrderListQuery(PageQuery):
    status: OrderStatus | None = None
    email: str | None = Field(
        default=None,
        max_length=254,
        description="Exact email, any letter case (no partial match: emails are encrypted).",
    )
    created_after: UtcDatetime | None = Field(
        default=None, description="Created at or after (inclusive)."
    )
    created_before: UtcDatetime | None = Field(
        default=None, description="Created before (exclusive)."
    )


class PaymentListQuery(OrderListQuery):
    # The inherited filter, narrowed to the statuses a payment shows; kept in the parent's
    # place so the documented query parameters keep their order. mypy reads the narrowing
    # as an incompatible override (pydantic validates each class by its own annotation).
    status: ShownPaymentStatus | None = None  # type: ignore[assignment]
    gateway: str | None = Field(default=None, max_length=20)
    currency: str | None = Field(default=None, min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")


class SubscriptionListQuery(Request):
    status: SubscriptionStatus | None = None
    gateway: str | None = Field(default=None, max_length=20)
    plan_id: str | None = Field(default=None, pattern=ID_PATTERN)
    email: str | None = Field(default=None, max_length=254)
    limit: int = Field(default=100, ge=1, le=100)


class PaymentGetQuery(Request):
    refresh: bool = Field(default=False, description="Ask the gateway first (sync).")


# --------------------------------------------------------------------------- responses


class Product(BaseModel):
    sku: str
    name: str
    description: str
    unit_amount: int = Field(description="Price in minor units of the currency.")
    currency: str
    price_display: str
    stock: int | None = Field(description="Units left; null means unlimited.")


class OrderItem(BaseModel):
    sku: str
    name: str
    unit_amount: int
    quantity: int
    line_amount: int


class OrderCustomer(BaseModel):
    email: str
    name: str


class Order(BaseModel):
    id: str
    status: OrderStatus
    currency: str
    total_amount: int
    customer: OrderCustomer
    items: list[OrderItem]
    payment_ids: list[str]
    fulfillment_status: Literal["unfulfilled", "fulfilled", "canceled"]
    fulfilled_at: datetime | None
    fulfillment_note: str | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointSecret(BaseModel):
    endpoint_id: str
    secret: str = Field(description="`whsec_` + base64: verify with any Standard Webhooks library.")
    previous_secret_valid_until: datetime | None = Field(
        description="After a rotation the previous secret also signs until then."
    )


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="The signing secret (`whsec_` + base64).")


class WebhookDelivery(BaseModel):
    id: str
    event_id: str = Field(description="Sent as the `webhook-id` header, the same on every retry.")
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class TestEventSent(BaseModel):
    event_id: str


class Recovered(BaseModel):
    deliveries: int


class Payment(BaseModel):
    id: str
    order_id: str
    status: ShownPaymentStatus
    amount: int
    amount_refunded: int
    currency: str
    gateway: str
    gateway_reference: str | None = Field(
        description="Stripe Checkout Session id / Razorpay order id / PayPal order id / "
        "sandbox session id."
    )
    gateway_payment_id: str | None = Field(
        description="Stripe PaymentIntent id / Razorpay payment id / PayPal capture id "
        "(authorization id while authorized) / sandbox payment id."
    )
    capture_method: Literal["automatic", "manual"]
    checkout_url: str | None
    failure_code: str | None
    failure_message: str | None
    payment_method: dict[str, Any] | None
    payment_method_label: str | None = Field(
        default=None,
        description="How the customer paid, wallets named: Apple Pay (Visa •••• 4242), "
        "Google Pay, Link, UPI (vpa), Paytm wallet, PayPal.",
    )
    customer_id: str | None = Field(default=None, description="The customer (cus_…).")
    saved_payment_method_id: str | None = Field(
        default=None, description="The saved method a charge used (pm_…)."
    )
    action_url: str | None = Field(
        default=None,
        description="While `requires_action`: the customer's link to authenticate the charge "
        "(also emailed to them).",
    )
    created_at: datetime
    updated_at: datetime


class SavedPaymentMethod(BaseModel):
    id: str
    customer_id: str
    gateway: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    wallet: str | None
    status: Literal["active", "detached"]
    expired: bool = Field(description="A card past its expiry month (cannot be charged).")
    created_at: datetime


class CustomerRecord(BaseModel):
    id: str
    email: str
    name: str
    payment_methods: list[SavedPaymentMethod]
    created_at: datetime


class CustomerListQuery(PageQuery):
    email: str | None = Field(default=None, max_length=254, description="Exact match.")
    limit: int = Field(default=50, ge=1, le=100)


class PaymentLink(BaseModel):
    id: str
    url: str = Field(description="The page to send the customer to.")
    description: str
    amount: int
    currency: str
    sku: str | None = Field(description="The catalog product it sells; null for a custom amount.")
    quantity: int
    reusable: bool
    active: bool
    usable: bool = Field(description="False once expired, used (single use) or turned off.")
    expires_at: datetime | None
    order_ids: list[str]
    created_at: datetime


class Refund(BaseModel):
    id: str
    payment_id: str
    status: RefundStatus
    amount: int
    currency: str
    reason: str | None
    gateway_refund_id: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class CheckoutSession(BaseModel):
    checkout_url: str | None = Field(description="Send the customer's browser here.")
    order: Order
    payment: Payment


class Event(BaseModel):
    source: Literal["audit", "gateway"]
    at: datetime
    type: str = Field(description="Audit action (payment.succeeded...) or gateway event type.")
    actor: str | None
    from_state: str | None
    to_state: str | None
    details: dict[str, Any] | None


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str | None = Field(default=None, description="Path of the bad field, e.g. items.0.sku")
    message: str | None = None


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str
    details: list[ErrorDetail]


class ErrorEnvelope(BaseModel):
    success: Literal[False]
    error: ErrorBody


# Every model that appears in the OpenAPI document, by role.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CheckoutSessionCreate,
    PaymentConfirm,
    CaptureCreate,
    RefundCreate,
)
RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Product,
    Order,
    Payment,
    Refund,
    CheckoutSession,
    Event,
    ErrorEnvelope,
)


class Plan(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    amount: int = Field(description="Per interval, in minor units.")
    currency: str
    interval: PlanInterval
    interval_count: int
    trial_days: int
    active: bool


class Entitled(BaseModel):
    entitled: bool
    until: datetime | None = Field(description="End of what is paid, capped by a scheduled end.")
    renews: bool
    reason: str


class Subscription(BaseModel):
    id: str
    plan_id: str
    gateway: str
    status: SubscriptionStatus
    customer_email: str
    checkout_url: str | None = Field(description="Where the customer starts it (incomplete).")
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    trial_end: datetime | None
    latest_invoice_id: str | None
    next_payment_attempt: datetime | None = Field(description="The gateway's next retry.")
    entitlement: Entitled
    payment_ids: list[str] = Field(description="One payment per paid period, oldest first.")
    created_at: datetime
