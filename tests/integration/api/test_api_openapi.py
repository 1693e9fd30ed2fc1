"""The OpenAPI document describes every endpoint with the models the code validates with;
Schemathesis checks the running API against it; /api/docs renders it without scripts."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings

from app.api import schemas
from tests.integration.api.conftest import (
    Api,
    checkout_body,
    complete_at_sandbox,
    new_key,
)


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def test_the_document_covers_every_api_route(public_api: Api) -> None:
    response = public_api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in public_api.app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi_document":
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routed |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
    assert (
        len(documented) == 31
    )  # + payment links (3), webhook endpoints/fulfilment (12), customers/charge (5)
    # Every reference resolves inside the document.
    names = set(doc["components"]["schemas"])
    assert {r.rsplit("/", 1)[-1] for r in refs(doc)} <= names
    # Request schemas are the validating models, unknown fields included.
    create = doc["paths"]["/api/v1/checkout-sessions"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = doc["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert body_schema["additionalProperties"] is False
    assert body_schema["required"] == ["items", "customer"]
    assert create["security"] == [{}, {"bearerAuth": []}]
    assert doc["paths"]["/api/v1/products"]["get"]["security"] == []
    refund = doc["paths"]["/api/v1/payments/{payment_id}/refunds"]["post"]
    assert {"201", "401", "403", "404", "409", "422", "429"} <= set(refund["responses"])
    assert "Idempotency-Key" in {p["name"] for p in refund["parameters"]}
    listing = doc["paths"]["/api/v1/payments"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert set(params) == set(schemas.PaymentListQuery.model_fields)
    assert params["created_after"]["schema"] == {"format": "date-time", "type": "string"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
        if tag == "link" and a.get("rel") == "stylesheet":
            self.stylesheets.append(a.get("href") or "")
        if tag == "a":
            self.links.append(a.get("href") or "")


def test_docs_page_is_self_hosted_and_lists_operations(public_api: Api) -> None:
    response = public_api.client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for text in (
        "POST /api/v1/checkout-sessions",
        "GET /api/v1/payments/{payment_id}",
        "Idempotency-Key",
        "refund_exceeds_remaining",
        "CheckoutSessionCreate",
        "Unknown fields are rejected",
        "created_after",
        "<h2>Refunds</h2>",
    ):
        assert text in html, text
    tags = _Tags()
    tags.feed(html)
    # Only our own static files: no CDN, no third-party script.
    assert all((s.get("src") or "").startswith("/static/") for s in tags.scripts)
    assert all(href.startswith("/static/") for href in tags.stylesheets)
    assert not any(href.startswith(("http:", "https:", "//")) for href in tags.links)
    with public_api.client.get(tags.stylesheets[-1]) as css:
        assert css.status_code == 200


# --------------------------------------------------------------------------- Schemathesis


@pytest.fixture
def fuzz_app(make_app: Callable[..., Flask]) -> tuple[Flask, str, dict[str, str]]:
    """An app with a write key and one paid payment (with a refund) to find."""
    app = make_app()
    token = new_key(app)
    api = Api(app, token)
    data = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    complete_at_sandbox(app, data["payment"]["gateway_reference"])
    refund = api.post(f"/payments/{data['payment']['id']}/refunds", {"amount": 100})
    ids = {
        "payment_id": data["payment"]["id"],
        "order_id": data["order"]["id"],
        "refund_id": refund.get_json()["data"]["id"],
    }
    return app, token, ids


def test_schemathesis_finds_no_server_errors_and_no_drift(
    fuzz_app: tuple[Flask, str, dict[str, str]],
) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    app, token, ids = fuzz_app
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert (
        len(operations) == 31
    )  # + payment links (3), webhook endpoints/fulfilment (12), customers/charge (5)
    seen: dict[str, set[int]] = {}

    for operation in operations:

        @settings(
            max_examples=25,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            # Half the time, aim at objects that exist so success responses are checked too.
            if (
                case.path_parameters
                and zlib.crc32(json.dumps(case.path_parameters, sort_keys=True).encode()) % 2 == 0
            ):
                case.path_parameters = {k: ids.get(k, v) for k, v in case.path_parameters.items()}
            response = case.call_and_validate(headers=headers, checks=checks)
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        run()

    # The fuzzing reached the success path of every operation, not only its errors.
    ok = {label for label, codes in seen.items() if codes & {200, 201}}
    assert len(ok) >= 10, seen  # all but capture (which needs an authorized payment)
