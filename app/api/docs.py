"""/api/docs: a readable page rendered server-side from the OpenAPI document (no scripts)."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, render_template

from app.api import docs_bp
from app.api.openapi import build


def _schema_label(schema: dict[str, Any]) -> str:
    """A short human label for a schema: `Payment`, `array of Order`, `string | null`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_schema_label(s) for s in schema["anyOf"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + _schema_label(schema.get("items", {}))
    if isinstance(kind, list):
        return " | ".join(kind)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    names = (
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "pattern",
        "default",
    )
    return ", ".join(f"{n}: {schema[n]}" for n in names if n in schema)


@docs_bp.get("/docs")
def api_docs() -> str:
    """The API reference, generated from /api/v1/openapi.json."""
    spec = build(current_app)
    tags = list(
        dict.fromkeys(
            tag for ops in spec["paths"].values() for op in ops.values() for tag in op["tags"]
        )
    )
    return render_template(
        "api/docs.html", spec=spec, tags=tags, label=_schema_label, constraints=_constraints
    )
