"""Everything under /api answers JSON: domain errors, HTTP errors, limits, crashes.

One envelope, stable machine codes. The HTML handlers in app/errors.py hand over to
`http_error_response` / `server_error_response` for /api paths (404 and 405 never reach
a blueprint's handlers, because no route matched).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.payments.errors import KassaError, PaymentGatewayFailed

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

# HTTP errors raised by Flask/werkzeug -> API codes.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error the API answers directly (auth, idempotency, parsing)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX) or request.path == API_PREFIX.rstrip("/")


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(
        success=False, error={"code": code, "message": message, "details": details or []}
    )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_details(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    """pydantic errors -> [{"field": "items.0.quantity", "in": "body", ...}]."""
    details = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        details.append(
            {
                "field": ".".join(str(part) for part in err["loc"]),
                "in": where,
                "message": err["msg"],
                "type": err["type"],
            }
        )
    return details


def kassa_error_response(exc: KassaError) -> Response:
    if isinstance(exc, PaymentGatewayFailed):
        # The gateway's code decides the status and the API's code (GatewayCode).
        details = [{"gateway_code": exc.code}]
        headers = {"Retry-After": "30"} if exc.http_status == 503 else None
        return error_response(exc.http_status, exc.api_code, exc.message, details, headers)
    return error_response(exc.http_status, exc.code, exc.message, exc.details)


def _retry_after() -> int:
    from app.extensions import limiter

    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, int(current.reset_at - time.time()))


def http_error_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "http_error")
    headers: dict[str, str] = {}
    details: list[dict[str, Any]] = []
    message = exc.description or exc.name
    if status == 405 and isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    if status == 404:
        message = "Nothing here: check the path (see /api/v1/openapi.json)."
    if status == 413:
        message = "The request body is too large."
    if status == 429:
        retry = _retry_after()
        headers["Retry-After"] = str(retry)
        details = [{"retry_after": retry, "limit": str(exc.description)}]
        message = "Too many requests; retry after the number of seconds in Retry-After."
    if status >= 500:
        message = "Something went wrong on our side."
    return error_response(status, code, message, details, headers)


def server_error_response() -> Response:
    return error_response(
        500,
        "internal_error",
        "Something went wrong on our side. Retrying with the same Idempotency-Key is safe.",
    )


def register(bp: Blueprint) -> None:
    """Handlers for errors raised inside the API's views."""

    @bp.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @bp.errorhandler(KassaError)
    def domain_error(exc: KassaError) -> Response:
        return kassa_error_response(exc)

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_error_response(exc)

    @bp.errorhandler(500)
    def server_error(exc: Exception) -> Response:
        return server_error_response()
