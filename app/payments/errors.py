"""Domain errors. Doors turn these into responses in one place (JSON under /api,
a page or form message elsewhere); the core never builds responses itself."""

from __future__ import annotations

from typing import Any

from app.gateways.base import gateway_code


class KassaError(Exception):
    code = "error"
    http_status = 400

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code:
            self.code = code
        if http_status:
            self.http_status = http_status


class ValidationFailed(KassaError):
    code = "validation_error"
    http_status = 400


class NotFound(KassaError):
    code = "not_found"
    http_status = 404


class SignatureInvalid(KassaError):
    """What the browser brought back is forged or belongs to another payment."""

    code = "signature_invalid"
    http_status = 400


class OutOfStock(KassaError):
    code = "out_of_stock"
    http_status = 409


class InvalidState(KassaError):
    """The object is not in a state that allows this action (e.g. refund a failed payment)."""

    code = "invalid_state"
    http_status = 409


class RefundExceedsRemaining(KassaError):
    code = "refund_exceeds_remaining"
    http_status = 422


class GatewayNotAvailable(KassaError):
    code = "gateway_not_available"
    http_status = 400


class PaymentGatewayFailed(KassaError):
    """A gateway call failed; `code` carries the gateway error code (GatewayCode), whose
    facts give the HTTP status and the API's code."""

    code = "gateway_unavailable"
    http_status = 502

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code, http_status=gateway_code(code).http_status)

    @property
    def api_code(self) -> str:
        return gateway_code(self.code).api_code
