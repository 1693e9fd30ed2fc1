"""Settings from environment variables: one place, typed, with safe defaults.

Every setting is read here and nowhere else. `load_settings()` returns a plain dict
for `app.config`; tests pass overrides to `create_app(config)`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

TRUE = {"1", "true", "yes", "on"}


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in TRUE


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise RuntimeError(f"{name} must be a whole number, got {value!r}") from exc


def instance_secret(instance_path: Path, filename: str) -> str:
    """A random secret generated once into instance/ (never committed)."""
    instance_path.mkdir(parents=True, exist_ok=True)
    path = instance_path / filename
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    # O_EXCL so two workers starting together agree on one secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def load_settings(instance_path: Path) -> dict[str, Any]:
    env = env_str("KASSA_ENV", "development")
    production = env == "production"
    database_url = env_str("DATABASE_URL") or f"sqlite:///{instance_path / 'kassa.db'}"
    if database_url.startswith("postgres://"):  # Heroku-style URLs
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    secret_key = env_str("SECRET_KEY")
    if not secret_key and not production:
        secret_key = instance_secret(instance_path, "secret_key")

    return {
        "KASSA_ENV": env,
        "DEBUG": env_bool("FLASK_DEBUG", False),
        "SECRET_KEY": secret_key,
        # Encryption at rest (app/crypto.py): comma-separated Fernet keys, the first
        # encrypts, all decrypt; and the blind index's HMAC key (exact search by email).
        # Empty outside production: both derived from SECRET_KEY.
        "ENCRYPTION_KEYS": env_str("ENCRYPTION_KEYS"),
        "BLIND_INDEX_KEY": env_str("BLIND_INDEX_KEY"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url),
        # PostgreSQL: drop a connection whose statement had no answer this long (app/db.py).
        "DB_STALL_SECONDS": stall_deadline_seconds(),
        "PUBLIC_BASE_URL": (env_str("PUBLIC_BASE_URL", "http://127.0.0.1:5000") or "").rstrip("/"),
        "STORE_NAME": env_str("STORE_NAME", "Kassa demo store"),
        "MAX_CONTENT_LENGTH": env_int("MAX_CONTENT_LENGTH", 256 * 1024),
        # Checkout
        "CHECKOUT_EXPIRY_MINUTES": env_int("CHECKOUT_EXPIRY_MINUTES", 30),
        # How long a customer's link to authenticate a charge of a saved method (and to
        # manage their saved methods) stays valid.
        "PAYMENT_ACTION_LINK_HOURS": env_int("PAYMENT_ACTION_LINK_HOURS", 72),
        "CAPTURE_METHOD": env_str("CAPTURE_METHOD", "automatic"),
        # Sandbox gateway: on unless turned off; always on when no real gateway is configured.
        "SANDBOX_ENABLED": env_bool("SANDBOX_ENABLED", True),
        "SANDBOX_WEBHOOK_SECRET": env_str("SANDBOX_WEBHOOK_SECRET"),
        "SANDBOX_DELIVER_WEBHOOKS": env_bool("SANDBOX_DELIVER_WEBHOOKS", True),
        "SANDBOX_WEBHOOK_URL": env_str("SANDBOX_WEBHOOK_URL"),
        # "once" or "twice_out_of_order" (every event twice, newest first)
        "SANDBOX_WEBHOOK_MODE": env_str("SANDBOX_WEBHOOK_MODE", "once"),
        "SANDBOX_WEBHOOK_DELAY_SECONDS": float(
            env_str("SANDBOX_WEBHOOK_DELAY_SECONDS", "0.3") or 0.3
        ),
        # Subscriptions in the sandbox: a period (and a trial day) lasts this many seconds
        # (unset: the plan's real interval); the renewal clock renews due subscriptions.
        "SANDBOX_PERIOD_SECONDS": env_str("SANDBOX_PERIOD_SECONDS"),
        "SANDBOX_RENEWAL_CLOCK": env_bool("SANDBOX_RENEWAL_CLOCK", True),
        # Stripe
        "STRIPE_SECRET_KEY": env_str("STRIPE_SECRET_KEY"),
        "STRIPE_WEBHOOK_SECRET": env_str("STRIPE_WEBHOOK_SECRET"),
        "STRIPE_API_BASE": env_str("STRIPE_API_BASE"),
        # Per-request timeout and the SDK's own retries (same idempotency key each time).
        "STRIPE_TIMEOUT_SECONDS": float(env_str("STRIPE_TIMEOUT_SECONDS", "10") or 10),
        # 0: app/gateways/resilience.py retries (same key); SDK retries underneath would multiply.
        "STRIPE_MAX_NETWORK_RETRIES": env_int("STRIPE_MAX_NETWORK_RETRIES", 0),
        # Razorpay
        "RAZORPAY_KEY_ID": env_str("RAZORPAY_KEY_ID"),
        "RAZORPAY_KEY_SECRET": env_str("RAZORPAY_KEY_SECRET"),
        "RAZORPAY_WEBHOOK_SECRET": env_str("RAZORPAY_WEBHOOK_SECRET"),
        "RAZORPAY_API_BASE": env_str("RAZORPAY_API_BASE"),
        # Read timeout of every Razorpay API call (connect timeout is 5 s).
        "RAZORPAY_TIMEOUT_SECONDS": float(env_str("RAZORPAY_TIMEOUT_SECONDS", "10") or 10),
        "RAZORPAY_CHECKOUT_JS": env_str(
            "RAZORPAY_CHECKOUT_JS", "https://checkout.razorpay.com/v1/checkout.js"
        ),
        # A saved card's mandate (card recurring token): the most one later charge may take,
        # in the currency's subunits (paise); Razorpay's default without extra auth: 15,000 INR.
        "RAZORPAY_TOKEN_MAX_AMOUNT": env_int("RAZORPAY_TOKEN_MAX_AMOUNT", 1_500_000),
        # PayPal (Orders v2 + Payments v2); the sandbox API unless PAYPAL_API_BASE says live
        "PAYPAL_CLIENT_ID": env_str("PAYPAL_CLIENT_ID"),
        "PAYPAL_CLIENT_SECRET": env_str("PAYPAL_CLIENT_SECRET"),
        "PAYPAL_WEBHOOK_ID": env_str("PAYPAL_WEBHOOK_ID"),
        "PAYPAL_API_BASE": env_str("PAYPAL_API_BASE", "https://api-m.sandbox.paypal.com"),
        # "offline" (certificate + SHA256withRSA, no call) or "api" (verify-webhook-signature)
        "PAYPAL_WEBHOOK_VERIFICATION": env_str("PAYPAL_WEBHOOK_VERIFICATION", "offline"),
        # PEM bundle of roots trusted for PayPal's webhook certificates (default: certifi's)
        "PAYPAL_WEBHOOK_CA_FILE": env_str("PAYPAL_WEBHOOK_CA_FILE"),
        "PAYPAL_TIMEOUT_SECONDS": float(env_str("PAYPAL_TIMEOUT_SECONDS", "10") or 10),
        # Webhooks
        "WEBHOOK_TOLERANCE_SECONDS": env_int("WEBHOOK_TOLERANCE_SECONDS", 300),
        # Events the periodic retry sweep picks up at most per run (failed ones past their
        # backoff, received ones whose job was lost).
        "WEBHOOK_RETRY_BATCH": env_int("WEBHOOK_RETRY_BATCH", 1000),
        # Jobs: no broker means tasks run in-process after the transaction commits.
        "CELERY_BROKER_URL": env_str("CELERY_BROKER_URL"),
        "JOBS_EAGER": env_bool("JOBS_EAGER", False),
        # A stopping worker runs its held webhook jobs for at most this long; the periodic
        # sweep picks up the rest (app/jobs Drainer).
        "JOBS_EXIT_SECONDS": env_int("JOBS_EXIT_SECONDS", 10),
        # Redis only: how long an unacknowledged task waits before another worker gets it
        # (must exceed the longest task; RabbitMQ redelivers as soon as a worker dies).
        "CELERY_QUEUE": env_str("CELERY_QUEUE", "kassa"),
        "CELERY_VISIBILITY_TIMEOUT": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
        # Periodic tasks without a broker: a small in-process scheduler thread (make run).
        "SCHEDULER_ENABLED": env_bool("SCHEDULER_ENABLED", True),
        # Only one scheduler leads (app/jobs/leader.py). On SQLite its lease lasts this
        # long: a dead leader is replaced within it (PostgreSQL: at once, by its lock).
        "SCHEDULER_LEASE_SECONDS": env_int("SCHEDULER_LEASE_SECONDS", 15),
        "RECONCILE_INTERVAL_SECONDS": env_int("RECONCILE_INTERVAL_SECONDS", 300),
        "EXPIRE_INTERVAL_SECONDS": env_int("EXPIRE_INTERVAL_SECONDS", 60),
        "WEBHOOK_RETRY_INTERVAL_SECONDS": env_int("WEBHOOK_RETRY_INTERVAL_SECONDS", 60),
        "RECEIPT_RESEND_INTERVAL_SECONDS": env_int("RECEIPT_RESEND_INTERVAL_SECONDS", 300),
        # Emails to owners and admins: disputes, failed refunds, dead webhook events.
        "NOTIFY_INTERVAL_SECONDS": env_int("NOTIFY_INTERVAL_SECONDS", 60),
        "IDEMPOTENCY_PURGE_INTERVAL_SECONDS": env_int("IDEMPOTENCY_PURGE_INTERVAL_SECONDS", 3600),
        # Reconcile leaves records younger than this alone (their request may still be running).
        "RECONCILE_GRACE_SECONDS": env_int("RECONCILE_GRACE_SECONDS", 120),
        # How far back reconcile asks gateways that can list events (Stripe) for missed ones.
        "RECONCILE_EVENTS_LOOKBACK_HOURS": env_int("RECONCILE_EVENTS_LOOKBACK_HOURS", 72),
        # Gateways forget idempotency keys (Stripe: after 24 h): never re-send an older refund.
        "REFUND_RESEND_MAX_HOURS": env_int("REFUND_RESEND_MAX_HOURS", 23),
        # Webhook processing: attempts before an event is dead-lettered, first backoff step.
        "WEBHOOK_MAX_ATTEMPTS": env_int("WEBHOOK_MAX_ATTEMPTS", 8),
        "WEBHOOK_RETRY_BASE_SECONDS": env_int("WEBHOOK_RETRY_BASE_SECONDS", 10),
        # Gateway calls: timeout per call, bounded retries for transient failures, breaker.
        "GATEWAY_TIMEOUT_SECONDS": float(env_str("GATEWAY_TIMEOUT_SECONDS", "8") or 8),
        # All attempts of one call end within this (below gunicorn's 30 s worker timeout).
        "GATEWAY_DEADLINE_SECONDS": float(env_str("GATEWAY_DEADLINE_SECONDS", "25") or 25),
        "GATEWAY_MAX_ATTEMPTS": env_int("GATEWAY_MAX_ATTEMPTS", 3),
        "GATEWAY_BACKOFF_SECONDS": float(env_str("GATEWAY_BACKOFF_SECONDS", "0.5") or 0.5),
        "GATEWAY_BACKOFF_MAX_SECONDS": float(env_str("GATEWAY_BACKOFF_MAX_SECONDS", "5") or 5),
        "GATEWAY_BREAKER_THRESHOLD": env_int("GATEWAY_BREAKER_THRESHOLD", 5),
        "GATEWAY_BREAKER_COOLDOWN_SECONDS": float(
            env_str("GATEWAY_BREAKER_COOLDOWN_SECONDS", "30") or 30
        ),
        # Outgoing webhooks (app/payments/outgoing): per-request timeout, requests sent at
        # once per process, deliveries per batch, the sweep's interval (retries and anything
        # the relay missed), days of failing before an endpoint is disabled.
        "OUTGOING_WEBHOOK_TIMEOUT_SECONDS": float(
            env_str("OUTGOING_WEBHOOK_TIMEOUT_SECONDS", "15") or 15
        ),
        "OUTGOING_WEBHOOK_CONCURRENCY": env_int("OUTGOING_WEBHOOK_CONCURRENCY", 16),
        "OUTGOING_WEBHOOK_BATCH": env_int("OUTGOING_WEBHOOK_BATCH", 200),
        "OUTGOING_WEBHOOK_INTERVAL_SECONDS": env_int("OUTGOING_WEBHOOK_INTERVAL_SECONDS", 5),
        "OUTGOING_WEBHOOK_DISABLE_DAYS": env_int("OUTGOING_WEBHOOK_DISABLE_DAYS", 5),
        # SSRF guard: development only, let endpoints on loopback/private addresses through;
        # and networks (comma-separated CIDRs) let through anywhere (an internal receiver).
        "OUTGOING_WEBHOOK_ALLOW_PRIVATE": env_bool("OUTGOING_WEBHOOK_ALLOW_PRIVATE", False),
        "OUTGOING_WEBHOOK_ALLOWED_NETWORKS": env_str("OUTGOING_WEBHOOK_ALLOWED_NETWORKS", ""),
        # Live updates (app/live): Redis pub/sub across processes and instances when set;
        # SSE heartbeats; how often open streams check the database for missed events.
        "REDIS_URL": env_str("REDIS_URL"),
        "LIVE_UPDATES": env_bool("LIVE_UPDATES", True),
        "LIVE_HEARTBEAT_SECONDS": float(env_str("LIVE_HEARTBEAT_SECONDS", "15") or 15),
        "LIVE_RESYNC_SECONDS": float(env_str("LIVE_RESYNC_SECONDS", "2") or 2),
        # A stream ends after this; the browser reconnects where it left off.
        "LIVE_STREAM_MAX_SECONDS": float(env_str("LIVE_STREAM_MAX_SECONDS", "600") or 600),
        # Receipts by SMTP; with no MAIL_SERVER they are written to instance/outbox/*.eml.
        "MAIL_SERVER": env_str("MAIL_SERVER"),
        "MAIL_PORT": env_int("MAIL_PORT", 587),
        "MAIL_USE_TLS": env_bool("MAIL_USE_TLS", True),
        "MAIL_USERNAME": env_str("MAIL_USERNAME"),
        "MAIL_PASSWORD": env_str("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": env_str("MAIL_DEFAULT_SENDER", "receipts@kassa.localhost"),
        # Crash tests only: kill the process at a named point (see app/payments/faults.py).
        "FAULT_POINT": env_str("KASSA_FAULT_POINT"),
        # Rate limits
        "RATELIMIT_ENABLED": env_bool("RATELIMIT_ENABLED", True),
        # Where limits and the sign-in throttle count, shared by every worker and instance:
        # unset = REDIS_URL when set, else the app's database ("database://",
        # app/ratelimit_store.py). "memory://" counts per process (one worker only).
        "RATELIMIT_STORAGE_URI": env_str("RATELIMIT_STORAGE_URI"),
        # Failed merchant sign-ins (app/auth/throttle.py): free tries per account from one
        # address before growing pauses; per client address over all accounts; and per
        # account from browsers that never signed in to it (a distributed guesser).
        "LOGIN_LIMIT_ACCOUNT": env_str("LOGIN_LIMIT_ACCOUNT", "5 per 15 minutes"),
        "LOGIN_LIMIT_ADDRESS": env_str("LOGIN_LIMIT_ADDRESS", "20 per 15 minutes"),
        "LOGIN_LIMIT_ACCOUNT_UNKNOWN_DEVICES": env_str(
            "LOGIN_LIMIT_ACCOUNT_UNKNOWN_DEVICES", "100 per hour"
        ),
        "LOGIN_PAUSE_MAX_SECONDS": env_int("LOGIN_PAUSE_MAX_SECONDS", 900),
        # Password reset links by email: valid this long, once.
        "PASSWORD_RESET_MINUTES": env_int("PASSWORD_RESET_MINUTES", 60),
        "PASSWORD_RESET_RATE_LIMIT": env_str("PASSWORD_RESET_RATE_LIMIT", "5 per 15 minutes"),
        # JSON API (app/api): per API key (or client address when there is none), and for
        # the public, unauthenticated checkout-session endpoint per client address.
        "API_RATE_LIMIT": env_str("API_RATE_LIMIT", "300 per minute"),
        "API_CHECKOUT_RATE_LIMIT": env_str("API_CHECKOUT_RATE_LIMIT", "20 per minute"),
        # How long a stored Idempotency-Key response is replayed.
        "API_IDEMPOTENCY_HOURS": env_int("API_IDEMPOTENCY_HOURS", 24),
        # Sessions and cookies
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # Secure unless running the debug server over plain http (override with the env var).
        "SESSION_COOKIE_SECURE": env_bool(
            "SESSION_COOKIE_SECURE", production or not env_bool("FLASK_DEBUG", False)
        ),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": env_bool(
            "SESSION_COOKIE_SECURE", production or not env_bool("FLASK_DEBUG", False)
        ),
        "WTF_CSRF_TIME_LIMIT": None,
        # Allowed extra hosts for return URLs (comma separated)
        "ALLOWED_RETURN_HOSTS": [
            h.strip() for h in (env_str("ALLOWED_RETURN_HOSTS", "") or "").split(",") if h.strip()
        ],
        # Security (app/security.py, app/auth/): cookies, session lifetimes, headers, 2FA.
        # __Host- cookies are sent only over HTTPS, to this exact host, for Path=/.
        "SESSION_COOKIE_NAME": env_str(
            "SESSION_COOKIE_NAME", "__Host-kassa_session" if production else "kassa_session"
        ),
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_DOMAIN": None,
        # Merchant sessions end after this long without a request / after this long at all.
        "SESSION_IDLE_MINUTES": env_int("SESSION_IDLE_MINUTES", 30),
        "SESSION_MAX_HOURS": env_int("SESSION_MAX_HOURS", 12),
        # Security headers (app/security.py)
        "HSTS_ENABLED": env_bool("HSTS_ENABLED", production),
        "HSTS_MAX_AGE": env_int("HSTS_MAX_AGE", 31536000),
        "CSP_REPORT_URI": env_str("CSP_REPORT_URI", "/csp-report"),
        "CSP_REPORT_RATE_LIMIT": env_str("CSP_REPORT_RATE_LIMIT", "30 per minute"),
        # Two-factor sign-in: owners must enrol before reaching merchant pages.
        "REQUIRE_2FA_FOR_OWNERS": env_bool("REQUIRE_2FA_FOR_OWNERS", production),
        "TOTP_ISSUER": env_str("TOTP_ISSUER", "Kassa"),
        # Abuse limits: the sign-in throttle (limits above) and checkout creation.
        "LOGIN_THROTTLE_ENABLED": env_bool("LOGIN_THROTTLE_ENABLED", True),
        "CHECKOUT_RATE_LIMIT": env_str("CHECKOUT_RATE_LIMIT", "10 per minute"),
        # Languages of the customer pages and emails (app/i18n.py): the browser's best match.
        "LANGUAGES": [
            x.strip() for x in (env_str("LANGUAGES", "en,hi,de") or "en").split(",") if x.strip()
        ],
        "DEFAULT_LOCALE": env_str("DEFAULT_LOCALE", "en"),
        "LOG_LEVEL": env_str("LOG_LEVEL", "INFO"),
        "LOG_JSON": env_bool("LOG_JSON", production),
        # Proxies in front of the app whose X-Forwarded-* headers are trusted (app/serving/http.py).
        "PROXY_FIX_HOPS": env_int("PROXY_FIX_HOPS", 0),
        # Static files gzipped by the app (off when a proxy in front compresses).
        "STATIC_GZIP": env_bool("STATIC_GZIP", True),
        # Observability (app/observability.py): /healthz, /readyz, /metrics.
        # Trust an incoming X-Request-ID (from our own load balancer) when it looks safe.
        "TRUST_REQUEST_ID": env_bool("TRUST_REQUEST_ID", True),
        "READYZ_TIMEOUT_SECONDS": float(env_str("READYZ_TIMEOUT_SECONDS", "2") or 2),
        # When set, /metrics wants "Authorization: Bearer <METRICS_TOKEN>".
        "METRICS_TOKEN": env_str("METRICS_TOKEN"),
        # Database counts in /metrics are cached this long (scrapes stay cheap).
        "METRICS_DB_CACHE_SECONDS": env_int("METRICS_DB_CACHE_SECONDS", 10),
        # One JSON line per request (method, route, status, duration, request id).
        "ACCESS_LOG": env_bool("ACCESS_LOG", True),
        # Requests of one worker that run at once; the others wait in line, and a request
        # waiting on a gateway doesn't count (app/serving/admission.py). 0 = no limit.
        "ACTIVE_REQUESTS": env_int("ACTIVE_REQUESTS", 4),
    }


def engine_options(database_url: str) -> dict[str, Any]:
    """The connection pool of one process (each gunicorn worker has its own).

    Requests (greenlets or threads) do not hold a connection while they wait on a gateway
    (the core ends its read transaction first, see payments/uow.release_connection), and
    at most ACTIVE_REQUESTS of a worker's requests run at once, so a worker serving
    hundreds of requests needs few connections: the default is min(THREADS, 10) (10 when
    THREADS is unset) plus 10 overflow. Keep workers x (size + overflow) under the
    server's max_connections (PostgreSQL's default is 100).
    """
    if database_url.startswith("sqlite"):
        return {"pool_pre_ping": True}
    # No `SELECT 1` round trip on every checkout from the pool (a checkout request takes
    # five connections): app/db.py checks, without a round trip, that the server has not
    # closed an idle connection (restart, idle timeout, killed backend) before handing it
    # out, and SQLAlchemy invalidates the pool when a statement meets a dropped connection.
    # DB_POOL_PRE_PING=true brings back the round trip (e.g. behind a proxy that drops idle
    # connections silently, without closing the socket).
    options: dict[str, Any] = {"pool_pre_ping": env_bool("DB_POOL_PRE_PING", False)}
    threads = env_int("THREADS", 16)
    options["pool_size"] = env_int("DB_POOL_SIZE", min(threads, 10))
    options["max_overflow"] = env_int("DB_MAX_OVERFLOW", 10)
    # As long as gunicorn's TIMEOUT: under overload a request waits for a connection
    # rather than failing while the worker would still be allowed to answer it.
    options["pool_timeout"] = env_int("DB_POOL_TIMEOUT", 30)
    options["pool_recycle"] = env_int("DB_POOL_RECYCLE", 1800)
    options["connect_args"] = postgres_connect_args()
    return options


def postgres_connect_args() -> dict[str, Any]:
    """Bounds on every wait on PostgreSQL (issue 23): a blackholed or half-gone server or
    a lost client never holds a request, a job or a row lock for long.

    - DB_CONNECT_TIMEOUT (s): giving up on a new connection.
    - DB_STATEMENT_TIMEOUT_MS: the server cancels a longer statement; the app also gives up
      on a statement that has had no answer for this long plus DB_STALL_GRACE_MS (a server
      that is not answering at all), app/db.py.
    - DB_LOCK_TIMEOUT_MS: waiting for a row lock someone else holds.
    - DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: the server ends a session left idle inside a
      transaction (a client cut off half-way), releasing its locks.
    - TCP keepalives and DB_TCP_USER_TIMEOUT_MS: a connection whose peer vanished is
      noticed by the kernel, on both ends (the server sets its own keepalives likewise).
    0 turns a timeout off."""
    statement = env_int("DB_STATEMENT_TIMEOUT_MS", 15000)
    lock = env_int("DB_LOCK_TIMEOUT_MS", 10000)
    idle = env_int("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 30000)
    return {
        "connect_timeout": env_int("DB_CONNECT_TIMEOUT", 5),
        "options": (
            f"-c statement_timeout={statement} -c lock_timeout={lock} "
            f"-c idle_in_transaction_session_timeout={idle}"
        ),
        "keepalives": 1,
        "keepalives_idle": env_int("DB_KEEPALIVES_IDLE", 30),
        "keepalives_interval": env_int("DB_KEEPALIVES_INTERVAL", 10),
        "keepalives_count": env_int("DB_KEEPALIVES_COUNT", 3),
        "tcp_user_timeout": env_int("DB_TCP_USER_TIMEOUT_MS", 30000),
    }


def stall_deadline_seconds() -> float | None:
    """How long a statement may go without an answer before the app drops its connection
    (DB_STATEMENT_TIMEOUT_MS + DB_STALL_GRACE_MS); None when statement_timeout is off."""
    statement = env_int("DB_STATEMENT_TIMEOUT_MS", 15000)
    if statement <= 0:
        return None
    return (statement + env_int("DB_STALL_GRACE_MS", 2000)) / 1000


def check_production(config: dict[str, Any]) -> None:
    """Refuse to start a production app with missing or default secrets."""
    if config.get("KASSA_ENV") != "production" or config.get("TESTING"):
        return
    problems = []
    if not config.get("SECRET_KEY") or len(str(config["SECRET_KEY"])) < 32:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters")
    problems.extend(_encryption_problems(config))
    if config.get("STRIPE_SECRET_KEY") and not config.get("STRIPE_WEBHOOK_SECRET"):
        problems.append("STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set")
    if config.get("RAZORPAY_KEY_ID") and not (
        config.get("RAZORPAY_KEY_SECRET") and config.get("RAZORPAY_WEBHOOK_SECRET")
    ):
        problems.append(
            "RAZORPAY_KEY_SECRET and RAZORPAY_WEBHOOK_SECRET are required with RAZORPAY_KEY_ID"
        )
    if config.get("PAYPAL_CLIENT_ID") and not (
        config.get("PAYPAL_CLIENT_SECRET") and config.get("PAYPAL_WEBHOOK_ID")
    ):
        problems.append(
            "PAYPAL_CLIENT_SECRET and PAYPAL_WEBHOOK_ID are required with PAYPAL_CLIENT_ID"
        )
    if config.get("PAYPAL_CLIENT_ID") and not str(config.get("PAYPAL_API_BASE") or "").startswith(
        "https://"
    ):
        problems.append("PAYPAL_API_BASE must be an https:// URL in production")
    if config.get("PAYPAL_CLIENT_ID") and config.get("PAYPAL_WEBHOOK_CA_FILE"):
        problems.append("PAYPAL_WEBHOOK_CA_FILE is for tests and development; unset it")
    if config.get("SANDBOX_ENABLED") and config.get("SANDBOX_WEBHOOK_SECRET") in (None, ""):
        problems.append(
            "SANDBOX_WEBHOOK_SECRET is required when the sandbox is enabled in "
            "production (or set SANDBOX_ENABLED=false)"
        )
    problems.extend(_default_secret_problems(config))
    if not config.get("SESSION_COOKIE_SECURE"):
        problems.append("SESSION_COOKIE_SECURE must be on in production (cookies only over HTTPS)")
    name = str(config.get("SESSION_COOKIE_NAME") or "")
    if not name.startswith("__Host-"):
        problems.append("SESSION_COOKIE_NAME must start with __Host- in production")
    if not str(config.get("PUBLIC_BASE_URL") or "").startswith("https://"):
        problems.append("PUBLIC_BASE_URL must be an https:// URL in production")
    if not config.get("METRICS_TOKEN") or len(str(config["METRICS_TOKEN"])) < 16:
        problems.append(
            "METRICS_TOKEN must be set (at least 16 characters): /metrics answers only "
            "'Authorization: Bearer <METRICS_TOKEN>' in production"
        )
    if config.get("FAULT_POINT"):
        problems.append("KASSA_FAULT_POINT is for crash tests only; unset it")
    if config.get("OUTGOING_WEBHOOK_ALLOW_PRIVATE"):
        problems.append(
            "OUTGOING_WEBHOOK_ALLOW_PRIVATE is for development only (list an internal "
            "receiver's network in OUTGOING_WEBHOOK_ALLOWED_NETWORKS instead)"
        )
    if problems:
        raise RuntimeError("Refusing to start in production: " + "; ".join(problems))


def _encryption_problems(config: dict[str, Any]) -> list[str]:
    from app.crypto import BLIND_INDEX_MIN_LENGTH, check_keys, split_keys

    problems = []
    if not split_keys(config.get("ENCRYPTION_KEYS")):
        problems.append(
            "ENCRYPTION_KEYS must be set (Fernet keys, comma-separated, the first encrypts; "
            "`flask generate-encryption-key` makes one)"
        )
    problems.extend(check_keys(config.get("ENCRYPTION_KEYS")))
    if len(str(config.get("BLIND_INDEX_KEY") or "")) < BLIND_INDEX_MIN_LENGTH:
        problems.append(
            f"BLIND_INDEX_KEY must be set to a random value of at least "
            f"{BLIND_INDEX_MIN_LENGTH} characters (it keys the email search hashes)"
        )
    return problems


# Values seen in examples, tutorials and our own docs/tests: never acceptable as secrets.
KNOWN_DEFAULT_SECRETS = {
    "",
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "dev",
    "development",
    "test",
    "testing",
    "default",
    "password",
    "kassa",
    "notasecret",
    "not-a-secret",
    "xxx",
    "your-secret-key",
    "your_secret_key",
    "secret-key",
    "secret_key",
    "supersecret",
    "test-secret-key-not-for-production-0123456789abcdef",
}
SECRET_SETTINGS = (
    "SECRET_KEY",
    "BLIND_INDEX_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "RAZORPAY_KEY_SECRET",
    "RAZORPAY_WEBHOOK_SECRET",
    "PAYPAL_CLIENT_SECRET",
    "SANDBOX_WEBHOOK_SECRET",
    "METRICS_TOKEN",
)


def _looks_default(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in KNOWN_DEFAULT_SECRETS:
        return True
    # Placeholders such as "sk_live_...", "whsec_xxx", "<your key>", "change-this".
    if any(
        marker in lowered
        for marker in ("change", "placeholder", "example", "your_", "your-", "<", "...", "xxxx")
    ):
        return True
    return len(set(lowered)) <= 2  # "aaaa...", "0000..."


def _default_secret_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    for name in SECRET_SETTINGS:
        value = config.get(name)
        if value and _looks_default(str(value)):
            problems.append(f"{name} is a default or placeholder value; set a real secret")
    return problems
