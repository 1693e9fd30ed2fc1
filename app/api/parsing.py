"""Request parsing: JSON bodies and query strings through the pydantic schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from app.api.errors import ApiError, validation_details
from app.inputs import unstorable

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M]) -> M:
    """The JSON body as `model` (strict: no type coercion); 400 validation_error otherwise."""
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    if not raw.strip():
        raw = b"{}"  # bodiless POSTs (capture, confirm) are an empty object
    elif (
        request.mimetype
        and request.mimetype != "application/json"
        and not request.mimetype.endswith("+json")
    ):
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise ApiError(
            400,
            "validation_error",
            "The request body is not valid.",
            validation_details(exc, "body"),
        ) from None
    bad = [
        {
            "field": field,
            "in": "body",
            "message": "contains NUL, which cannot be stored",
            "type": "string_unstorable",
        }
        for field in _unstorable_fields(parsed.model_dump(), ())
    ]
    if bad:
        raise ApiError(400, "validation_error", "The request body is not valid.", bad)
    return parsed


def _unstorable_fields(value: Any, path: tuple[str, ...]) -> Iterator[str]:
    """Paths (items.0.sku) of every string in a parsed body that cannot be stored. (A lone
    surrogate never gets this far: the JSON parser refuses it as invalid JSON.)"""
    if isinstance(value, str):
        if unstorable(value):
            yield ".".join(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unstorable_fields(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _unstorable_fields(item, (*path, str(index)))


def parse_query(model: type[M]) -> M:
    """The query string as `model` (strings converted); unknown parameters are an error."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(
            400,
            "validation_error",
            "The query parameters are not valid.",
            validation_details(exc, "query"),
        ) from None
