"""The benchmark's gateway adapter: a real HTTP call per checkout to bench.fake_gateway.

It implements the parts of the Gateway protocol the checkout path uses, over a
keep-alive `requests` session per thread, the way an SDK-based adapter would.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests

from app.gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentRef,
    VerifiedEvent,
)


class BenchGateway:
    name = "benchpay"
    display_name = "Bench gateway"

    def __init__(self, api_base: str, timeout: float = 10.0) -> None:
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        try:
            response = self._http().post(
                f"{self.api_base}/v1/checkout/sessions",
                data={
                    "mode": "payment",
                    "line_items[0][price_data][currency]": request.currency.lower(),
                    "line_items[0][price_data][unit_amount]": request.amount,
                    "line_items[0][price_data][product_data][name]": "Order",
                    "line_items[0][quantity]": 1,
                    "success_url": request.success_url,
                    "cancel_url": request.cancel_url,
                    "metadata[payment_id]": request.payment_id,
                },
                headers={
                    "Idempotency-Key": request.idempotency_key,
                    "Authorization": "Bearer sk_bench",
                },
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise GatewayError("gateway_unavailable", str(exc), retryable=True) from exc
        if response.status_code != 200:
            raise GatewayError(
                "gateway_unavailable",
                f"HTTP {response.status_code}",
                retryable=True,
                http_status=response.status_code,
            )
        body = response.json()
        return CheckoutSession(reference=body["id"], redirect_url=body["url"])

    def retrieve(self, ref: PaymentRef) -> Any:
        raise GatewayError("invalid_request", "not supported by the bench gateway")

    def confirm_return(self, ref: PaymentRef, params: Any) -> None:
        return None

    def cancel_checkout(self, ref: PaymentRef) -> None:
        return None

    def refund(self, request: Any) -> Any:
        raise GatewayError("invalid_request", "not supported by the bench gateway")

    def capture(self, request: Any) -> Any:
        raise GatewayError("invalid_request", "not supported by the bench gateway")

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        raise GatewayError("invalid_request", "not supported by the bench gateway")

    def interpret(self, event: VerifiedEvent) -> list[Any]:
        return []

    def redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload
