"""Health, readiness, Prometheus metrics, request ids and JSON request logs.

- GET /healthz: the process answers (no database): for liveness probes.
- GET /readyz: `SELECT 1` on the database and, when CELERY_BROKER_URL is set, the broker
  answers; 200 when all pass, 503 naming the check that failed: for load balancers.
- GET /metrics: Prometheus text. Under gunicorn set PROMETHEUS_MULTIPROC_DIR (see
  gunicorn.conf.py) so a scrape adds up every worker. With METRICS_TOKEN set, a scrape
  must send `Authorization: Bearer <token>`; either way keep it off the public internet.
- Every response carries X-Request-ID (the caller's when it looks safe, else a new one);
  log lines written while serving it carry the same id.

Metrics (names are stable; dashboards depend on them):
  kassa_http_request_duration_seconds{method,route,status}  histogram, route = URL rule
  kassa_payments{gateway,status}                  gauge, counted in the DB at scrape time
  kassa_webhook_lag_seconds{gateway}              histogram, received -> processed
  kassa_webhook_oldest_unprocessed_age_seconds    gauge, from the inbox at scrape time
  kassa_webhook_unprocessed                       gauge, received/failed rows in the inbox
  kassa_jobs_in_process_queue_depth               gauge (livesum over workers)
  kassa_jobs_broker_queue_depth{queue}            gauge, Redis broker list length
  kassa_gateway_request_duration_seconds{gateway,operation}  histogram
  kassa_gateway_errors_total{gateway,operation,code}         counter
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from werkzeug.wrappers import Response

import app.logging as kassa_logging
from app.proxies import real_app, real_request
from app.serving.admission import ARRIVED

log = logging.getLogger("app.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

HTTP_LATENCY = Histogram(
    "kassa_http_request_duration_seconds",
    "Time to answer a request, by URL rule.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_LATENCY = Histogram(
    "kassa_gateway_request_duration_seconds",
    "Time of one call to a payment gateway.",
    ["gateway", "operation"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_ERRORS = Counter(
    "kassa_gateway_errors_total",
    "Gateway calls that failed, by Kassa error code.",
    ["gateway", "operation", "code"],
)
WEBHOOK_LAG = Histogram(
    "kassa_webhook_lag_seconds",
    "From a webhook's receipt to the end of its processing.",
    ["gateway"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
JOB_QUEUE_DEPTH = Gauge(
    "kassa_jobs_in_process_queue_depth",
    "Jobs queued or running on the in-process pool.",
    multiprocess_mode="livesum",
)

# A request id we pass on unchanged: short, and nothing a log reader could trip over.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")


def observe_gateway_call(gateway: str, operation: str, seconds: float, error: str | None) -> None:
    GATEWAY_LATENCY.labels(gateway, operation).observe(seconds)
    if error is not None:
        GATEWAY_ERRORS.labels(gateway, operation, error).inc()


def observe_webhook_processed(
    gateway: str, received_at: datetime | None, processed_at: datetime | None
) -> None:
    """Called by the inbox processor when an event has been applied."""
    if received_at is not None and processed_at is not None:
        WEBHOOK_LAG.labels(gateway).observe(max(0.0, (processed_at - received_at).total_seconds()))


class DatabaseCollector(Collector):
    """Counts read from the database when scraped (cached briefly: scrapes stay cheap)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.ttl = float(app.config.get("METRICS_DB_CACHE_SECONDS", 10))
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.ttl:
                self._cached = (now, self._read())
            yield from self._cached[1]

    def _read(self) -> list[GaugeMetricFamily]:
        from app.extensions import db
        from app.models import Payment, WebhookEvent, WebhookStatus

        families: list[GaugeMetricFamily] = []
        with self.app.app_context():
            try:
                payments = GaugeMetricFamily(
                    "kassa_payments",
                    "Payments by gateway and status.",
                    labels=["gateway", "status"],
                )
                rows = db.session.execute(
                    select(Payment.gateway, Payment.status, func.count()).group_by(
                        Payment.gateway, Payment.status
                    )
                ).all()
                for gateway, status, count in rows:
                    payments.add_metric([gateway, status], count)
                families.append(payments)
                pending = (WebhookStatus.RECEIVED, WebhookStatus.FAILED)
                oldest: datetime | str | None
                oldest, unprocessed = db.session.execute(
                    select(func.min(WebhookEvent.received_at), func.count()).where(
                        WebhookEvent.status.in_(pending)
                    )
                ).one()
                age = GaugeMetricFamily(
                    "kassa_webhook_oldest_unprocessed_age_seconds",
                    "Age of the oldest received or failed (to be retried) inbox event.",
                )
                if isinstance(oldest, str):  # SQLite aggregates skip the column type
                    oldest = datetime.fromisoformat(oldest)
                if oldest is not None and oldest.tzinfo is None:
                    from datetime import UTC

                    oldest = oldest.replace(tzinfo=UTC)
                from app.models.base import utcnow

                age.add_metric(
                    [], (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
                )
                families.append(age)
                families.append(
                    GaugeMetricFamily(
                        "kassa_webhook_unprocessed",
                        "Inbox events not yet processed.",
                        value=unprocessed,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - a scrape must answer even then
                logging.getLogger(__name__).warning(
                    "metrics: database counts failed: %s", type(exc).__name__
                )
            finally:
                db.session.remove()
        depth = broker_queue_depth(self.app.config.get("CELERY_BROKER_URL"))
        if depth is not None:
            broker = GaugeMetricFamily(
                "kassa_jobs_broker_queue_depth",
                "Messages waiting in the Celery broker.",
                labels=["queue"],
            )
            for queue, n in depth.items():
                broker.add_metric([queue], n)
            families.append(broker)
        return families


def broker_queue_depth(
    url: str | None, queues: tuple[str, ...] = ("celery",)
) -> dict[str, int] | None:
    """Redis brokers keep each queue as a list: its length is the backlog."""
    if not url or not url.startswith(("redis://", "rediss://")):
        return None
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return {q: int(client.llen(q)) for q in queues}
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no number is better than a failed scrape
        return None


def check_database(timeout: float = 2.0) -> str | None:
    """None when `SELECT 1` works within `timeout` seconds, else a short reason (never the
    URL or password).

    On PostgreSQL the check has a session of its own, outside the pool (a pool whose
    connections all wait on a dead server would hold it up), with connect and statement
    timeouts; and whatever the driver does, the answer comes by the deadline: the check
    runs on a helper thread that is waited for only that long."""
    from app.extensions import db

    app = real_app()
    engine = db.engine
    if engine.dialect.name == "postgresql":
        engine = _readiness_engine(app, engine, timeout)

    def probe() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    result: list[BaseException | None] = []
    worker = threading.Thread(target=lambda: result.append(_run(probe)), daemon=True)
    worker.start()
    worker.join(timeout * 0.75)  # the answer, with its way out, by the deadline
    if not result:
        return f"no answer within {timeout:g} s"
    problem = result[0]
    return None if problem is None else type(problem).__name__


def _run(probe: Any) -> BaseException | None:
    try:
        probe()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return exc


def _readiness_engine(app: Flask, engine: Any, timeout: float) -> Any:
    cached = app.extensions.get("kassa_readiness_engine")
    if cached is None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        options = app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {}
        args = dict(options.get("connect_args") or {})
        millis = max(100, int(timeout * 1000))
        args["connect_timeout"] = max(1, int(timeout))
        args["options"] = f"-c statement_timeout={millis}"
        cached = create_engine(engine.url, poolclass=NullPool, connect_args=args)
        watchdog = app.extensions.get("kassa_db_watchdog")
        if watchdog is not None:  # a probe that connected, then met silence, ends too
            watchdog.watch(cached)
        app.extensions["kassa_readiness_engine"] = cached
    return cached


def check_broker(url: str | None, timeout: float) -> str | None:
    if not url:
        return None
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
            return None
        # AMQP and others: the broker accepts a TCP connection.
        parts = urlsplit(url)
        default_port = {"amqp": 5672, "amqps": 5671, "pyamqp": 5672}.get(parts.scheme, 5672)
        with socket.create_connection(
            (parts.hostname or "localhost", parts.port or default_port), timeout=timeout
        ):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"{type(exc).__name__}"


def _metrics_payload(app: Flask) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        process_part = generate_latest(registry)
    else:
        process_part = generate_latest(REGISTRY)
    db_registry = CollectorRegistry(auto_describe=False)
    db_registry.register(app.extensions["kassa_db_collector"])
    return process_part + generate_latest(db_registry)


# Methods logged as they are; anything else a client sent goes through the redactor.
_PLAIN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _log_access(method: str, route: str, status: int, elapsed: float, rid: str) -> None:
    """One access line: "GET /products/<sku> 200" with status, route and duration_ms.

    Built from the URL rule (never the path, which may carry ids or personal data), the
    status and a number, so it is a CleanRecord: no per-line regex pass, no findCaller."""
    if method not in _PLAIN_METHODS:
        method = kassa_logging.redact(method)
    log.handle(
        kassa_logging.clean_record(
            log.name,
            logging.INFO,
            f"{method} {route} {status}",
            rid,
            {"status": status, "route": route, "duration_ms": round(elapsed * 1000, 2)},
        )
    )


def _job_runner_depth(app: Flask) -> int:
    runner = app.extensions.get("kassa_jobs")
    futures = getattr(runner, "_futures", None)
    return len(futures) if futures is not None else 0


def init_app(app: Flask) -> None:
    """Wire logging, request ids, timing, the probe endpoints and gateway timing."""
    kassa_logging.configure(
        app.config.get("LOG_LEVEL", "INFO"), json_lines=bool(app.config.get("LOG_JSON"))
    )
    # Flask gives app.logger (named "app", like our package) its own stderr handler when it
    # is first used; that handler would print every line a second time, unfiltered.
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)
    app.extensions["kassa_db_collector"] = DatabaseCollector(app)
    _instrument_gateways(app)
    trust_request_id = bool(app.config.get("TRUST_REQUEST_ID", True))
    access_log = bool(app.config.get("ACCESS_LOG", True))
    # Histogram children by (method, rule, status): labels() validates and locks each time.
    latency_children: dict[tuple[str, str, int], Any] = {}
    last_depth: list[int | None] = [None]

    def start_request() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        if trust_request_id and SAFE_REQUEST_ID.match(incoming):
            rid = incoming
        else:
            rid = uuid.uuid4().hex
        g.request_id = rid
        # From its arrival: the time it waited in line (app/serving/admission.py) counts too.
        g.request_started = request.environ.get(ARRIVED) or time.perf_counter()
        g.request_id_token = kassa_logging.request_id_var.set(rid)

    # First of all before-request hooks: a request refused by an earlier one (CSRF, the
    # rate limiter) still gets its request id, access line and latency sample.
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)

    @app.after_request
    def finish_request(response: Response) -> Response:
        ctx_g = g._get_current_object()
        rid = getattr(ctx_g, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        started = getattr(ctx_g, "request_started", None)
        if started is not None:
            elapsed = time.perf_counter() - started
            req = real_request()
            rule = req.url_rule
            route = rule.rule if rule is not None else "<unmatched>"
            method = req.method
            status = response.status_code
            key = (method, route, status)
            child = latency_children.get(key)
            if child is None:
                child = latency_children[key] = HTTP_LATENCY.labels(method, route, str(status))
            child.observe(elapsed)
            if access_log and log.isEnabledFor(logging.INFO):
                _log_access(method, route, status, elapsed, rid or "-")
        # A multiprocess gauge write is a locked mmap write: only when the depth changed.
        depth = _job_runner_depth(app)
        if depth != last_depth[0]:
            JOB_QUEUE_DEPTH.set(depth)
            last_depth[0] = depth
        return response

    @app.teardown_request
    def end_request(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            kassa_logging.request_id_var.reset(token)

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers (touches nothing else)."""
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: the database answers, and the broker when one is configured."""
        timeout = float(current_app.config.get("READYZ_TIMEOUT_SECONDS", 2))
        checks: dict[str, str] = {}
        problem = check_database(timeout)
        checks["database"] = f"failed: {problem}" if problem else "ok"
        broker_url = current_app.config.get("CELERY_BROKER_URL")
        if broker_url:
            problem_b = check_broker(broker_url, timeout)
            checks["broker"] = f"failed: {problem_b}" if problem_b else "ok"
        else:
            checks["broker"] = "not configured"
        failed = [name for name, value in checks.items() if value.startswith("failed")]
        status = 503 if failed else 200
        return jsonify(
            status="unavailable" if failed else "ok", failed=failed, checks=checks
        ), status

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus scrape endpoint."""
        token = current_app.config.get("METRICS_TOKEN")
        if token:
            import hmac

            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return Response(
                    "unauthorized\n", status=401, headers={"WWW-Authenticate": "Bearer"}
                )
        JOB_QUEUE_DEPTH.set(_job_runner_depth(app))
        return Response(_metrics_payload(app), mimetype=CONTENT_TYPE_LATEST)


def _instrument_gateways(app: Flask) -> None:
    """Time every network call of the configured gateways (the sandbox is local: left bare).

    The innermost adapter is instrumented in place, under the resilience layer, so each
    attempt is measured and `.inner` still leads to the adapter itself."""
    from app.gateways.instrumented import InstrumentedGateway, instrument_in_place

    gateways = app.extensions.get("kassa_gateways")
    if not gateways:
        return
    for name, gateway in list(gateways.items()):
        if name == "sandbox":
            continue
        adapter = gateway
        while hasattr(adapter, "inner") and not isinstance(adapter, InstrumentedGateway):
            adapter = adapter.inner
        if not instrument_in_place(adapter, observe_gateway_call):
            gateways[name] = InstrumentedGateway(gateway, observe_gateway_call)
