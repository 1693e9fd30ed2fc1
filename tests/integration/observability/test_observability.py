"""Probes, metrics, request ids and JSON request logs, as an operator sees them."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

import app.logging as kassa_logging
from app import create_app
from app.gateways.base import GatewayError
from app.gateways.instrumented import InstrumentedGateway
from app.observability import observe_gateway_call
from tests.integration.test_webhooks import start_purchase


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_healthz_answers_without_touching_the_database(tmp_path) -> None:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x" * 40,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://kassa@127.0.0.1:1/none",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_200_when_the_database_answers(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "broker": "not configured"}


def test_readyz_is_503_when_the_database_is_down(tmp_path) -> None:
    url = "postgresql+psycopg://kassa:hunter2@127.0.0.1:1/kassa?connect_timeout=2"
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x" * 40,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SQLALCHEMY_DATABASE_URI": url,
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["failed"] == ["database"]
    assert response.json["checks"]["database"].startswith("failed: ")
    assert "hunter2" not in response.get_data(as_text=True)


def test_readyz_is_503_when_the_broker_is_down(make_app: Callable[..., Flask]) -> None:
    app = make_app(CELERY_BROKER_URL="redis://127.0.0.1:1/0", READYZ_TIMEOUT_SECONDS=0.5)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["broker"]
    assert response.json["checks"]["database"] == "ok"


def test_readyz_checks_a_live_redis_broker(make_app: Callable[..., Flask]) -> None:
    try:
        redis.Redis(socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    app = make_app(CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["broker"] == "ok"


def test_metrics_show_latency_by_route_payments_and_webhook_lag(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(METRICS_DB_CACHE_SECONDS=0)
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    route_count = "kassa_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": "/products/<sku>", "status": "200"}
    start = value(before, route_count, **labels) or 0.0
    lag_start = value(before, "kassa_webhook_lag_seconds_count", gateway="sandbox") or 0.0

    assert client.get("/products/tee-usd").status_code == 200
    assert client.get("/products/mug-eur").status_code == 200
    _payment, events = start_purchase(app)
    for body, headers in events:
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    # By URL rule, never by raw path (one series for every product).
    assert value(text, route_count, **labels) == start + 2
    assert "/products/tee-usd" not in text
    assert value(text, "kassa_payments", gateway="sandbox", status="succeeded") == 1
    assert value(text, "kassa_webhook_lag_seconds_count", gateway="sandbox") == lag_start + 2
    assert value(text, "kassa_webhook_unprocessed") == 0
    assert value(text, "kassa_webhook_oldest_unprocessed_age_seconds") == 0
    assert value(text, "kassa_jobs_in_process_queue_depth") == 0


def test_metrics_token_guards_the_scrape(make_app: Callable[..., Flask]) -> None:
    client = make_app(METRICS_TOKEN="scrape-me").test_client()
    assert client.get("/metrics").status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and b"kassa_http_request_duration_seconds" in ok.data


class SlowFake:
    name = "fakepay"
    display_name = "Fake"

    def __init__(self) -> None:
        self.calls = 0

    def create_checkout(self, request: object) -> str:
        self.calls += 1
        return "session"

    def refund(self, request: object) -> None:
        raise GatewayError("gateway_unavailable", "down", retryable=True)

    def verify_webhook(self, body: bytes, headers: object) -> str:
        return "verified"


def test_gateway_calls_are_timed_and_errors_counted(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    fake = SlowFake()
    gateway = InstrumentedGateway(fake, observe_gateway_call)
    assert gateway.name == "fakepay" and gateway.display_name == "Fake"
    assert gateway.create_checkout(object()) == "session" and fake.calls == 1
    with pytest.raises(GatewayError):
        gateway.refund(object())
    assert gateway.verify_webhook(b"", {}) == "verified"  # local work: forwarded untimed
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        value(
            text,
            "kassa_gateway_request_duration_seconds_count",
            gateway="fakepay",
            operation="create_checkout",
        )
        == 1
    )
    assert (
        value(
            text,
            "kassa_gateway_errors_total",
            gateway="fakepay",
            operation="refund",
            code="gateway_unavailable",
        )
        == 1
    )
    assert (
        value(
            text,
            "kassa_gateway_request_duration_seconds_count",
            gateway="fakepay",
            operation="verify_webhook",
        )
        is None
    )


def test_request_id_is_generated_or_honoured_and_logged(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    stream = io.StringIO()
    kassa_logging.configure("INFO", json_lines=True, stream=stream)
    client = app.test_client()

    fresh = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert client.get("/healthz").headers["X-Request-ID"] != fresh

    given = "lb-7f3a9c2e-0001"
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    for unsafe in ("short", "has spaces in it", "x" * 200, "<script>alert(1)</script>"):
        answered = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert answered != unsafe and re.fullmatch(r"[0-9a-f]{32}", answered)

    client.get("/products/tee-usd", headers={"X-Request-ID": "trace-abc-12345"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    access = [
        r for r in lines if r.get("logger") == "app.access" and r.get("route") == "/products/<sku>"
    ]
    assert access and access[-1]["request_id"] == "trace-abc-12345"
    assert access[-1]["status"] == 200 and access[-1]["duration_ms"] >= 0
    assert access[-1]["message"] == "GET /products/<sku> 200"

    # Only the URL rule is logged, never the path.
    client.get("/products/bob@example.org")
    client.open("/healthz", method="SK_LIVE_X", headers={"X-Request-ID": "trace-odd-method"})
    text = stream.getvalue()
    assert "bob@" not in text
    odd = [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and "trace-odd-method" in line
    ]
    assert odd and odd[-1]["message"] == "SK_LIVE_X <unmatched> 405"


def test_a_request_refused_by_csrf_keeps_its_request_id_and_access_line(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    stream = io.StringIO()
    kassa_logging.configure("INFO", json_lines=True, stream=stream)
    refused = app.test_client().post(
        "/products/tee-usd",
        data={"email": "a@example.com"},
        headers={"X-Request-ID": "trace-csrf-0001"},
    )
    assert refused.status_code == 400
    assert refused.headers["X-Request-ID"] == "trace-csrf-0001"
    access = [
        json.loads(line)
        for line in stream.getvalue().splitlines()
        if line.startswith("{") and "trace-csrf-0001" in line
    ]
    assert [(r["logger"], r["status"]) for r in access if r["logger"] == "app.access"] == [
        ("app.access", 400)
    ]


def test_forwarded_headers_are_trusted_only_when_configured(make_app: Callable[..., Flask]) -> None:
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example.com",
        "X-Forwarded-For": "203.0.113.9",
    }
    direct = make_app().test_client()
    assert direct.get("/healthz", headers=headers).request.url.startswith("http://localhost")
    proxied = make_app(PROXY_FIX_HOPS=1)

    @proxied.get("/_where")
    def where() -> dict[str, str]:
        """Echo what the app believes about the request."""
        from flask import request

        return {"url": request.url, "remote": request.remote_addr or ""}

    answer = proxied.test_client().get("/_where", headers=headers).json
    assert answer == {"url": "https://shop.example.com/_where", "remote": "203.0.113.9"}


def test_each_log_line_is_written_once_through_the_filter(
    make_app: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    # make_app: migrations ran earlier in the session, so nothing reconfigured logging since.
    app = make_app(LOG_JSON=True)
    app.logger.info("paid by jane@example.com with 4242 4242 4242 4242")
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "paid by" in line]
    assert len(lines) == 1
    assert "jane@" not in lines[0] and "4242 4242" not in lines[0]
    assert json.loads(lines[0])["message"] == "paid by j***@example.com with [CARD ****4242]"


def test_static_files_are_gzipped_pages_are_not(make_app: Callable[..., Flask]) -> None:
    import gzip

    from app import ROOT

    client = make_app().test_client()
    raw = (ROOT / "static" / "js" / "htmx.min.js").read_bytes()
    zipped = client.get("/static/js/htmx.min.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.status_code == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == raw
    assert int(zipped.headers["Content-Length"]) == len(zipped.data) < len(raw) // 2
    plain = client.get("/static/js/htmx.min.js")
    try:
        assert "Content-Encoding" not in plain.headers and plain.data == raw
    finally:
        plain.close()  # an uncompressed static response streams the open file
    # Pages carry the CSRF token beside reflected input (BREACH): never compressed.
    page = client.get("/products/tee-usd", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "Content-Encoding" not in page.headers


def test_configured_gateways_are_timed_under_the_resilience_layer(
    make_app: Callable[..., Flask],
) -> None:
    from app.gateways.stripe import StripeGateway

    app = make_app(STRIPE_SECRET_KEY="sk_test_timing", STRIPE_WEBHOOK_SECRET="whsec_timing")
    gateway = app.extensions["kassa_gateways"]["stripe"]
    adapter = getattr(gateway, "inner", gateway)
    assert isinstance(adapter, StripeGateway)  # code that unwraps one level still works
    assert adapter._kassa_instrumented
    assert not hasattr(app.extensions["kassa_gateways"]["sandbox"], "_kassa_instrumented")
