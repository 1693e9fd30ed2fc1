"""Everything under /api answers the JSON envelope, with stable codes and the right status:
authentication and scope, validation with field paths, domain and gateway errors, HTTP
errors (404, 405, 413, 415, 429, 500) that never turn into an HTML page."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import ApiKey, Order, Payment, Product
from app.models.base import utcnow
from tests.integration.api.conftest import (
    Api,
    FakeGateway,
    checkout_body,
    complete_at_sandbox,
    error_code,
    new_key,
)


def assert_json_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert b"<html" not in response.data.lower()
    assert error_code(response) == code
    return response.get_json()["error"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- authentication


def test_endpoints_other_than_catalog_and_checkout_need_a_key(public_api: Api) -> None:
    for path in (
        "/orders",
        "/payments",
        "/orders/ord_x",
        "/payments/pay_x",
        "/payments/pay_x/events",
        "/refunds/rfd_x",
    ):
        response = public_api.get(path)
        assert_json_error(response, 401, "authentication_required")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_json_error(
        public_api.post("/payments/pay_x/refunds", {}), 401, "authentication_required"
    )
    assert public_api.get("/products").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",  # wrong scheme
        "Bearer",  # no key
        "Bearer not-a-kassa-key",  # malformed
        "Bearer kassa_0123456789ab_" + "A" * 43,  # well-formed, unknown
    ],
)
def test_malformed_or_unknown_keys_are_refused(api_app: Flask, header: str) -> None:
    response = api_app.test_client().get("/api/v1/payments", headers={"Authorization": header})
    assert_json_error(response, 401, "invalid_api_key")


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(
    api_app: Flask, write_key: str
) -> None:
    forged = write_key[:-4] + ("AAAA" if not write_key.endswith("AAAA") else "BBBB")
    assert_json_error(Api(api_app, forged).get("/payments"), 401, "invalid_api_key")


def test_a_revoked_key_stops_working(api_app: Flask, write_key: str) -> None:
    api = Api(api_app, write_key)
    assert api.get("/payments").status_code == 200
    runner = api_app.test_cli_runner()
    result = runner.invoke(args=["revoke-api-key", write_key[:18]])
    assert result.exit_code == 0, result.output
    assert_json_error(api.get("/payments"), 401, "invalid_api_key")


def test_a_bad_key_is_refused_even_on_the_public_checkout(public_api: Api) -> None:
    response = public_api.post(
        "/checkout-sessions", checkout_body(), headers={"Authorization": "Bearer nope"}
    )
    assert_json_error(response, 401, "invalid_api_key")
    with public_api.app.app_context():
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 0


def test_a_read_key_reads_but_cannot_write(api_app: Flask, read_key: str) -> None:
    api = Api(api_app, read_key)
    assert api.get("/payments").status_code == 200
    for path, body in (
        ("/payments/pay_x/refunds", {"amount": 100}),
        ("/payments/pay_x/capture", {}),
        ("/payments/pay_x/confirm", {}),
    ):
        error = assert_json_error(api.post(path, body), 403, "insufficient_scope")
        assert "read-only" in error["message"]


def test_key_use_is_recorded_and_only_a_hash_is_stored(api_app: Flask, write_key: str) -> None:
    with api_app.app_context():
        key = db.session.execute(select(ApiKey)).scalar_one()
        assert key.last_used_at is None
        assert write_key not in (key.key_hash, key.prefix) and key.prefix == write_key[:18]
    Api(api_app, write_key).get("/payments")
    with api_app.app_context():
        assert db.session.execute(select(ApiKey.last_used_at)).scalar_one() is not None


def test_cli_creates_keys_shown_once_and_lists_them(api_app: Flask) -> None:
    runner = api_app.test_cli_runner()
    result = runner.invoke(args=["create-api-key", "back office", "--scope", "read"])
    assert result.exit_code == 0, result.output
    token = next(line for line in result.output.splitlines() if line.startswith("kassa_"))
    assert Api(api_app, token).get("/orders").status_code == 200
    listed = runner.invoke(args=["list-api-keys"]).output
    assert token[:18] in listed and "read" in listed and "back office" in listed
    assert token not in listed
    assert runner.invoke(args=["create-api-key", "x", "--scope", "admin"]).exit_code != 0
    assert runner.invoke(args=["revoke-api-key", "kassa_nope"]).exit_code != 0


# --------------------------------------------------------------------------- validation


def test_validation_errors_name_each_field_by_path(public_api: Api) -> None:
    body = {
        "items": [{"sku": "tee-usd", "quantity": 0}, {"sku": "", "quantity": "2"}],
        "customer": {"email": "not-an-email"},
        "coupon": "FREE",
    }
    error = assert_json_error(public_api.post("/checkout-sessions", body), 400, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert {
        "items.0.quantity",
        "items.1.sku",
        "items.1.quantity",
        "customer.email",
        "customer.name",
        "coupon",
    } <= fields
    assert all(d["in"] == "body" for d in error["details"])


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null", b'"text"'])
def test_bodies_that_are_not_a_json_object_are_validation_errors(
    public_api: Api, body: bytes
) -> None:
    response = public_api.post(
        "/checkout-sessions", data=body, headers={"Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "validation_error")


def test_bodies_must_be_json(public_api: Api) -> None:
    response = public_api.post(
        "/checkout-sessions",
        data="items=tee-usd",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_json_error(response, 415, "unsupported_media_type")


def test_query_parameters_are_validated(api: Api) -> None:
    error = assert_json_error(
        api.get("/payments?status=paid-ish&limit=0&colour=red"), 400, "validation_error"
    )
    assert {d["field"] for d in error["details"]} == {"status", "limit", "colour"}
    assert all(d["in"] == "query" for d in error["details"])
    assert_json_error(
        api.get("/orders?created_after=2026-01-01T00:00:00"), 400, "validation_error"
    )  # a time without a zone is ambiguous
    assert_json_error(api.get("/orders?cursor=garbage"), 400, "validation_error")


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://localhost/thanks", True),  # PUBLIC_BASE_URL's host
        ("https://shop.example.com/done?session={CHECKOUT_SESSION_ID}", True),
        ("https://evil.example.net/phish", False),
        ("https://shop.example.com.evil.net/", False),
        ("https://user@shop.example.com/", False),
        ("javascript:alert(1)", False),
        ("//shop.example.com/x", False),
        ("/relative/path", False),
    ],
)
def test_return_urls_only_on_allowed_hosts(
    make_app: Callable[..., Flask], url: str, allowed: bool
) -> None:
    app = make_app(PUBLIC_BASE_URL="http://localhost", ALLOWED_RETURN_HOSTS=["shop.example.com"])
    response = Api(app).post("/checkout-sessions", checkout_body(success_url=url, cancel_url=url))
    if allowed:
        assert response.status_code == 201, response.get_json()
        with app.app_context():
            session = app.extensions["kassa_gateways"]["sandbox"].processor.get(
                response.get_json()["data"]["payment"]["gateway_reference"]
            )
            assert session.cancel_url == url
    else:
        error = assert_json_error(response, 400, "validation_error")
        assert {d["field"] for d in error["details"]} == {"success_url", "cancel_url"}


# --------------------------------------------------------------------------- domain errors


def test_an_https_store_only_returns_to_https(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        PUBLIC_BASE_URL="https://pay.example.com", ALLOWED_RETURN_HOSTS=["shop.example.com"]
    )
    api = Api(app)
    insecure = api.post(
        "/checkout-sessions", checkout_body(success_url="http://shop.example.com/thanks")
    )
    assert_json_error(insecure, 400, "validation_error")
    secure = api.post(
        "/checkout-sessions", checkout_body(success_url="https://shop.example.com/thanks")
    )
    assert secure.status_code == 201


def test_domain_errors_map_to_codes(api: Api, public_api: Api) -> None:
    assert_json_error(api.get("/orders/ord_missing"), 404, "not_found")
    assert_json_error(api.get("/payments/pay_missing"), 404, "not_found")
    assert_json_error(api.get("/refunds/rfd_missing"), 404, "not_found")
    assert_json_error(api.get("/payments/pay_missing/events"), 404, "not_found")
    assert_json_error(api.post("/payments/pay_missing/refunds", {}), 404, "not_found")
    error = assert_json_error(
        public_api.post(
            "/checkout-sessions", checkout_body(items=[{"sku": "nope", "quantity": 1}])
        ),
        404,
        "not_found",
    )
    assert error["details"] == [{"field": "items", "sku": "nope"}]
    assert_json_error(
        public_api.post("/checkout-sessions", checkout_body(gateway="stripe")),
        400,
        "gateway_not_available",
    )
    # Core-level checks the schema cannot express still come back as validation errors.
    twice = [{"sku": "tee-usd", "quantity": 1}, {"sku": "tee-usd", "quantity": 2}]
    error = assert_json_error(
        public_api.post("/checkout-sessions", checkout_body(items=twice)), 400, "validation_error"
    )
    assert error["details"][0]["field"] == "items.1.sku"


def test_out_of_stock_is_a_conflict(public_api: Api) -> None:
    body = checkout_body(items=[{"sku": "print-usd", "quantity": 6}])
    assert_json_error(public_api.post("/checkout-sessions", body), 409, "out_of_stock")


def test_refund_errors(api: Api) -> None:
    created = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    payment_id = created["payment"]["id"]
    # Not paid yet: nothing to refund.
    assert_json_error(api.post(f"/payments/{payment_id}/refunds", {}), 409, "invalid_state")
    assert_json_error(api.post(f"/payments/{payment_id}/capture", {}), 409, "invalid_state")
    complete_at_sandbox(api.app, created["payment"]["gateway_reference"])
    error = assert_json_error(
        api.post(f"/payments/{payment_id}/refunds", {"amount": 2501}),
        422,
        "refund_exceeds_remaining",
    )
    assert error["details"] == [{"field": "amount", "remaining": 2500}]
    assert_json_error(
        api.post(f"/payments/{payment_id}/refunds", {"amount": -5}), 400, "validation_error"
    )


@pytest.mark.parametrize(
    "gateway_code, status, code",
    [
        ("card_declined", 402, "card_declined"),
        ("payment_failed", 402, "payment_failed"),
        ("gateway_unavailable", 503, "gateway_unavailable"),
        ("rate_limited", 503, "gateway_unavailable"),
        ("invalid_request", 502, "gateway_error"),
        ("authentication_failed", 502, "gateway_error"),
    ],
)
def test_gateway_failures_map_to_codes(
    api: Api, fake_gateway: FakeGateway, gateway_code: str, status: int, code: str
) -> None:
    fake_gateway.fail_with = gateway_code
    fake_gateway.retryable = gateway_code in ("gateway_unavailable", "rate_limited")
    response = api.post("/checkout-sessions", checkout_body(gateway="fake"))
    error = assert_json_error(response, status, code)
    assert error["details"] == [{"gateway_code": gateway_code}]
    if status == 503:
        assert response.headers["Retry-After"] == "30"
    assert [name for name, _ in fake_gateway.calls] == ["create_checkout"]


def test_sync_failure_when_the_gateway_is_down(api: Api, fake_gateway: FakeGateway) -> None:
    payment_id = api.post("/checkout-sessions", checkout_body(gateway="fake")).get_json()["data"][
        "payment"
    ]["id"]
    fake_gateway.fail_with = "gateway_unavailable"
    assert_json_error(api.get(f"/payments/{payment_id}?refresh=true"), 503, "gateway_unavailable")
    # Without refresh, our own record still answers.
    assert api.get(f"/payments/{payment_id}").status_code == 200


# --------------------------------------------------------------------------- HTTP errors


def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    for path in ("/api/v1/nope", "/api/v1/", "/api/v1", "/api/nothing", "/api/v1/payments/x/y"):
        assert_json_error(api.client.get(path), 404, "not_found")
    response = api.client.delete("/api/v1/products")
    assert_json_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_json_error(
        api.client.put("/api/v1/payments/pay_x/refunds", json={}), 405, "method_not_allowed"
    )
    # Outside /api the HTML pages stay HTML.
    assert api.client.get("/no-such-page").mimetype == "text/html"


def test_too_large_bodies_answer_413_json(make_app: Callable[..., Flask]) -> None:
    app = make_app(MAX_CONTENT_LENGTH=2048)
    body = checkout_body(customer={"email": "a@example.com", "name": "x" * 4000})
    assert_json_error(Api(app).post("/checkout-sessions", body), 413, "payload_too_large")


def test_crashes_answer_500_json(make_app: Callable[..., Flask]) -> None:
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    fake = FakeGateway(crash=True)
    app.extensions["kassa_gateways"]["fake"] = fake
    api = Api(app, new_key(app))
    error = assert_json_error(
        api.post("/checkout-sessions", checkout_body(gateway="fake")), 500, "internal_error"
    )
    assert "Traceback" not in error["message"] and "adapter" not in error["message"]


def test_csrf_does_not_apply_to_bearer_authenticated_json(make_app: Callable[..., Flask]) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    assert Api(app).post("/checkout-sessions", checkout_body()).status_code == 201


# --------------------------------------------------------------------------- rate limits


def test_public_checkout_is_rate_limited_per_client(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATELIMIT_ENABLED=True, API_CHECKOUT_RATE_LIMIT="2 per minute")
    api = Api(app)
    for _ in range(2):
        assert api.post("/checkout-sessions", checkout_body()).status_code == 201
    response = api.post("/checkout-sessions", checkout_body())
    error = assert_json_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"][0]["retry_after"] == retry_after
    # Another client address has its own allowance; a merchant's key is not limited by it.
    other = api.client.post(
        "/api/v1/checkout-sessions", json=checkout_body(), environ_base={"REMOTE_ADDR": "10.9.8.7"}
    )
    assert other.status_code == 201
    keyed = Api(app, new_key(app)).post("/checkout-sessions", checkout_body())
    assert keyed.status_code == 201
    with app.app_context():
        assert db.session.execute(select(func.count(Order.id))).scalar_one() == 4


def test_api_keys_are_rate_limited_per_key(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATELIMIT_ENABLED=True, API_RATE_LIMIT="3 per minute")
    first, second = Api(app, new_key(app)), Api(app, new_key(app))
    assert [first.get("/payments").status_code for _ in range(3)] == [200, 200, 200]
    assert_json_error(first.get("/payments"), 429, "rate_limited")
    assert second.get("/payments").status_code == 200


def test_limits_are_kept_in_redis_when_configured(make_app: Callable[..., Flask]) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"kassa-api-test-{secrets.token_hex(4)}"
    uri = "redis://127.0.0.1:6379/15"
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI=uri,
        RATELIMIT_KEY_PREFIX=prefix,
        API_CHECKOUT_RATE_LIMIT="1 per minute",
    )
    api = Api(app)
    assert api.post("/checkout-sessions", checkout_body()).status_code == 201
    assert_json_error(api.post("/checkout-sessions", checkout_body()), 429, "rate_limited")
    import redis

    client = redis.Redis.from_url(uri)
    try:
        keys = client.keys(f"*{prefix}*")
        assert keys, "the limiter kept its counters somewhere else"
        client.delete(*keys)
    finally:
        client.close()


def test_rate_limits_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATELIMIT_ENABLED=False, API_CHECKOUT_RATE_LIMIT="1 per minute")
    api = Api(app)
    assert [api.post("/checkout-sessions", checkout_body()).status_code for _ in range(3)] == [
        201,
        201,
        201,
    ]


def test_stock_and_products_are_public(public_api: Api) -> None:
    products = public_api.get("/products").get_json()
    assert products["success"] is True and products["next_cursor"] is None
    by_sku = {p["sku"]: p for p in products["data"]}
    assert by_sku["print-usd"]["stock"] == 5 and by_sku["tee-usd"]["stock"] is None
    assert by_sku["tenugui-jpy"]["unit_amount"] == 1800
    with public_api.app.app_context():
        db.session.execute(update(Product).where(Product.sku == "mug-eur").values(active=False))
        db.session.commit()
    assert "mug-eur" not in {p["sku"] for p in public_api.get("/products").get_json()["data"]}


def test_payment_fields(api: Api) -> None:
    created = api.post("/checkout-sessions", checkout_body()).get_json()["data"]
    payment = api.get(f"/payments/{created['payment']['id']}").get_json()["data"]
    assert payment["order_id"] == created["order"]["id"]
    assert payment["gateway"] == "sandbox" and payment["status"] == "incomplete"
    assert payment["gateway_reference"].startswith("sbx_cs_")
    assert payment["amount"] == 2500 and payment["currency"] == "USD"
    with api.app.app_context():
        row = db.session.execute(select(Payment)).scalar_one()
        assert row.created_at > utcnow() - timedelta(minutes=1)
