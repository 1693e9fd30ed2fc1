"""Request parsing: JSON bodies and query strings through the pydantic schemas."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from app.api.errors import ApiError, validation_details

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
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise ApiError(
            400,
            "validation_error",
            "The request body is not valid.",
            validation_details(exc, "body"),
        ) from None


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
