"""Idempotency-Key for every POST: the first response is kept and replayed.

- Same key, same body, within API_IDEMPOTENCY_HOURS: the stored response, byte for byte,
  with `Idempotent-Replayed: true`.
- Same key, another body: 422 idempotency_key_reused.
- Same key while the first request still runs: 409 idempotency_key_in_progress.
- Keys are scoped to the API key, or to the client address for the public endpoint.

The claim is an insert-or-ignore on the (scope, key) unique constraint, committed before
the work starts, so of many concurrent duplicates exactly one does the work. A request
that fails validation stores nothing (the body is parsed before the claim); a 5xx or a
validation error raised by the core releases the claim, so the client can retry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, cast

from flask import Response, current_app, g, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import CursorResult, delete
from werkzeug.exceptions import HTTPException

from app import jobs
from app.api import errors
from app.api.parsing import parse_body
from app.extensions import db
from app.models import IdempotencyKey
from app.models.base import utcnow
from app.payments import store
from app.payments.errors import KassaError
from app.payments.uow import lock, unit_of_work

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# A claim whose request never finished (the worker died) can be taken over after this.
ABANDONED_AFTER = timedelta(minutes=5)
KEPT_HEADERS = ("Content-Type", "Location", "Retry-After")

# A view that takes the parsed body as `body` (and its URL values); the wrapper takes
# only the URL values.
View = Callable[..., ResponseReturnValue]


def scope() -> str:
    key = g.get("api_key")
    if key is not None:
        return f"api_key:{key.id}"
    address = request.remote_addr or "unknown"
    return "client:" + hashlib.sha256(address.encode()).hexdigest()[:40]


def _fingerprint(body: BaseModel) -> str:
    canonical = body.model_dump_json(exclude_unset=True)
    return hashlib.sha256(f"{request.method}\n{request.path}\n{canonical}".encode()).hexdigest()


def _read_key() -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise errors.ApiError(
            400,
            "validation_error",
            "Invalid Idempotency-Key header.",
            [
                {
                    "field": HEADER,
                    "in": "header",
                    "message": f"1 to {MAX_KEY_LENGTH} printable ASCII characters",
                }
            ],
        )
    return key


def _claim(scope_name: str, key: str, fingerprint: str) -> tuple[int | None, dict[str, Any]]:
    """(row id, {}) when this request owns the key; (None, the stored row) otherwise."""
    for _ in range(3):
        now = utcnow()
        expires = now + timedelta(hours=current_app.config.get("API_IDEMPOTENCY_HOURS", 24))
        values = {
            "scope": scope_name,
            "key": key,
            "method": request.method,
            "path": request.path[:255],
            "fingerprint": fingerprint,
            "state": "in_progress",
            "created_at": now,
            "expires_at": expires,
        }
        with unit_of_work():
            claimed = store.insert_or_ignore(IdempotencyKey, values, conflict=("scope", "key"))
            if claimed is not None:
                return int(claimed.id), {}
            row = lock(IdempotencyKey, scope=scope_name, key=key)
            if row is None:
                continue  # released meanwhile: try to claim again
            abandoned = row.state == "in_progress" and row.created_at < now - ABANDONED_AFTER
            if row.expires_at <= now or abandoned:
                # Expired or abandoned: this request starts afresh under the same key.
                for name, value in values.items():
                    setattr(row, name, value)
                row.response_status = row.response_body = row.response_headers = None
                return row.id, {}
            return None, {
                "fingerprint": row.fingerprint,
                "state": row.state,
                "status": row.response_status,
                "body": row.response_body,
                "headers": row.response_headers or {},
            }
    raise errors.ApiError(
        409,
        "idempotency_key_in_progress",
        "Another request with this Idempotency-Key is being processed.",
    )


def _finish(row_id: int, response: Response) -> None:
    with unit_of_work():
        row = lock(IdempotencyKey, id=row_id)
        if row is None:
            return
        row.state = "completed"
        row.response_status = response.status_code
        row.response_body = response.get_data(as_text=True)
        row.response_headers = {
            h: response.headers[h] for h in KEPT_HEADERS if h in response.headers
        }


def _release(row_id: int) -> None:
    with unit_of_work():
        db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


@jobs.task("api.purge_idempotency_keys")
def purge_expired() -> int:
    """Delete stored responses past their replay window (a periodic job, or the CLI)."""
    with unit_of_work():
        # Typed as Result; a DELETE's is a CursorResult, which has rowcount (SQLAlchemy's
        # stubs cannot tell the two apart by statement).
        result = cast(
            "CursorResult[Any]",
            db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())),
        )
    return int(result.rowcount or 0)


def _replay(stored: dict[str, Any]) -> Response:
    response = Response(stored["body"], status=stored["status"])
    for name, value in stored["headers"].items():
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def _as_response(exc: Exception) -> Response | None:
    """The response the blueprint's error handlers would give, so it can be stored."""
    if isinstance(exc, errors.ApiError):
        return errors.error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, KassaError):
        return errors.kassa_error_response(exc)
    if isinstance(exc, HTTPException) and (exc.code or 500) < 500:
        return errors.http_error_response(exc)
    return None


def _should_keep(response: Response) -> bool:
    if response.status_code >= 500:
        return False  # a failure on our side: let the client retry with the same key
    if response.status_code == 400 and response.is_json:
        error = (response.get_json(silent=True) or {}).get("error") or {}
        return error.get("code") != "validation_error"
    return True


def idempotent(model: type[BaseModel], *, required: bool = False) -> Callable[[View], View]:
    """Parse the body with `model` (400 before anything is stored), then run the view at
    most once per Idempotency-Key. The view receives the parsed body as `body`. With
    `required`, a request without the header is refused (400) before anything happens."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            body = parse_body(model)
            key = _read_key()
            if key is None and required:
                raise errors.ApiError(
                    400,
                    "validation_error",
                    "This request needs an Idempotency-Key header.",
                    [{"field": HEADER, "in": "header", "message": "required"}],
                )
            if key is None:
                return view(*args, body=body, **kwargs)
            fingerprint = _fingerprint(body)
            row_id, stored = _claim(scope(), key, fingerprint)
            if row_id is None:
                if stored["fingerprint"] != fingerprint:
                    raise errors.ApiError(
                        422,
                        "idempotency_key_reused",
                        "This Idempotency-Key was used with a different request body; "
                        "use a new key for a new request.",
                        [{"field": HEADER, "in": "header", "message": "already used"}],
                    )
                if stored["state"] != "completed":
                    raise errors.ApiError(
                        409,
                        "idempotency_key_in_progress",
                        "A request with this Idempotency-Key is still being processed; "
                        "retry shortly.",
                        headers={"Retry-After": "1"},
                    )
                return _replay(stored)
            try:
                response = current_app.make_response(view(*args, body=body, **kwargs))
            except Exception as exc:
                failed = _as_response(exc)
                if failed is None:
                    _release(row_id)
                    raise
                response = failed
            if _should_keep(response):
                _finish(row_id, response)
            else:
                _release(row_id)
            return response

        return wrapper

    return decorate
