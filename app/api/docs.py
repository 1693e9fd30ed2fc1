"""/api/docs: a readable page rendered server-side from the OpenAPI document (no scripts)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import current_app, render_template
from markupsafe import Markup, escape

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


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline_markdown(text: str | None) -> Markup:
    """The bits of Markdown the descriptions use (`code`, **bold**), escaped first."""
    html = str(escape(text or ""))
    html = _CODE.sub(r"<code>\1</code>", html)
    return Markup(_BOLD.sub(r"<strong>\1</strong>", html))


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _example(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """An example value for a schema: its own example, else one built from its required
    fields (so the example is a request the API accepts)."""
    schema = _resolve(spec, schema)
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _example(spec, options[0], depth + 1) if options else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        required = schema.get("required", [])
        return {
            name: _example(spec, sub, depth + 1)
            for name, sub in schema.get("properties", {}).items()
            if name in required and depth < 4
        }
    if kind == "array":
        return [_example(spec, schema.get("items", {}), depth + 1)]
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": 1000, "number": 1, "boolean": True}.get(str(kind), "...")


# Placeholders for path parameters, shaped like real ids.
PATH_EXAMPLES = {
    "order_id": "ord_...",
    "payment_id": "pay_...",
    "refund_id": "rfd_...",
    "link_id": "plink_...",
}


def curl_example(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    """A copyable curl command for one operation, against this server."""
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    url_path = re.sub(r"\{([^}]+)\}", lambda m: PATH_EXAMPLES.get(m.group(1), "..."), path)
    verb = "" if method == "get" else f"-X {method.upper()} "
    lines = [f"curl -s {verb}'{base}{spec_prefix(spec)}{url_path}'"]
    if op.get("security") != [] and {} not in op.get("security", []):
        lines.append('  -H "Authorization: Bearer $KASSA_KEY"')
    if method == "post":
        # A fresh key per run: repeating the command with the same key replays the answer.
        action = op["operationId"].rsplit("_", 1)[-1]
        lines.append(f'  -H "Idempotency-Key: {action}-$(date +%s)"')
    body = op.get("requestBody")
    if body:
        example = _example(spec, body["content"]["application/json"]["schema"])
        lines.append("  -H 'Content-Type: application/json'")
        lines.append(f"  -d '{json.dumps(example, indent=2)}'")
    return " \\\n".join(lines)


def spec_prefix(spec: dict[str, Any]) -> str:
    servers = spec.get("servers") or [{}]
    return str(servers[0].get("url", "")).rstrip("/") if servers else ""


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
        "api/docs.html",
        spec=spec,
        tags=tags,
        label=_schema_label,
        constraints=_constraints,
        md=inline_markdown,
        curl=lambda path, method, op: curl_example(spec, path, method, op),
    )
