"""PayPal adapter: Orders v2, Payments v2, Notifications (webhooks) v1, Disputes v1.

The only module that talks to PayPal. Everything PayPal-specific (amount strings, its
currency rules, status words, event shapes, certificates, error shapes) is translated here
into the plain value types of app.gateways.base.

SDK or plain HTTP, per area (decided after reading `paypal-server-sdk` 2.x's
OrdersController, PaymentsController and its OAuth manager):

* Transport and OAuth2: plain `requests`. The SDK's client-credentials manager refreshes a
  token by its expiry time only; a token PayPal revokes early (401 invalid_token) surfaces
  as an error, while we must renew on a 401 and repeat the call once. One Session also
  gives every area the same timeouts, the same error mapping (PayPal's `name`, `details[].
  issue` and `debug_id`, which the SDK's ErrorException keeps only partly) and the same
  no-retry policy (retries are app.gateways.resilience's decision, with the same
  PayPal-Request-Id).
* Orders v2 and Payments v2: plain HTTP with JSON bodies written here. The SDK covers these
  endpoints, but its models serialise only the fields they know and its controllers add
  their own retry loop on 408/5xx; the adapter tests assert the exact bytes PayPal receives
  (PayPal-Request-Id, Prefer, amount strings), which is simplest when we write them.
* Notifications (verify-webhook-signature, webhooks-events list) and Disputes: the SDK has
  no controllers for them, so plain HTTP is the only choice there.

Decisions worth knowing:

* PayPal-Request-Id on every create, capture, authorize, void and refund, derived from the
  attempt the core committed before the call (`kassa-checkout-pay_…`, `kassa-capture-pay_…`,
  the refund's own key): a retry after a crash or a timeout gets PayPal's stored answer,
  never a second order, capture or refund. A 409 (the previous call with that id is still
  running) is retryable; the resilience layer repeats it with the same id.
* The return page captures (or authorizes) server-side and then reads the order back;
  "COMPLETED" on the order is not proof by itself: the capture's own status, amount,
  currency and custom_id decide (PENDING stays processing, with PayPal's reason).
* Every webhook is a hint: `interpret` re-fetches the order, capture, authorization, refund
  or dispute and reports its current state (a level, not a delta), so PayPal's 3 days of
  retries in no promised order always converge on the same state.
* Webhook signatures are verified offline by default, as PayPal documents it: the message
  `transmission_id|transmission_time|webhook_id|crc32(raw body)` signed with SHA256withRSA by
  the certificate at PAYPAL-CERT-URL. The certificate is fetched only over https from
  PayPal's API hosts, must chain to a trusted root, be named messageverificationcerts
  (.sandbox).paypal.com and be within its validity; it is cached by URL. Setting
  PAYPAL_WEBHOOK_VERIFICATION=api asks PayPal's verify-webhook-signature instead (with the
  raw body spliced in, never re-serialised).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.gateways.base import (
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    DisputeUpdate,
    GatewayError,
    PaymentRef,
    PaymentUpdate,
    RefundRequest,
    RefundResult,
    RefundUpdate,
    ReturnParams,
    SavedMethod,
    SignatureError,
    Update,
    VerifiedEvent,
)
from app.models.enums import DisputeStatus, PaymentStatus, RefundStatus
from app.money import MoneyError, exponent, normalize_currency

log = logging.getLogger(__name__)

SANDBOX_API_BASE = "https://api-m.sandbox.paypal.com"
LIVE_API_BASE = "https://api-m.paypal.com"
DASHBOARD_BASE = {"sandbox": "https://www.sandbox.paypal.com", "live": "https://www.paypal.com"}

# PayPal's currency codes page (REST API reference, "Currency codes"): the only currencies
# the REST APIs take. HUF, JPY and TWD take no decimals at PayPal, whatever ISO says.
SUPPORTED_CURRENCIES = frozenset(
    {
        "AUD",
        "BRL",
        "CAD",
        "CHF",
        "CNY",
        "CZK",
        "DKK",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "ILS",
        "JPY",
        "MXN",
        "MYR",
        "NOK",
        "NZD",
        "PHP",
        "PLN",
        "SEK",
        "SGD",
        "THB",
        "TWD",
        "USD",
    }
)
NO_DECIMAL_CURRENCIES = frozenset({"HUF", "JPY", "TWD"})

# Authorizations: PayPal honours the funds for 3 days and lets a capture be tried until the
# authorization expires (29 days); both are shown to the merchant.
HONOR_PERIOD = timedelta(days=3)

# Where PayPal serves webhook signing certificates, and the names they carry.
CERT_HOSTS = frozenset(
    {"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}
)
CERT_PATH_PREFIX = "/v1/notifications/certs/"
CERT_NAMES = frozenset(
    {"messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com"}
)
MAX_CERT_BYTES = 64 * 1024
AUTH_ALGO = "SHA256withRSA"

# Field limits from the Orders v2 reference.
MAX_ID_FIELD = 127  # custom_id, invoice_id, description, item name, brand name
MAX_REQUEST_ID = 108

# Issues (details[].issue) that mean the payer's money was refused, not our request.
DECLINE_ISSUES = frozenset(
    {
        "INSTRUMENT_DECLINED",
        "TRANSACTION_REFUSED",
        "PAYER_CANNOT_PAY",
        "PAYEE_BLOCKED_TRANSACTION",
        "PAYER_ACCOUNT_LOCKED_OR_CLOSED",
        "PAYER_ACCOUNT_RESTRICTED",
        "CARD_EXPIRED",
        "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
        "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED",
        "COMPLIANCE_VIOLATION",
        "AUTHORIZATION_DENIED",
        "AUTHORIZATION_EXPIRED",
        "AUTHORIZATION_VOIDED",
        "DECLINED_DUE_TO_RELATED_TXN",
    }
)

PAYMENT_EVENTS = frozenset(
    {
        "CHECKOUT.ORDER.APPROVED",
        "CHECKOUT.ORDER.COMPLETED",
        "CHECKOUT.PAYMENT-APPROVAL.REVERSED",
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.DENIED",
        "PAYMENT.CAPTURE.DECLINED",
        "PAYMENT.AUTHORIZATION.CREATED",
        "PAYMENT.AUTHORIZATION.VOIDED",
    }
)
REFUND_EVENTS = frozenset({"PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"})
DISPUTE_EVENTS = frozenset(
    {"CUSTOMER.DISPUTE.CREATED", "CUSTOMER.DISPUTE.UPDATED", "CUSTOMER.DISPUTE.RESOLVED"}
)
# Vault v3: the payment token saved with an order (store_in_vault ON_SUCCESS) exists; its
# resource names the order (metadata.order_id), whose capture is the payment that saved it.
VAULT_EVENTS = frozenset({"VAULT.PAYMENT-TOKEN.CREATED"})
HANDLED_EVENTS = PAYMENT_EVENTS | REFUND_EVENTS | DISPUTE_EVENTS | VAULT_EVENTS

# What the customer agreed to at checkout: PayPal saves the wallet once the payment
# succeeds, for charges the merchant starts later (Orders v2 paypal_wallet_vault_instruction).
VAULT_INSTRUCTION: dict[str, Any] = {
    "store_in_vault": "ON_SUCCESS",
    "usage_type": "MERCHANT",
    "customer_type": "CONSUMER",
    "permit_multiple_payment_tokens": False,
}

_REFUND_STATUS = {
    "COMPLETED": RefundStatus.SUCCEEDED,
    "PENDING": RefundStatus.PENDING,
    "FAILED": RefundStatus.FAILED,
    "CANCELLED": RefundStatus.CANCELED,
}
_DISPUTE_OUTCOME = {
    "RESOLVED_BUYER_FAVOUR": DisputeStatus.LOST,
    "RESOLVED_WITH_PAYOUT": DisputeStatus.LOST,
    "ACCEPTED": DisputeStatus.LOST,
    "REFUNDED": DisputeStatus.LOST,
    "RESOLVED_SELLER_FAVOUR": DisputeStatus.WON,
    "CANCELED_BY_BUYER": DisputeStatus.WON,
    "DENIED": DisputeStatus.WON,
}
# Ids PayPal gives orders, captures, refunds, authorizations: safe in a URL path.
_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Vault ids (payment tokens) and PayPal customer ids: `^[0-9a-zA-Z_-]+$` in the spec.
_VAULT_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,255}$")
_SECRET_KEYS = frozenset({"access_token", "client_secret", "token", "cvv", "cvv2", "number"})


def api_mode(api_base: str) -> str:
    """ "live" for PayPal's live API, "sandbox" for anything else (its sandbox, a fake)."""
    host = urlsplit(api_base).hostname or ""
    return "live" if host in ("api-m.paypal.com", "api.paypal.com") else "sandbox"


def check_settings_safety(api_base: str, debug: bool) -> None:
    """Refuse live PayPal in debug mode, and any API base that is not https off loopback."""
    if api_mode(api_base) == "live" and debug:
        raise RuntimeError("Refusing to start: the live PayPal API is configured in debug mode")
    parts = urlsplit(api_base)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError("Refusing to start: PAYPAL_API_BASE must be an https address")


# ---------------------------------------------------------------- amounts


def _currency(code: str) -> str:
    try:
        cur = normalize_currency(code)
    except MoneyError as exc:
        raise GatewayError("invalid_request", str(exc)) from exc
    if cur not in SUPPORTED_CURRENCIES:
        raise GatewayError("invalid_request", f"PayPal does not accept {cur}")
    return cur


def paypal_places(currency: str) -> int:
    """Decimals PayPal allows: none for HUF, JPY, TWD; two for every other currency it takes."""
    return 0 if _currency(currency) in NO_DECIMAL_CURRENCIES else 2


def to_paypal_value(amount_minor: int, currency: str) -> str:
    """Our minor units (ISO exponent) -> PayPal's amount string in PayPal's exponent.

    Never rounds: an amount PayPal cannot express (HUF 123.45, which ISO allows and PayPal
    does not) is refused before any request.
    """
    cur = _currency(currency)
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor < 0:
        raise GatewayError("invalid_request", "amount must be a whole number of minor units")
    iso = exponent(cur)
    places = paypal_places(cur)
    value = Decimal(amount_minor).scaleb(-iso)
    quantum = Decimal(1).scaleb(-places)
    if value != value.quantize(quantum):
        raise GatewayError(
            "invalid_request",
            f"PayPal takes {cur} amounts without decimals; {value} {cur} cannot be charged",
        )
    return f"{value.quantize(quantum):f}"


def from_paypal_value(value: Any, currency: str) -> int:
    """PayPal's amount string -> our minor units (ISO exponent), exactly or not at all."""
    cur = _currency(currency)
    if not isinstance(value, str):
        raise GatewayError("gateway_unavailable", f"PayPal sent a non-string amount {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise GatewayError("gateway_unavailable", f"PayPal sent the amount {value!r}") from exc
    minor = number.scaleb(exponent(cur))
    if not number.is_finite() or minor != minor.to_integral_value():
        raise GatewayError("gateway_unavailable", f"PayPal sent the amount {value!r} {cur}")
    return int(minor)


def _money(amount_minor: int, currency: str) -> dict[str, str]:
    cur = _currency(currency)
    return {"currency_code": cur, "value": to_paypal_value(amount_minor, cur)}


def _amount_of(obj: Mapping[str, Any] | None) -> tuple[int | None, str | None]:
    amount = (obj or {}).get("amount") or {}
    cur = str(amount.get("currency_code") or "").upper()
    if not cur or "value" not in amount:
        return None, cur or None
    return from_paypal_value(amount.get("value"), cur), cur


# ---------------------------------------------------------------- helpers


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if key.lower() == lname:
                return val
    return value


def _link(obj: Mapping[str, Any], rel: str) -> str | None:
    for link in obj.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def _last_segment(url: str | None) -> str | None:
    if not url:
        return None
    segment = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return segment if _ID_RE.match(segment) else None


def _path_id(value: str | None, what: str) -> str:
    if not value or not _ID_RE.match(value):
        raise GatewayError("invalid_request", f"not a PayPal {what} id: {value!r}")
    return quote(value, safe="")


def _request_id(key: str) -> str:
    """PayPal-Request-Id allows 108 characters; ours are shorter, checked anyway."""
    if not key or len(key) > MAX_REQUEST_ID:
        raise GatewayError("invalid_request", "idempotency key does not fit PayPal-Request-Id")
    return key


def capture_request_id(payment_id: str) -> str:
    """The capture of an attempt's order: one per attempt, whoever asks and however often."""
    return _request_id(f"kassa-capture-{payment_id}")


def authorize_request_id(payment_id: str) -> str:
    return _request_id(f"kassa-authorize-{payment_id}")


def _plain_url(url: str) -> str:
    """The URL without Stripe's {CHECKOUT_SESSION_ID} placeholder (not a valid URI for
    PayPal); PayPal appends its own ?token=<order id>&PayerID=."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and "{CHECKOUT_SESSION_ID}" not in p]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment))


def _first_unit(order: Mapping[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units") or []
    return dict(units[0]) if units and isinstance(units[0], Mapping) else {}


def _payments_of(order: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    payments = _first_unit(order).get("payments") or {}
    return {
        kind: [dict(p) for p in payments.get(kind) or [] if isinstance(p, Mapping)]
        for kind in ("captures", "authorizations", "refunds")
    }


def _order_id_of(resource: Mapping[str, Any]) -> str | None:
    related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
    return related.get("order_id") or None


def payment_method_details(order: Mapping[str, Any]) -> dict[str, Any]:
    """Safe to keep: the wallet (PayPal, or Venmo and cards through PayPal) and the payer id."""
    source = order.get("payment_source") or {}
    details: dict[str, Any] = {}
    if "venmo" in source:
        details.update(method="wallet", wallet="venmo")
    elif "card" in source:
        card = source.get("card") or {}
        details["method"] = "card"
        if card.get("brand"):
            details["brand"] = str(card["brand"]).lower()
        if card.get("last_digits"):
            details["last4"] = card["last_digits"]
        details["wallet"] = "paypal"
    else:
        details.update(method="wallet", wallet="paypal")
    payer_id = (source.get("paypal") or {}).get("account_id") or (order.get("payer") or {}).get(
        "payer_id"
    )
    if payer_id:
        details["payer_id"] = payer_id
    return details


def saved_wallet(order: Mapping[str, Any]) -> SavedMethod | None:
    """The PayPal wallet the order saved (store_in_vault ON_SUCCESS), once PayPal says
    VAULTED: its vault id (the payment token later orders name as `vault_id`) and PayPal's
    customer id. Never anything to pay with but the token; no card data exists here."""
    paypal = (order.get("payment_source") or {}).get("paypal") or {}
    vault = (paypal.get("attributes") or {}).get("vault") or {}
    if not isinstance(vault, Mapping) or vault.get("status") != "VAULTED":
        return None
    token = vault.get("id")
    if not isinstance(token, str) or not _VAULT_ID_RE.match(token):
        return None
    customer = (vault.get("customer") or {}).get("id")
    return SavedMethod(
        token=token,
        wallet="paypal",
        gateway_customer_id=str(customer) if customer else None,
        account_email=_email(paypal.get("email_address"))
        or _email((order.get("payer") or {}).get("email_address")),
    )


def _email(value: Any) -> str | None:
    return value[:254] if isinstance(value, str) and "@" in value else None


def _vault_path(token: str) -> str:
    if not token or not _VAULT_ID_RE.match(token):
        raise GatewayError("invalid_request", "not a PayPal payment token")
    return quote(token, safe="")


def redact(payload: Any) -> Any:
    """Drop tokens and secrets anywhere in a payload (PayPal events carry none today)."""
    if isinstance(payload, Mapping):
        return {k: redact(v) for k, v in payload.items() if str(k).lower() not in _SECRET_KEYS}
    if isinstance(payload, list):
        return [redact(v) for v in payload]
    return payload


# ---------------------------------------------------------------- certificates


def load_trust_roots(path: str | None = None) -> list[x509.Certificate]:
    """Trusted roots for webhook certificates: a PEM bundle (default: certifi's)."""
    if path is None:
        import certifi

        path = certifi.where()
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def check_cert_url(url: str) -> str:
    """Only https, only PayPal's API hosts, only its certificate path; raise otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SignatureError("PAYPAL-CERT-URL is not a URL") from exc
    if parts.scheme != "https":
        raise SignatureError("PAYPAL-CERT-URL is not https")
    if (parts.hostname or "").lower() not in CERT_HOSTS or port not in (None, 443):
        raise SignatureError(f"PAYPAL-CERT-URL host {parts.hostname!r} is not PayPal's")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SignatureError("PAYPAL-CERT-URL carries credentials, a query or a fragment")
    if not parts.path.startswith(CERT_PATH_PREFIX) or ".." in parts.path:
        raise SignatureError("PAYPAL-CERT-URL is not a PayPal certificate path")
    return url


def _names(cert: x509.Certificate) -> set[str]:
    names = {str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names.update(n.lower() for n in san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    return names


def verify_chain(
    chain: list[x509.Certificate], roots: list[x509.Certificate], now: datetime
) -> x509.Certificate:
    """The leaf of `chain` if it is PayPal's signing certificate; SignatureError otherwise.

    Checks: the leaf's name, every certificate's validity at `now`, each certificate
    signed by the next (intermediates from the same PEM), ending at a trusted root.
    """
    if not chain:
        raise SignatureError("no certificate at PAYPAL-CERT-URL")
    leaf = chain[0]
    if not (_names(leaf) & CERT_NAMES):
        raise SignatureError("the certificate is not PayPal's message verification certificate")
    pool = list(chain[1:])
    current = leaf
    for _ in range(8):
        if not (current.not_valid_before_utc <= now <= current.not_valid_after_utc):
            raise SignatureError(f"certificate {current.subject.rfc4514_string()} is not valid now")
        for root in roots:
            if root.subject == current.issuer and _signed_by(current, root):
                if not (root.not_valid_before_utc <= now <= root.not_valid_after_utc):
                    raise SignatureError("the trusted root is not valid now")
                return leaf
        parent = next((c for c in pool if c.subject == current.issuer), None)
        if parent is None or not _signed_by(current, parent) or not _is_ca(parent):
            raise SignatureError("the certificate does not chain to a trusted root")
        pool.remove(parent)
        current = parent
    raise SignatureError("certificate chain too long")


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def transmission_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    """What PayPal signs: `id|time|webhook id|crc32 of the raw body, unsigned decimal`."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


@dataclass(frozen=True, slots=True)
class _CachedCert:
    leaf: x509.Certificate
    not_after: datetime


# ---------------------------------------------------------------- the adapter


class PayPalGateway:
    """PayPal Checkout (Orders v2, redirect to PayPal's approval page) behind the port."""

    name = "paypal"
    display_name = "PayPal"
    can_list_events = True
    can_retrieve_refunds = True

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        webhook_id: str,
        *,
        api_base: str | None = None,
        brand_name: str = "",
        verification: str = "offline",
        trust_roots: list[x509.Certificate] | None = None,
        webhook_tolerance: float = 300.0,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        session: requests.Session | None = None,
        cert_session: requests.Session | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not (client_id and client_secret and webhook_id):
            raise ValueError("PayPal needs a client id, a client secret and a webhook id")
        if verification not in ("offline", "api"):
            raise ValueError("PAYPAL_WEBHOOK_VERIFICATION must be 'offline' or 'api'")
        self.client_id = client_id
        self._client_secret = client_secret
        self.webhook_id = webhook_id
        self.api_base = (api_base or SANDBOX_API_BASE).rstrip("/")
        self.mode = api_mode(self.api_base)
        self.brand_name = brand_name[:MAX_ID_FIELD]
        self.verification = verification
        self._trust_roots = trust_roots
        self._tolerance = webhook_tolerance
        self._timeout = (connect_timeout, timeout)
        self._session = session or requests.Session()
        self.cert_session = cert_session or requests.Session()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = threading.Lock()
        self._certs: dict[str, _CachedCert] = {}
        self._certs_lock = threading.Lock()
        self.token_fetches = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PayPalGateway | None:
        """The app's PayPal gateway, or None unless client id, secret and webhook id are set."""
        client_id = config.get("PAYPAL_CLIENT_ID")
        secret = config.get("PAYPAL_CLIENT_SECRET")
        webhook_id = config.get("PAYPAL_WEBHOOK_ID")
        if not (client_id and secret and webhook_id):
            return None
        ca_file = config.get("PAYPAL_WEBHOOK_CA_FILE")
        return cls(
            client_id,
            secret,
            webhook_id,
            api_base=config.get("PAYPAL_API_BASE") or SANDBOX_API_BASE,
            brand_name=config.get("STORE_NAME") or "",
            verification=config.get("PAYPAL_WEBHOOK_VERIFICATION") or "offline",
            trust_roots=load_trust_roots(ca_file) if ca_file else None,
            webhook_tolerance=float(config.get("WEBHOOK_TOLERANCE_SECONDS") or 300),
            timeout=float(
                config.get("PAYPAL_TIMEOUT_SECONDS") or config.get("GATEWAY_TIMEOUT_SECONDS") or 10
            ),
        )

    def dashboard_url(self, kind: str, gateway_id: str) -> str:
        """A link into PayPal's own dashboard for a capture or dispute id."""
        base = DASHBOARD_BASE[self.mode]
        if kind == "dispute":
            return f"{base}/resolutioncenter/view/{quote(gateway_id, safe='')}"
        return f"{base}/activity/payment/{quote(gateway_id, safe='')}"

    # ------------------------------------------------------------ transport

    def _access_token(self) -> str:
        """The cached client-credentials token; fetched when missing or about to expire."""
        with self._token_lock:
            if self._token and time.monotonic() < self._token_renew_at:
                return self._token
            try:
                response = self._session.post(
                    f"{self.api_base}/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self._client_secret),
                    headers={"Accept": "application/json"},
                    timeout=self._timeout,
                )
            except requests.Timeout as exc:
                raise GatewayError(
                    "gateway_unavailable", "PayPal did not answer in time", retryable=True
                ) from exc
            except requests.RequestException as exc:
                raise GatewayError(
                    "gateway_unavailable", "Could not reach PayPal", retryable=True
                ) from exc
            self.token_fetches += 1
            if response.status_code != 200:
                raise _error_from_response(response)
            try:
                body = response.json()
                token = str(body["access_token"])
                lifetime = float(body.get("expires_in") or 0)
            except (ValueError, KeyError, TypeError) as exc:
                raise GatewayError(
                    "gateway_unavailable", "PayPal sent an unreadable token", retryable=True
                ) from exc
            # Renew a little early (a tenth of the lifetime, at most 5 minutes), so a call
            # never leaves with a token that expires on its way.
            margin = min(300.0, lifetime / 10)
            self._token = token
            self._token_renew_at = time.monotonic() + max(0.0, lifetime - margin)
            return token

    def _drop_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        raw_body: bytes | None = None,
        request_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """One API call with a cached token; a 401 renews the token and repeats once."""
        data = (
            raw_body
            if raw_body is not None
            else (json.dumps(body, separators=(",", ":")).encode() if body is not None else None)
        )
        for attempt in (1, 2):
            token = self._access_token()
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Prefer": "return=representation",
            }
            if data is not None:
                headers["Content-Type"] = "application/json"
            if request_id:
                headers["PayPal-Request-Id"] = request_id
            try:
                response = self._session.request(
                    method,
                    url or f"{self.api_base}{path}",
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.Timeout as exc:
                raise GatewayError(
                    "gateway_unavailable", "PayPal did not answer in time", retryable=True
                ) from exc
            except requests.RequestException as exc:
                raise GatewayError(
                    "gateway_unavailable", "Could not reach PayPal", retryable=True
                ) from exc
            if response.status_code == 401 and attempt == 1:
                # Revoked or expired before its time: one fresh token, one more try.
                self._drop_token(token)
                continue
            if response.status_code >= 400:
                raise _error_from_response(response)
            if response.status_code == 204 or not response.content:
                return {}
            try:
                result = response.json()
            except ValueError as exc:
                raise GatewayError(
                    "gateway_unavailable", "PayPal sent an unreadable answer", retryable=True
                ) from exc
            if not isinstance(result, dict):
                raise GatewayError(
                    "gateway_unavailable", "PayPal sent an unexpected answer", retryable=True
                )
            return result
        raise GatewayError("authentication_failed", "PayPal refused a fresh token", http_status=401)

    # ------------------------------------------------------------ checkout

    def order_body(self, request: CheckoutRequest) -> dict[str, Any]:
        """The Orders v2 create body for one attempt, built only from the request."""
        currency = _currency(request.currency)
        items = []
        item_total = 0
        for item in request.line_items:
            items.append(
                {
                    "name": item.name[:MAX_ID_FIELD] or "Item",
                    "quantity": str(item.quantity),
                    "unit_amount": _money(item.unit_amount, currency),
                }
            )
            item_total += item.unit_amount * item.quantity
        if request.amount <= 0:
            raise GatewayError("invalid_request", "amount must be positive")
        amount: dict[str, Any] = _money(request.amount, currency)
        unit: dict[str, Any] = {
            "reference_id": request.payment_id,
            "custom_id": request.payment_id[:MAX_ID_FIELD],
            "invoice_id": request.order_id[:MAX_ID_FIELD],
            "description": (request.description or f"Order {request.order_id}")[:MAX_ID_FIELD],
            "amount": amount,
        }
        # Items only when they add up: PayPal rejects a breakdown that does not match.
        if items and item_total == request.amount:
            amount["breakdown"] = {"item_total": _money(item_total, currency)}
            unit["items"] = items
        context: dict[str, Any] = {
            "shipping_preference": "NO_SHIPPING",
            "user_action": "PAY_NOW",
            "return_url": _plain_url(request.success_url),
            "cancel_url": _plain_url(request.cancel_url),
        }
        if self.brand_name:
            context["brand_name"] = self.brand_name
        paypal: dict[str, Any] = {"experience_context": context}
        if request.customer_email and "@" in request.customer_email:
            paypal["email_address"] = request.customer_email
        if request.save_payment_method:
            # The customer agreed at checkout: PayPal vaults the wallet when the payment
            # succeeds, on PayPal's customer for them when we know it already.
            attributes: dict[str, Any] = {"vault": dict(VAULT_INSTRUCTION)}
            if request.gateway_customer_id:
                attributes["customer"] = {"id": request.gateway_customer_id}
            paypal["attributes"] = attributes
        return {
            "intent": "AUTHORIZE" if request.capture_method == "manual" else "CAPTURE",
            "purchase_units": [unit],
            "payment_source": {"paypal": paypal},
        }

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """POST /v2/checkout/orders with the attempt's request id; 303 to payer-action."""
        body = self.order_body(request)
        order = self._call(
            "POST",
            "/v2/checkout/orders",
            body=body,
            request_id=_request_id(request.idempotency_key),
        )
        approve = _link(order, "payer-action") or _link(order, "approve")
        if not order.get("id") or not approve:
            raise GatewayError(
                "gateway_unavailable", "PayPal's order has no approval link", retryable=True
            )
        return CheckoutSession(
            reference=str(order["id"]), redirect_url=approve, expires_at=request.expires_at
        )

    def cancel_checkout(self, ref: PaymentRef) -> None:
        """Void an open authorization; an unapproved or uncaptured order needs no call.

        Orders v2 has no cancel for an order that was never captured: it lapses at PayPal,
        and nothing captures it once our attempt is closed (the return page only reads it).
        """
        if not ref.reference:
            return
        order = self._get_order(ref.reference)
        for auth in _payments_of(order)["authorizations"]:
            if auth.get("status") in ("CREATED", "PENDING") and auth.get("id"):
                self.void_authorization(str(auth["id"]))

    def void_payment(self, request: CaptureRequest) -> PaymentUpdate:
        """Release the authorization (manual capture) without capturing: void it, then
        read it back; VOIDED is the authorization's end."""
        if not request.gateway_payment_id:
            raise GatewayError("invalid_request", "no PayPal authorization to void")
        self.void_authorization(request.gateway_payment_id)
        auth_id = _path_id(request.gateway_payment_id, "authorization")
        auth = self._call("GET", f"/v2/payments/authorizations/{auth_id}")
        ref = PaymentRef(request.payment_id, request.reference, request.gateway_payment_id)
        return self._authorization_update(auth, ref)

    def void_authorization(self, authorization_id: str) -> None:
        auth_id = _path_id(authorization_id, "authorization")
        try:
            self._call(
                "POST",
                f"/v2/payments/authorizations/{auth_id}/void",
                request_id=_request_id(f"kassa-void-{authorization_id}"),
            )
        except GatewayError as exc:
            if exc.decline_code != "AUTHORIZATION_ALREADY_VOIDED" and exc.code != "not_found":
                raise

    # ------------------------------------------------------------ reading

    def _get_order(self, order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v2/checkout/orders/{_path_id(order_id, 'order')}")

    def _belongs(self, order: Mapping[str, Any], ref: PaymentRef) -> bool:
        custom_id = _first_unit(order).get("custom_id")
        return not (ref.payment_id and custom_id and custom_id != ref.payment_id)

    def order_update(
        self, order: Mapping[str, Any], ref: PaymentRef | None = None
    ) -> PaymentUpdate:
        """An order's state as one PaymentUpdate, with the wallet it saved (vault id and
        PayPal customer id) once the payment succeeded or was authorized."""
        update = self._order_state(order, ref)
        if update.status in (PaymentStatus.SUCCEEDED, PaymentStatus.AUTHORIZED):
            saved = saved_wallet(order)
            if saved is not None:
                update = replace(update, saved_method=saved)
        return update

    def _order_state(
        self, order: Mapping[str, Any], ref: PaymentRef | None = None
    ) -> PaymentUpdate:
        """An order's state as one PaymentUpdate: its captures first, then authorizations.

        COMPLETED on the order is not trusted by itself: the capture's own status decides
        (a PENDING capture stays processing with PayPal's reason).
        """
        unit = _first_unit(order)
        payments = _payments_of(order)
        ref = PaymentRef(
            payment_id=(ref.payment_id if ref and ref.payment_id else unit.get("custom_id")),
            reference=str(order.get("id") or (ref.reference if ref else "")) or None,
            gateway_payment_id=ref.gateway_payment_id if ref else None,
        )
        method = payment_method_details(order)
        captures = payments["captures"]
        auths = payments["authorizations"]
        capture_wanted: tuple[tuple[str, ...], ...] = (
            ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"),
            ("PENDING",),
        )
        for wanted in capture_wanted:
            found = [c for c in captures if c.get("status") in wanted]
            if found:
                return self._capture_update(found[-1], ref, method)
        auth_wanted: tuple[tuple[str, ...], ...] = (("CREATED", "PARTIALLY_CAPTURED"), ("PENDING",))
        for wanted in auth_wanted:
            found = [a for a in auths if a.get("status") in wanted]
            if found:
                return self._authorization_update(found[-1], ref, method)
        if captures:
            return self._capture_update(captures[-1], ref, method)
        if auths:
            return self._authorization_update(auths[-1], ref, method)
        amount, currency = _amount_of(unit)
        status = str(order.get("status") or "")
        mapped = PaymentStatus.CANCELED if status == "VOIDED" else PaymentStatus.PROCESSING
        return PaymentUpdate(ref=ref, status=mapped, amount=amount, currency=currency)

    def _capture_update(
        self, capture: Mapping[str, Any], ref: PaymentRef, method: Mapping[str, Any] | None = None
    ) -> PaymentUpdate:
        status = str(capture.get("status") or "")
        amount, currency = _amount_of(capture)
        reason = (capture.get("status_details") or {}).get("reason")
        ref = PaymentRef(
            payment_id=ref.payment_id or capture.get("custom_id"),
            reference=ref.reference or _order_id_of(capture),
            gateway_payment_id=capture.get("id") or ref.gateway_payment_id,
        )
        if status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"):
            mapped, code, message = PaymentStatus.SUCCEEDED, None, None
        elif status == "PENDING":
            mapped = PaymentStatus.PROCESSING
            code = str(reason or "PENDING")
            message = f"PayPal is holding the payment ({code})"
        else:  # DECLINED, FAILED
            mapped = PaymentStatus.FAILED
            code = str(reason or status or "DECLINED")
            message = "PayPal declined the payment"
        return PaymentUpdate(
            ref=ref,
            status=mapped,
            amount=amount,
            currency=currency,
            gateway_payment_id=capture.get("id"),
            failure_code=code,
            failure_message=message,
            payment_method=dict(method) if method else {"method": "wallet", "wallet": "paypal"},
        )

    def _authorization_update(
        self, auth: Mapping[str, Any], ref: PaymentRef, method: Mapping[str, Any] | None = None
    ) -> PaymentUpdate:
        status = str(auth.get("status") or "")
        amount, currency = _amount_of(auth)
        mapped = {
            "CREATED": PaymentStatus.AUTHORIZED,
            "PARTIALLY_CAPTURED": PaymentStatus.AUTHORIZED,
            "PENDING": PaymentStatus.PROCESSING,
            "VOIDED": PaymentStatus.CANCELED,
            "EXPIRED": PaymentStatus.EXPIRED,
            "DENIED": PaymentStatus.FAILED,
            "CAPTURED": PaymentStatus.SUCCEEDED,
        }.get(status, PaymentStatus.PROCESSING)
        details = dict(method) if method else {"method": "wallet", "wallet": "paypal"}
        deadline = None
        if mapped is PaymentStatus.AUTHORIZED:
            deadline = _ts(auth.get("expiration_time"))
            created = _ts(auth.get("create_time"))
            if created:
                details["honor_period_ends"] = (created + HONOR_PERIOD).isoformat()
        reason = (auth.get("status_details") or {}).get("reason")
        return PaymentUpdate(
            ref=PaymentRef(
                payment_id=ref.payment_id or auth.get("custom_id"),
                reference=ref.reference or _order_id_of(auth),
                gateway_payment_id=auth.get("id") or ref.gateway_payment_id,
            ),
            status=mapped,
            amount=amount,
            currency=currency,
            gateway_payment_id=auth.get("id"),
            failure_code=str(reason or status) if mapped is PaymentStatus.FAILED else None,
            failure_message="PayPal denied the authorization"
            if mapped is PaymentStatus.FAILED
            else None,
            payment_method=details,
            capture_deadline=deadline,
            # VOIDED (by the merchant, or PayPal) and EXPIRED (past its validity): the
            # authorization's own end, news from after it (app/payments/state.py).
            authorization_ended=status in ("VOIDED", "EXPIRED"),
        )

    def retrieve(self, ref: PaymentRef) -> PaymentUpdate:
        """GET the order (or, without one, the capture) and report its state."""
        if ref.reference:
            order = self._get_order(ref.reference)
            if not self._belongs(order, ref):
                raise GatewayError(
                    "invalid_request", f"PayPal order {ref.reference} belongs to another payment"
                )
            return self.order_update(order, ref)
        if ref.gateway_payment_id:
            capture = self._call(
                "GET", f"/v2/payments/captures/{_path_id(ref.gateway_payment_id, 'capture')}"
            )
            return self._capture_update(capture, ref)
        raise GatewayError("invalid_request", "nothing to look the payment up by")

    # ------------------------------------------------------------ return page

    def confirm_return(self, ref: PaymentRef, params: ReturnParams) -> PaymentUpdate | None:
        """Capture (or authorize) the approved order server-side, then report the result.

        The URL's `token` is only compared with the order id stored for this attempt; the
        order is read from PayPal, and the capture call carries the attempt's request id,
        so a reload, a second tab or a crash-and-retry never captures twice.
        """
        order_id = ref.reference
        if not order_id:
            return None
        token = params.args.get("token")
        if token and token != order_id:
            log.warning("paypal return for order %s names another order %s", order_id, token)
            return None
        order = self._get_order(order_id)
        if not self._belongs(order, ref):
            log.warning("paypal order %s does not carry our payment %s", order_id, ref.payment_id)
            return None
        payments = _payments_of(order)
        if order.get("status") == "APPROVED" and not (
            payments["captures"] or payments["authorizations"]
        ):
            try:
                order = self.complete_order(
                    order_id, str(order.get("intent")), ref.payment_id or ""
                )
            except GatewayError as exc:
                if exc.code != "payment_failed":
                    raise
                # INSTRUMENT_DECLINED and friends: the order stays payable with another
                # funding source; the attempt stays processing, with PayPal's reason.
                amount, currency = _amount_of(_first_unit(order))
                return PaymentUpdate(
                    ref=PaymentRef(ref.payment_id, order_id, ref.gateway_payment_id),
                    status=PaymentStatus.PROCESSING,
                    amount=amount,
                    currency=currency,
                    failure_code=exc.decline_code,
                    failure_message=exc.message,
                )
            if not self._belongs(order, ref):
                return None
        return self.order_update(order, ref)

    def complete_order(self, order_id: str, intent: str, payment_id: str) -> dict[str, Any]:
        """Capture or authorize an approved order; an earlier success is read back."""
        action = "authorize" if intent == "AUTHORIZE" else "capture"
        request_id = (
            authorize_request_id(payment_id)
            if action == "authorize"
            else capture_request_id(payment_id)
        )
        try:
            return self._call(
                "POST",
                f"/v2/checkout/orders/{_path_id(order_id, 'order')}/{action}",
                body={},
                request_id=request_id,
            )
        except GatewayError as exc:
            if exc.decline_code in ("ORDER_ALREADY_CAPTURED", "ORDER_ALREADY_AUTHORIZED"):
                return self._get_order(order_id)
            raise

    # ------------------------------------------------------------ saved wallets

    def charge_body(self, request: ChargeRequest) -> dict[str, Any]:
        """The Orders v2 create body that charges a vaulted wallet: intent CAPTURE, the
        amount of the order Kassa committed, `payment_source.paypal.vault_id`. The
        experience context is where PayPal sends the payer back when it wants them to
        approve first (PAYER_ACTION_REQUIRED)."""
        currency = _currency(request.currency)
        if request.amount <= 0:
            raise GatewayError("invalid_request", "amount must be positive")
        context: dict[str, Any] = {
            "shipping_preference": "NO_SHIPPING",
            "user_action": "PAY_NOW",
            "return_url": _plain_url(request.return_url),
            "cancel_url": _plain_url(request.return_url),
        }
        if self.brand_name:
            context["brand_name"] = self.brand_name
        return {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": request.payment_id,
                    "custom_id": request.payment_id[:MAX_ID_FIELD],
                    "invoice_id": request.order_id[:MAX_ID_FIELD],
                    "description": (request.description or f"Order {request.order_id}")[
                        :MAX_ID_FIELD
                    ],
                    "amount": _money(request.amount, currency),
                }
            ],
            "payment_source": {
                "paypal": {"vault_id": request.token, "experience_context": context}
            },
        }

    def charge_saved_method(self, request: ChargeRequest) -> ChargeResult:
        """POST /v2/checkout/orders with the vault id and the attempt's PayPal-Request-Id
        (a retry gets PayPal's stored answer, never a second order).

        PayPal completes such an order at once (COMPLETED, with its capture), or answers
        PAYER_ACTION_REQUIRED with a payer-action link: the payment waits in
        requires_action, and the return page captures once the payer approved. A refused
        wallet is a 422 (INSTRUMENT_DECLINED and the like): GatewayError payment_failed.
        """
        _vault_path(request.token)
        order = self._call(
            "POST",
            "/v2/checkout/orders",
            body=self.charge_body(request),
            request_id=_request_id(request.idempotency_key),
        )
        order_id = order.get("id")
        if not isinstance(order_id, str) or not _ID_RE.match(order_id):
            raise GatewayError("gateway_unavailable", "PayPal's order has no id", retryable=True)
        ref = PaymentRef(payment_id=request.payment_id, reference=order_id)
        if order.get("status") == "PAYER_ACTION_REQUIRED":
            action = _link(order, "payer-action") or _link(order, "approve")
            if not action:
                raise GatewayError("gateway_unavailable", "PayPal's order has no payer-action link")
            amount, currency = _amount_of(_first_unit(order))
            update = PaymentUpdate(
                ref=ref,
                status=PaymentStatus.REQUIRES_ACTION,
                amount=amount,
                currency=currency,
                payment_method={"method": "wallet", "wallet": "paypal"},
            )
            return ChargeResult(update=update, reference=order_id, action_url=action)
        update = self.order_update(order, ref)
        if update.status is PaymentStatus.FAILED:
            # The capture itself was declined (the order completed without money).
            raise GatewayError(
                "payment_failed",
                update.failure_message or "PayPal declined the payment",
                decline_code=update.failure_code,
            )
        return ChargeResult(update=update, reference=order_id)

    def detach_method(self, token: str) -> None:
        """DELETE /v3/vault/payment-tokens/{id}: the wallet can never be charged again. A
        token PayPal no longer has is gone already (a repeat, or deleted at PayPal)."""
        try:
            self._call("DELETE", f"/v3/vault/payment-tokens/{_vault_path(token)}")
        except GatewayError as exc:
            if exc.code != "not_found":
                raise

    def _vault_update(self, resource: Mapping[str, Any]) -> list[Update]:
        """VAULT.PAYMENT-TOKEN.CREATED: the token PayPal saved after the order's capture
        (when it was not VAULTED yet in the capture's answer). Both are re-fetched: the
        token (it exists, whose customer it is) and its order (the payment it belongs to
        and whether that succeeded)."""
        token_id = resource.get("id")
        order_id = (resource.get("metadata") or {}).get("order_id")
        if not isinstance(token_id, str) or not isinstance(order_id, str):
            return []
        try:
            token = self._call("GET", f"/v3/vault/payment-tokens/{_vault_path(token_id)}")
        except GatewayError as exc:
            if exc.code == "not_found":
                return []  # deleted since: nothing to save
            raise
        update = self.order_update(self._get_order(order_id))
        if update.saved_method is None and update.status in (
            PaymentStatus.SUCCEEDED,
            PaymentStatus.AUTHORIZED,
        ):
            customer = (token.get("customer") or {}).get("id")
            wallet = (token.get("payment_source") or {}).get("paypal") or {}
            update = replace(
                update,
                saved_method=SavedMethod(
                    token=str(token.get("id") or token_id),
                    wallet="paypal",
                    gateway_customer_id=str(customer) if customer else None,
                    account_email=_email(wallet.get("email_address")),
                ),
            )
        return [update]

    # ------------------------------------------------------------ capture and refund

    def capture(self, request: CaptureRequest) -> PaymentUpdate:
        """Capture an authorization (manual capture) with the request's own id.

        A repeat after success finds the authorization CAPTURED and reports the capture.
        """
        currency = _currency(request.currency)
        ref = PaymentRef(request.payment_id, request.reference, request.gateway_payment_id)
        if not request.reference:
            raise GatewayError("invalid_request", "no PayPal order for this payment")
        order = self._get_order(request.reference)
        if not self._belongs(order, ref):
            raise GatewayError("invalid_request", "the PayPal order belongs to another payment")
        payments = _payments_of(order)
        done = [c for c in payments["captures"] if c.get("status") in ("COMPLETED", "PENDING")]
        open_auths = [
            a
            for a in payments["authorizations"]
            if a.get("status") in ("CREATED", "PARTIALLY_CAPTURED")
        ]
        if not open_auths:
            if done:
                return self.order_update(order, ref)
            raise GatewayError("invalid_request", "this PayPal order has no open authorization")
        auth_id = _path_id(str(open_auths[-1].get("id")), "authorization")
        capture = self._call(
            "POST",
            f"/v2/payments/authorizations/{auth_id}/capture",
            body={"amount": _money(request.amount, currency), "final_capture": True},
            request_id=_request_id(request.idempotency_key),
        )
        return self._capture_update(capture, ref, payment_method_details(order))

    def _capture_id(self, reference: str | None, gateway_payment_id: str | None) -> str:
        if reference:
            order = self._get_order(reference)
            captures = [
                c
                for c in _payments_of(order)["captures"]
                if c.get("status") in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
            ]
            if captures:
                return str(captures[-1]["id"])
            raise GatewayError("invalid_request", f"PayPal order {reference} has no capture")
        if gateway_payment_id:
            return gateway_payment_id
        raise GatewayError("invalid_request", "nothing to refund: no PayPal capture")

    def refund_body(self, request: RefundRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "amount": _money(request.amount, request.currency),
            # Ours, so the refund's webhook and a re-fetch name our refund; no invoice_id
            # (PayPal may hold invoice ids unique per account).
            "custom_id": request.refund_id[:MAX_ID_FIELD],
        }
        if request.reason:
            body["note_to_payer"] = request.reason[:255]
        return body

    def refund(self, request: RefundRequest) -> RefundResult:
        """POST /v2/payments/captures/{id}/refund with the refund's own PayPal-Request-Id."""
        if request.amount <= 0:
            raise GatewayError("invalid_request", "refund amount must be positive")
        body = self.refund_body(request)
        capture_id = _path_id(
            self._capture_id(request.reference, request.gateway_payment_id), "capture"
        )
        refund = self._call(
            "POST",
            f"/v2/payments/captures/{capture_id}/refund",
            body=body,
            request_id=_request_id(request.idempotency_key),
        )
        status = _REFUND_STATUS.get(str(refund.get("status")), RefundStatus.PENDING)
        reason = (refund.get("status_details") or {}).get("reason")
        return RefundResult(
            gateway_refund_id=str(refund["id"]),
            status=status,
            failure_reason=str(reason) if status is RefundStatus.FAILED and reason else None,
        )

    def retrieve_refund(self, ref: PaymentRef, gateway_refund_id: str) -> RefundUpdate:
        """GET /v2/payments/refunds/{id}: one refund's current state."""
        refund = self._call("GET", f"/v2/payments/refunds/{_path_id(gateway_refund_id, 'refund')}")
        update = self.refund_update(refund, ref)
        if (
            ref.gateway_payment_id
            and update.ref.gateway_payment_id
            and ref.gateway_payment_id != update.ref.gateway_payment_id
            and ref.reference is None
        ):
            raise GatewayError(
                "invalid_request", f"PayPal refund {gateway_refund_id} belongs to another payment"
            )
        return update

    def refund_update(
        self, refund: Mapping[str, Any], ref: PaymentRef | None = None
    ) -> RefundUpdate:
        amount, currency = _amount_of(refund)
        if amount is None or currency is None:
            raise GatewayError("gateway_unavailable", "PayPal sent a refund without an amount")
        status = _REFUND_STATUS.get(str(refund.get("status")), RefundStatus.PENDING)
        capture_id = _last_segment(_link(refund, "up"))
        custom_id = refund.get("custom_id")
        ours = custom_id if isinstance(custom_id, str) and custom_id.startswith("rfd_") else None
        reason = (refund.get("status_details") or {}).get("reason")
        return RefundUpdate(
            ref=PaymentRef(
                payment_id=ref.payment_id if ref else None,
                reference=ref.reference if ref else None,
                gateway_payment_id=capture_id or (ref.gateway_payment_id if ref else None),
            ),
            gateway_refund_id=str(refund.get("id")),
            amount=amount,
            currency=currency,
            status=status,
            # None for a refund made in PayPal's dashboard: the core imports it.
            refund_id=ours,
            reason=refund.get("note_to_payer"),
            failure_reason=str(reason) if status is RefundStatus.FAILED and reason else None,
        )

    # ------------------------------------------------------------ disputes

    def dispute_update(self, dispute: Mapping[str, Any]) -> DisputeUpdate:
        amount_obj = dispute.get("dispute_amount") or {}
        currency = str(amount_obj.get("currency_code") or "").upper()
        amount = from_paypal_value(amount_obj.get("value"), currency)
        txns = [t for t in dispute.get("disputed_transactions") or [] if isinstance(t, Mapping)]
        capture_id = str(txns[0].get("seller_transaction_id") or "") if txns else ""
        custom = str(txns[0].get("custom") or "") if txns else ""
        gateway_status = str(dispute.get("status") or "")
        if gateway_status == "RESOLVED":
            outcome = str((dispute.get("dispute_outcome") or {}).get("outcome_code") or "")
            status = _DISPUTE_OUTCOME.get(outcome, DisputeStatus.CLOSED)
        else:
            status = DisputeStatus.OPEN
        return DisputeUpdate(
            ref=PaymentRef(
                payment_id=custom if custom.startswith("pay_") else None,
                gateway_payment_id=capture_id or None,
            ),
            gateway_dispute_id=str(dispute.get("dispute_id")),
            amount=amount,
            currency=currency,
            status=status,
            gateway_status=gateway_status or None,
            reason=dispute.get("reason"),
            evidence_due_by=_ts(dispute.get("seller_response_due_date")),
        )

    # ------------------------------------------------------------ webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """Check PayPal's signature over the raw body first; parse only after it holds."""
        transmission_id = _header(headers, "PAYPAL-TRANSMISSION-ID")
        transmission_time = _header(headers, "PAYPAL-TRANSMISSION-TIME")
        signature = _header(headers, "PAYPAL-TRANSMISSION-SIG")
        cert_url = _header(headers, "PAYPAL-CERT-URL")
        algo = _header(headers, "PAYPAL-AUTH-ALGO")
        if not (transmission_id and transmission_time and signature and cert_url and algo):
            raise SignatureError("missing PayPal transmission headers")
        if algo != AUTH_ALGO:
            raise SignatureError(f"unexpected PAYPAL-AUTH-ALGO {algo!r}")
        sent = _ts(transmission_time)
        if sent is None:
            raise SignatureError("PAYPAL-TRANSMISSION-TIME is not a time")
        if abs((self._clock() - sent).total_seconds()) > self._tolerance:
            raise SignatureError("PAYPAL-TRANSMISSION-TIME is outside the tolerance")
        check_cert_url(cert_url)
        if self.verification == "api":
            self._verify_with_api(body, transmission_id, transmission_time, signature, cert_url)
        else:
            try:
                raw_sig = base64.b64decode(signature, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise SignatureError("PAYPAL-TRANSMISSION-SIG is not base64") from exc
            key = self._certificate(cert_url).public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError("the certificate's key is not RSA")
            message = transmission_message(
                transmission_id, transmission_time, self.webhook_id, body
            )
            try:
                key.verify(raw_sig, message, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature as exc:
                raise SignatureError("PayPal's signature does not match the body") from exc
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError("signed body is not JSON") from exc
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("id"), str)
            or not isinstance(payload.get("event_type"), str)
        ):
            raise SignatureError("signed body is not a PayPal event")
        return VerifiedEvent(payload["id"], payload["event_type"], payload)

    def _certificate(self, url: str) -> x509.Certificate:
        """PayPal's signing certificate at `url`: fetched once, checked, cached until expiry."""
        now = self._clock()
        with self._certs_lock:
            cached = self._certs.get(url)
        if cached is not None and now <= cached.not_after:
            return cached.leaf
        try:
            response = self.cert_session.get(
                url, timeout=self._timeout, allow_redirects=False, stream=True
            )
            content = response.raw.read(MAX_CERT_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            # Not a signature problem: PayPal retries, and so may we.
            raise GatewayError(
                "gateway_unavailable", "Could not fetch PayPal's certificate", retryable=True
            ) from exc
        if response.status_code != 200:
            raise SignatureError(f"PAYPAL-CERT-URL answered {response.status_code}")
        if len(content) > MAX_CERT_BYTES:
            raise SignatureError("the certificate at PAYPAL-CERT-URL is too large")
        try:
            chain = x509.load_pem_x509_certificates(content)
        except ValueError as exc:
            raise SignatureError("PAYPAL-CERT-URL did not return a PEM certificate") from exc
        if self._trust_roots is None:
            self._trust_roots = load_trust_roots()
        leaf = verify_chain(chain, self._trust_roots, now)
        with self._certs_lock:
            self._certs[url] = _CachedCert(leaf, min(c.not_valid_after_utc for c in chain))
        return leaf

    def _verify_with_api(
        self, body: bytes, transmission_id: str, transmission_time: str, sig: str, cert_url: str
    ) -> None:
        """POST /v1/notifications/verify-webhook-signature with the raw body spliced in."""
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SignatureError("body is not JSON") from exc
        fields = {
            "auth_algo": AUTH_ALGO,
            "cert_url": cert_url,
            "transmission_id": transmission_id,
            "transmission_sig": sig,
            "transmission_time": transmission_time,
            "webhook_id": self.webhook_id,
        }
        head = json.dumps(fields, separators=(",", ":"))[:-1].encode()
        raw = head + b',"webhook_event":' + body.strip() + b"}"
        result = self._call("POST", "/v1/notifications/verify-webhook-signature", raw_body=raw)
        if result.get("verification_status") != "SUCCESS":
            raise SignatureError("PayPal says the signature is not valid")

    def interpret(self, event: VerifiedEvent) -> list[Update]:
        """Re-fetch what the event names and report its current state.

        Runs in the event job (never in the webhook request): a failed fetch is retried
        with the job. Types we only store give [].
        """
        kind = event.event_type
        resource = event.payload.get("resource") or {}
        if not isinstance(resource, Mapping) or kind not in HANDLED_EVENTS:
            return []
        if kind in VAULT_EVENTS:
            return self._vault_update(resource)
        if kind in PAYMENT_EVENTS:
            order_id = self._order_for(kind, resource)
            if not order_id:
                return []
            update = self.order_update(self._get_order(order_id))
            if kind == "CHECKOUT.PAYMENT-APPROVAL.REVERSED" and update.status in (
                PaymentStatus.PROCESSING,
                PaymentStatus.CREATED,
            ):
                # The approval was taken back before any capture: this attempt cannot pay.
                update = PaymentUpdate(
                    ref=update.ref,
                    status=PaymentStatus.FAILED,
                    amount=update.amount,
                    currency=update.currency,
                    failure_code="PAYMENT_APPROVAL_REVERSED",
                    failure_message="PayPal reversed the payer's approval",
                )
            return [update]
        if kind in REFUND_EVENTS:
            refund_id = resource.get("id")
            if not isinstance(refund_id, str):
                return []
            refund = self._call("GET", f"/v2/payments/refunds/{_path_id(refund_id, 'refund')}")
            capture_id = _last_segment(_link(refund, "up"))
            ref = PaymentRef(gateway_payment_id=capture_id)
            if capture_id:
                capture = self._call(
                    "GET", f"/v2/payments/captures/{_path_id(capture_id, 'capture')}"
                )
                ref = PaymentRef(
                    payment_id=capture.get("custom_id") or None,
                    reference=_order_id_of(capture),
                    gateway_payment_id=capture_id,
                )
            refunded = self.refund_update(refund, ref)
            if kind == "PAYMENT.CAPTURE.REVERSED" and not refunded.reason:
                refunded = replace(refunded, reason="reversed by PayPal")
            return [refunded]
        dispute_id = resource.get("dispute_id")
        if not isinstance(dispute_id, str):
            return []
        dispute = self._call("GET", f"/v1/customer/disputes/{_path_id(dispute_id, 'dispute')}")
        return [self.dispute_update(dispute)]

    def _order_for(self, kind: str, resource: Mapping[str, Any]) -> str | None:
        if kind.startswith("CHECKOUT.ORDER."):
            return resource.get("id") or None
        if kind == "CHECKOUT.PAYMENT-APPROVAL.REVERSED":
            return resource.get("order_id") or None
        order_id = _order_id_of(resource)
        if order_id:
            return order_id
        resource_id = resource.get("id")
        if not isinstance(resource_id, str):
            return None
        path = "authorizations" if kind.startswith("PAYMENT.AUTHORIZATION.") else "captures"
        fetched = self._call("GET", f"/v2/payments/{path}/{_path_id(resource_id, 'payment')}")
        return _order_id_of(fetched)

    def list_events(self, since: datetime) -> list[VerifiedEvent]:
        """GET /v1/notifications/webhooks-events for the window, every page (reconcile).

        Listed through our authenticated API session, so they need no signature.
        """
        params: dict[str, Any] | None = {
            "start_time": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_time": self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "page_size": 300,
        }
        url: str | None = None
        events: list[VerifiedEvent] = []
        for _ in range(100):
            page = self._call("GET", "/v1/notifications/webhooks-events", params=params, url=url)
            for item in page.get("events") or []:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("id"), str)
                    and isinstance(item.get("event_type"), str)
                ):
                    events.append(VerifiedEvent(item["id"], item["event_type"], item))
            next_url = _link(page, "next")
            if not next_url:
                break
            # Follow PayPal's own link, but only on our API host.
            if urlsplit(next_url).netloc != urlsplit(self.api_base).netloc:
                break
            url, params = next_url, None
        return events

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        """PayPal events carry no API secrets; drop anything token-like if one appears."""
        redacted: dict[str, Any] = redact(payload)  # a dict in, a dict out
        return redacted


def _error_from_response(response: requests.Response) -> GatewayError:
    """PayPal's error shape -> a Kassa GatewayError.

    REST: {"name", "message", "debug_id", "details": [{"issue", "description"}]};
    OAuth: {"error", "error_description"}. The HTTP status decides first (401, 403, 404,
    409, 429, 5xx), then the issue.
    """
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    details = [d for d in body.get("details") or [] if isinstance(d, Mapping)]
    issue = str(details[0].get("issue")) if details and details[0].get("issue") else None
    message = str(
        (details[0].get("description") if details else None)
        or body.get("message")
        or body.get("error_description")
        or f"PayPal answered {status}"
    )
    debug_id = body.get("debug_id")
    if debug_id:
        message = f"{message} (debug_id {debug_id})"
    name = str(body.get("name") or body.get("error") or "")
    if status == 401 or name in ("AUTHENTICATION_FAILURE", "invalid_client"):
        return GatewayError(
            "authentication_failed", message, http_status=status, decline_code=issue
        )
    if status == 403:
        return GatewayError("authentication_failed", message, http_status=403, decline_code=issue)
    if status == 404:
        return GatewayError("not_found", message, http_status=404, decline_code=issue)
    if status == 409:
        # PREVIOUS_REQUEST_IN_PROGRESS: the same PayPal-Request-Id is still running.
        return GatewayError(
            "gateway_unavailable", message, retryable=True, http_status=409, decline_code=issue
        )
    if status == 429:
        return GatewayError(
            "rate_limited", message, retryable=True, http_status=429, decline_code=issue
        )
    if status >= 500:
        return GatewayError(
            "gateway_unavailable", message, retryable=True, http_status=status, decline_code=issue
        )
    if issue in DECLINE_ISSUES:
        return GatewayError("payment_failed", message, http_status=status, decline_code=issue)
    if issue and ("IDEMPOTEN" in issue or issue == "DUPLICATE_REQUEST_ID"):
        return GatewayError("idempotency_conflict", message, http_status=status, decline_code=issue)
    return GatewayError("invalid_request", message, http_status=status, decline_code=issue)


__all__ = [
    "HANDLED_EVENTS",
    "PayPalGateway",
    "check_cert_url",
    "check_settings_safety",
    "from_paypal_value",
    "to_paypal_value",
    "transmission_message",
    "verify_chain",
]
