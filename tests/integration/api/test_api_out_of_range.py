"""Numbers and dates beyond what the databases (or datetime) hold are a 400 envelope, never
a 500, on SQLite and PostgreSQL. Issue 23, item 2."""

from __future__ import annotations

import base64

import pytest
from flask import Flask

from app.gateways.sandbox import SIGNATURE_HEADER, sign
from tests.integration.api.conftest import Api, error_code, new_key

BOTH = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


def cursor_for(value: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


@BOTH
@pytest.mark.parametrize("listing", ["/orders", "/payments"])
@pytest.mark.parametrize(
    "query",
    [
        {"cursor": cursor_for(2**63)},
        {"cursor": cursor_for(2**31)},  # INTEGER ids on PostgreSQL are 32-bit
        {"cursor": cursor_for(10**400)},
        {"created_after": "0001-01-01T00:00:00+14:00"},
        {"created_before": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_out_of_range_list_parameters_are_a_400(
    app: Flask, db_backend: str, listing: str, query: dict[str, str]
) -> None:
    api = Api(app, new_key(app, "read"))
    response = api.get(listing, query_string=query)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert error_code(response) == "validation_error"


@BOTH
def test_the_largest_cursor_and_the_date_edges_still_work(app: Flask, db_backend: str) -> None:
    api = Api(app, new_key(app, "read"))
    assert api.get("/orders", query_string={"cursor": cursor_for(2**31 - 1)}).status_code == 200
    edge = {"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T23:59:59Z"}
    assert api.get("/payments", query_string=edge).status_code == 200


@BOTH
def test_a_delivery_log_cursor_beyond_an_id_is_a_400(app: Flask, db_backend: str) -> None:
    api = Api(app, new_key(app))
    created = api.post("/webhook-endpoints", {"url": "https://example.com/hooks"})
    assert created.status_code == 201, created.get_data(as_text=True)
    endpoint = created.get_json()["data"]["id"]
    for cursor in ("9" * 20, str(2**31)):
        response = api.get(
            f"/webhook-endpoints/{endpoint}/deliveries", query_string={"cursor": cursor}
        )
        assert response.status_code == 400 and error_code(response) == "validation_error"
    assert (
        api.get(
            f"/webhook-endpoints/{endpoint}/deliveries", query_string={"cursor": "5"}
        ).status_code
        == 200
    )


@BOTH
def test_a_recover_since_out_of_range_is_a_400(app: Flask, db_backend: str) -> None:
    api = Api(app, new_key(app))
    endpoint = api.post("/webhook-endpoints", {"url": "https://example.com/hooks"}).get_json()[
        "data"
    ]["id"]
    response = api.post(
        f"/webhook-endpoints/{endpoint}/recover", {"since": "0001-01-01T00:00:00+14:00"}
    )
    assert response.status_code == 400 and error_code(response) == "validation_error"


@BOTH
@pytest.mark.parametrize("timestamp", ["9" * 309, "1" + "0" * 20, "١٧٠٠٠٠٠٠٠٠"])
def test_a_sandbox_signature_timestamp_out_of_range_is_refused(
    app: Flask, db_backend: str, timestamp: str
) -> None:
    body = b'{"id": "evt_1", "type": "payment.succeeded", "data": {}}'
    secret = app.config["SANDBOX_WEBHOOK_SECRET"]
    genuine = sign(secret, body, 1)
    header = genuine.replace("t=1,", f"t={timestamp},")
    response = app.test_client().post(
        "/webhooks/sandbox",
        data=body,
        headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
