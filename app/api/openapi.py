"""The OpenAPI 3.1 document, generated from the routes and the pydantic schemas.

Each API view carries an `@operation(...)` description (summary, body, query and
response models); the document is built from the app's URL map, so an endpoint that
exists is documented, with the very models that validate and serialise it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema

from app.api import schemas

REF = "#/components/schemas/{model}"
F = TypeVar("F", bound=Callable[..., Any])

ERROR_TEXT = {
    400: "Invalid request (validation_error names each bad field), gateway not available, "
    "or a confirm proven false (signature_invalid)",
    401: "Missing, malformed, unknown or revoked API key",
    402: "The payment was declined (card_declined, payment_failed)",
    403: "The API key is read-only (insufficient_scope)",
    404: "No such object (not_found)",
    409: "Conflict: invalid_state, out_of_stock, or idempotency_key_in_progress",
    413: "Body too large (payload_too_large)",
    415: "Body is not application/json",
    422: "idempotency_key_reused with another body; refund_exceeds_remaining",
    429: "Too many requests (rate_limited); see Retry-After",
    502: "The gateway refused our call (gateway_error)",
    503: "The gateway is not answering (gateway_unavailable); see Retry-After",
}


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    auth: Literal["public", "optional", "read", "write"]
    response: type[BaseModel] | None = None
    many: bool = False
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def operation(**kwargs: Any) -> Callable[[F], F]:
    """Describe an API view for the OpenAPI document."""
    spec = Operation(**kwargs)

    def attach(view: F) -> F:
        view.__dict__["openapi"] = spec  # read back by build() with getattr(view, "openapi")
        return view

    return attach


# Text a database here cannot store: refused in every request string (app/api/parsing.py,
# app/errors.py), so the document says so wherever a field has no stricter pattern. (Lone
# surrogates cannot be written as valid JSON text at all; the JSON parser refuses them.)
STORABLE_TEXT = r"^[^\x00]*$"


class RequestJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, plus what the API's parsing refuses beyond the models."""

    def str_schema(self, schema: Any) -> JsonSchemaValue:
        result = super().str_schema(schema)
        if self.mode == "validation" and "pattern" not in result and "format" not in result:
            result["pattern"] = STORABLE_TEXT
        return result


# Where each response carries the ids that other operations take as path parameters: the
# OpenAPI links that let a client (and Schemathesis' stateful phase) follow one answer
# with the next request.
LINK_SOURCES: dict[type[BaseModel], dict[str, str]] = {
    schemas.CheckoutSession: {"payment_id": "/data/payment/id", "order_id": "/data/order/id"},
    schemas.Payment: {"payment_id": "/data/id", "order_id": "/data/order_id"},
    schemas.Order: {"order_id": "/data/id"},
    schemas.Refund: {"refund_id": "/data/id", "payment_id": "/data/payment_id"},
    schemas.PaymentLink: {"link_id": "/data/id"},
    schemas.WebhookEndpoint: {"endpoint_id": "/data/id"},
    schemas.WebhookEndpointCreated: {"endpoint_id": "/data/id"},
    schemas.WebhookEndpointSecret: {"endpoint_id": "/data/endpoint_id"},
    schemas.CustomerRecord: {"customer_id": "/data/id"},
    schemas.SavedPaymentMethod: {"method_id": "/data/id", "customer_id": "/data/customer_id"},
    schemas.Subscription: {"subscription_id": "/data/id"},
}


def _add_links(built: list[tuple[Operation, list[str], dict[str, Any]]]) -> None:
    """Links from each single-object success answer to every operation whose path
    parameters that answer provides."""
    for spec, _, op in built:
        sources = LINK_SOURCES.get(spec.response) if spec.response and not spec.many else None
        if not sources:
            continue
        links: dict[str, Any] = {}
        for _, names, target in built:
            if target is op or not names or not set(names) <= set(sources):
                continue
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": {name: f"$response.body#{sources[name]}" for name in names},
            }
        if links:
            op["responses"][str(spec.status)]["links"] = links


def _models(
    ops: list[Operation],
) -> list[tuple[type[BaseModel], Literal["validation", "serialization"]]]:
    pairs: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for op in ops:
        uses: tuple[tuple[type[BaseModel] | None, Literal["validation", "serialization"]], ...]
        uses = ((op.body, "validation"), (op.query, "validation"), (op.response, "serialization"))
        for model, mode in uses:
            if model is not None and (model, mode) not in pairs:
                pairs.append((model, mode))
    pairs.append((schemas.ErrorEnvelope, "serialization"))
    return pairs


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch and default."""
    schema = copy.deepcopy(schema)
    options = schema.pop("anyOf", None)
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest
    if schema.get("default", 0) is None:
        schema.pop("default")
    schema.pop("title", None)
    return schema


def _query_parameters(
    model: type[BaseModel], components: dict[str, Any], name: str
) -> list[dict[str, Any]]:
    schema = components[name]
    params = []
    for prop, prop_schema in schema.get("properties", {}).items():
        param_schema = _without_null(prop_schema)
        description = param_schema.pop("description", None)
        param: dict[str, Any] = {
            "name": prop,
            "in": "query",
            "required": False,
            "schema": param_schema,
        }
        if description:
            param["description"] = description
        params.append(param)
    return params


def _envelope(data_schema: dict[str, Any], many: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "success": {"const": True},
        "data": {"type": "array", "items": data_schema} if many else data_schema,
    }
    required = ["success", "data"]
    if many:
        props["next_cursor"] = {
            "type": ["string", "null"],
            "description": "Pass as ?cursor= for the next page; null on the last page.",
        }
        required.append("next_cursor")
    return {"type": "object", "required": required, "properties": props}


def _path(rule: str) -> tuple[str, list[str]]:
    names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule), names


def build(app: Flask) -> dict[str, Any]:
    """The whole document for this app's API routes."""
    found: list[tuple[str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        spec = getattr(view, "openapi", None)
        if spec is None or not rule.endpoint.startswith("api."):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method.lower(), spec))
    ops = [spec for _, _, spec in found]
    key_map, top = models_json_schema(
        _models(ops), ref_template=REF, schema_generator=RequestJsonSchema
    )
    components: dict[str, Any] = top.get("$defs", {})
    error_ref = key_map[(schemas.ErrorEnvelope, "serialization")]
    error_response = {
        "description": "Error",
        "content": {"application/json": {"schema": error_ref}},
    }

    paths: dict[str, Any] = {}
    built: list[tuple[Operation, list[str], dict[str, Any]]] = []
    for rule_path, method, spec in sorted(found):
        path, path_names = _path(rule_path)
        parameters: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": schemas.ID_PATTERN},
            }
            for name in path_names
        ]
        if spec.query is not None:
            name = key_map[(spec.query, "validation")]["$ref"].rsplit("/", 1)[-1]
            parameters += _query_parameters(spec.query, components, name)
        responses: dict[str, Any] = {}
        success_headers: dict[str, Any] = {}
        if method == "post":
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Same key and body within 24 h replays the first response.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$",
                    },
                }
            )
            success_headers["Idempotent-Replayed"] = {
                "description": "`true` when this is a stored response being replayed.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        if spec.status == 201:
            success_headers["Location"] = {
                "description": "URL of the created resource.",
                "schema": {"type": "string"},
            }
        if spec.response is not None:
            data_ref = key_map[(spec.response, "serialization")]
            responses[str(spec.status)] = {
                "description": spec.summary,
                "content": {"application/json": {"schema": _envelope(data_ref, spec.many)}},
            }
            if success_headers:
                responses[str(spec.status)]["headers"] = success_headers
        codes = set(spec.errors) | {429}
        if spec.body is not None or spec.query is not None or path_names:
            codes.add(400)
        if spec.auth in ("read", "write", "optional"):
            codes.add(401)
        if spec.auth == "write":
            codes.add(403)
        if path_names:
            codes.add(404)
        if spec.body is not None:
            codes |= {413, 415}
        if method == "post":
            codes |= {409, 422}  # Idempotency-Key in progress / reused
        for code in sorted(codes):
            responses[str(code)] = {
                "description": ERROR_TEXT.get(code, "Error"),
                "content": error_response["content"],
            }
        responses["default"] = error_response
        op: dict[str, Any] = {
            "operationId": method + "_" + re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_"),
            "summary": spec.summary,
            "tags": [spec.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if spec.description:
            op["description"] = spec.description
        if spec.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": key_map[(spec.body, "validation")]}},
            }
        if spec.auth == "public":
            op["security"] = []
        elif spec.auth == "optional":
            op["security"] = [{}, {"bearerAuth": []}]
        else:
            op["security"] = [{"bearerAuth": []}]
            op["x-scope"] = spec.auth
        op.update(spec.extra)
        paths.setdefault(path, {})[method] = op
        built.append((spec, path_names, op))
    _add_links(built)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{app.config.get('STORE_NAME') or 'Kassa'} API",
            "version": "1.0.0",
            "description": (
                'Kassa\'s JSON API. Every answer is an envelope: `{"success": true, '
                '"data": ...}` or `{"success": false, "error": {"code", "message", '
                '"details"}}`. Amounts are integers in the currency\'s minor units. '
                "Authenticate with `Authorization: Bearer <key>` (create one with "
                "`flask --app wsgi create-api-key NAME --scope read|write`)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Kassa API key.",
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }
