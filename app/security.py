"""Security headers, the Content-Security-Policy, session lifetimes and URL checks.

Every response (pages, htmx partials, API, webhooks, static files, errors) leaves through
`_security_headers`. The CSP allows scripts and styles from our origin or carrying this
request's nonce (`csp_nonce()` in templates), and nothing inline otherwise. A page that
needs a third-party script (Razorpay's checkout.js) asks for it on that response only:

    g.csp_extra_script_src = ["https://checkout.razorpay.com"]      # or
    csp_allow(script_src=[...], frame_src=[...], connect_src=[...])  # any directive

Known gateway script hosts bring the companions their script needs (see
GATEWAY_SCRIPT_PROFILES). The script inventory (PCI DSS 4.0 req. 6.4.3) is
SCRIPT_INVENTORY: our own scripts are served with Subresource Integrity from it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    redirect,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, logout_user, user_logged_in
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Response

from app.extensions import csrf, limiter
from app.proxies import real_app, real_request

log = logging.getLogger(__name__)

CSP_HEADER = "Content-Security-Policy"

# Gateways whose hosted page our forms redirect to: a form submission that ends in a
# redirect is checked against form-action too (the checkout and retry forms' 303 to Stripe
# Checkout), so every page allows it. Razorpay's redirect mode posts to api.razorpay.com
# only from the Razorpay page, which gets it from GATEWAY_SCRIPT_PROFILES; the sandbox's
# hosted page is on our own origin.
GATEWAY_FORM_ACTION = {
    "stripe": ["https://checkout.stripe.com"],
    # The payer-action link of an Orders v2 order (live and sandbox).
    "paypal": ["https://www.paypal.com", "https://www.sandbox.paypal.com"],
}

# What a gateway's script needs besides its own host, from the gateway's published CSP
# allowlist (Razorpay: razorpay/razorpay-magento etc/csp_whitelist.xml): checkout.js loads
# a risk-detection bundle from cdn.razorpay.com, opens its modal in an iframe on
# api.razorpay.com and reports to lumberjack. The iframe may use the Payment Request API.
GATEWAY_SCRIPT_PROFILES: dict[str, dict[str, list[str]]] = {
    "https://checkout.razorpay.com": {
        "script-src": ["https://checkout.razorpay.com", "https://cdn.razorpay.com"],
        "frame-src": ["https://api.razorpay.com"],
        "connect-src": [
            "https://lumberjack.razorpay.com",
            "https://lumberjack-metrics.razorpay.com",
        ],
        "img-src": ["https://cdn.razorpay.com"],
        "form-action": ["https://api.razorpay.com"],
        "permissions-payment": ['"https://api.razorpay.com"'],
    },
}

# PCI DSS 4.0 6.4.3: every script a payment page may run, why it is there, and (for files we
# serve) its SHA-384. Templates emit integrity= from this table, so a swapped file is refused
# by the browser; tests/integration/security pins the scripts each payment page loads.
SCRIPT_INVENTORY: dict[str, dict[str, str]] = {
    "js/htmx.min.js": {
        "integrity": "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg",
        "purpose": "htmx 2.0.11 (vendored, see static/js/VENDORED.md): live order status, "
        "dashboard partials",
    },
    "js/app.js": {
        "integrity": "sha384-9qHcLBM495gHitbWleXaKshF7xXT6EqdM2igTgdcN51ftdqqwJOt1eh0ufEN8F9O",
        "purpose": "Kassa's own: focus a form's error summary when the page loads (no network, "
        "no data read)",
    },
    "js/htmx-ext-sse.min.js": {
        "integrity": "sha384-A986SAtodyH8eg8x8irJnYUk7i9inVQqYigD6qZ9evobksGNIXfeFvDwLSHcp31N",
        "purpose": "htmx SSE extension 2.2.4 (vendored, see static/js/VENDORED.md): the order "
        "page and dashboard update from the server's event stream",
    },
}

# Pages whose URLs carry gateway references: send no Referer from them at all.
NO_REFERRER_ENDPOINTS = {"checkout.payment_return", "checkout.payment_cancel"}
NO_REFERRER_BLUEPRINTS = {"sandbox", "auth"}

PERMISSIONS = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), usb=()"
)

# Blueprints a merchant owner without 2FA may still use when REQUIRE_2FA_FOR_OWNERS is on
# (public pages and the enrolment pages themselves).
TWO_FACTOR_EXEMPT_BLUEPRINTS = {"auth", "checkout", "sandbox", "webhooks", "security", "api"}

bp = Blueprint("security", __name__)


# --------------------------------------------------------------------------- nonce and CSP


def csp_nonce() -> str:
    """This request's nonce (made on first use), for <script nonce> and <style nonce>."""
    nonce = g.get("_csp_nonce")
    if nonce is None:
        nonce = g._csp_nonce = secrets.token_urlsafe(18)
    return str(nonce)


def csp_allow(**directives: Iterable[str]) -> None:
    """Ask for extra sources on this response only: csp_allow(script_src=[...])."""
    extra: dict[str, list[str]] = g.setdefault("csp_extra", {})
    for name, sources in directives.items():
        bucket = extra.setdefault(name.replace("_", "-"), [])
        bucket.extend(s for s in sources if s not in bucket)


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _base_directives(app: Flask) -> dict[str, list[str]]:
    form_action = ["'self'"]
    gateways = app.extensions.get("kassa_gateways", {})
    for name in gateways:
        if name not in GATEWAY_FORM_ACTION:
            continue
        form_action.extend(GATEWAY_FORM_ACTION[name])
        # A local stand-in for the gateway's API (tests, development) hosts its pages too.
        override = origin_of(app.config.get(f"{name.upper()}_API_BASE") or "")
        if override:
            form_action.append(override)
    return {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": list(dict.fromkeys(form_action)),
    }


def _extras() -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for name, sources in (g.get("csp_extra") or {}).items():
        extra.setdefault(name, []).extend(sources)
    for attr, name in (
        ("csp_extra_script_src", "script-src"),
        ("csp_extra_frame_src", "frame-src"),
        ("csp_extra_connect_src", "connect-src"),
        ("csp_extra_img_src", "img-src"),
    ):
        extra.setdefault(name, []).extend(g.get(attr) or [])
    for host in list(extra.get("script-src", [])):
        for name, sources in GATEWAY_SCRIPT_PROFILES.get(host.rstrip("/"), {}).items():
            extra.setdefault(name, []).extend(sources)
    return {name: sources for name, sources in extra.items() if sources}


def build_csp(
    nonce: str | None, extra: dict[str, list[str]] | None = None, report_uri: str | None = None
) -> str:
    return _render_csp(
        current_app.extensions["kassa_csp_base"], nonce, extra, report_uri, request.is_secure
    )


def _render_csp(
    base: dict[str, list[str]],
    nonce: str | None,
    extra: dict[str, list[str]] | None,
    report_uri: str | None,
    secure: bool,
) -> str:
    directives = {k: list(v) for k, v in base.items()}
    for name, sources in (extra or {}).items():
        if name.startswith("permissions-"):
            continue
        # A directive the base leaves to default-src starts empty: a page that allows
        # Razorpay's frames does not thereby allow frames from anywhere else.
        current = [s for s in directives.get(name, []) if s != "'none'"]
        for source in sources:
            if source not in current:
                current.append(source)
        directives[name] = current
    if nonce:
        directives["script-src"].append(f"'nonce-{nonce}'")
        directives["style-src"].append(f"'nonce-{nonce}'")
    if secure:
        directives["upgrade-insecure-requests"] = []
    if report_uri:
        directives["report-uri"] = [report_uri]
        if secure:
            # The Reporting API (report-to) takes only secure endpoints; report-uri stays
            # for browsers without it.
            directives["report-to"] = ["csp"]
    return "; ".join(" ".join([name, *sources]).strip() for name, sources in directives.items())


_NONCE_MARK = "\x00"  # never in a source expression or a nonce (URL-safe base64)
_PLAIN_PERMISSIONS = f"{PERMISSIONS}, payment=(self)"


class _HeaderCache:
    """What the security headers of a page without extras look like, per app: the CSP
    split around its two nonces (by secure/insecure request and report URI), the
    Reporting-Endpoints value by host. Rebuilt when the base directives are replaced."""

    def __init__(self, base: dict[str, list[str]]) -> None:
        self.base = base
        self.csp: dict[tuple[bool, str | None], tuple[str, str, str]] = {}
        self.endpoints: dict[tuple[str, str, str], str] = {}

    def csp_parts(self, secure: bool, report_uri: str | None) -> tuple[str, str, str]:
        key = (secure, report_uri)
        parts = self.csp.get(key)
        if parts is None:
            head, mid, tail = _render_csp(self.base, _NONCE_MARK, None, report_uri, secure).split(
                _NONCE_MARK
            )
            parts = self.csp[key] = (head, mid, tail)
        return parts

    def reporting_endpoint(self, report_uri: str) -> str:
        if "://" in report_uri:
            return f'csp="{report_uri}"'
        req = real_request()
        # The Host header is the client's: the cache is bounded.
        key = (req.scheme, req.host, req.root_path)
        value = self.endpoints.get(key)
        if value is None:
            if len(self.endpoints) >= 64:
                self.endpoints.clear()
            value = self.endpoints[key] = f'csp="{req.host_url.rstrip("/") + report_uri}"'
        return value


def _header_cache(app: Flask) -> _HeaderCache:
    base = app.extensions["kassa_csp_base"]
    cache: _HeaderCache | None = app.extensions.get("kassa_security_header_cache")
    if cache is None or cache.base is not base:
        cache = app.extensions["kassa_security_header_cache"] = _HeaderCache(base)
    return cache


def _security_headers(response: Response) -> Response:
    app = real_app()
    config = app.config
    cache = _header_cache(app)
    extra = _extras()
    nonce = csp_nonce()
    report_uri = config.get("CSP_REPORT_URI")
    secure = request.is_secure
    headers = response.headers
    if extra:
        headers[CSP_HEADER] = _render_csp(cache.base, nonce, extra, report_uri, secure)
        payment = " ".join(["self", *extra.get("permissions-payment", [])])
        permissions = f"{PERMISSIONS}, payment=({payment})"
    else:
        head, mid, tail = cache.csp_parts(secure, report_uri)
        headers[CSP_HEADER] = f"{head}{nonce}{mid}{nonce}{tail}"
        permissions = _PLAIN_PERMISSIONS
    if report_uri and secure:
        headers["Reporting-Endpoints"] = cache.reporting_endpoint(report_uri)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    headers["Referrer-Policy"] = _referrer_policy()
    headers["Permissions-Policy"] = permissions
    if config.get("HSTS_ENABLED") and (
        secure or str(config.get("PUBLIC_BASE_URL", "")).startswith("https:")
    ):
        headers["Strict-Transport-Security"] = f"max-age={int(config['HSTS_MAX_AGE'])}"
    if _private_response():
        # Sign-in pages, recovery codes, merchant pages: never kept by a shared cache.
        headers["Cache-Control"] = "no-store"
        headers.add("Vary", "Cookie")
    return response


def _referrer_policy() -> str:
    endpoint = request.endpoint or ""
    if endpoint in NO_REFERRER_ENDPOINTS or request.blueprint in NO_REFERRER_BLUEPRINTS:
        return "no-referrer"
    return str(g.get("referrer_policy") or "strict-origin-when-cross-origin")


def _private_response() -> bool:
    if request.blueprint in ("auth", "dashboard"):
        return True
    return "_user_id" in session


# --------------------------------------------------------------------------- script integrity


def script_integrity(filename: str) -> str:
    """The pinned SRI hash of one of our scripts (empty when it is not in the inventory)."""
    entry = SCRIPT_INVENTORY.get(filename)
    return entry["integrity"] if entry else ""


# --------------------------------------------------------------------------- redirects


_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")


def is_safe_next(target: str | None) -> TypeGuard[str]:
    """True for a same-site relative path: never //host, /\\host, encoded tricks, schemes."""
    if not target or len(target) > 2000:
        return False
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" becomes "//evil") and
    # treat "\" as "/"; decoding catches "/%5Cevil" and "/%2F/evil" after a second parse.
    for candidate in (target, unquote(target), unquote(unquote(target))):
        if _CONTROL.search(candidate) or "\\" in candidate:
            return False
        if not candidate.startswith("/") or candidate.startswith("//"):
            return False
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return False
    return True


_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_return_hosts() -> set[tuple[str, int | None]]:
    """(host, port) pairs; port None means the URL's scheme's default port."""
    config = current_app.config
    hosts: set[tuple[str, int | None]] = set()
    for entry in config.get("ALLOWED_RETURN_HOSTS", []):
        parts = urlsplit("//" + entry.strip().lower())
        if parts.hostname:
            hosts.add((parts.hostname, parts.port))
    public = urlsplit(config.get("PUBLIC_BASE_URL") or "")
    if public.hostname:
        port = public.port if public.port != _DEFAULT_PORTS.get(public.scheme) else None
        hosts.add((public.hostname.lower(), port))
    return hosts


def is_allowed_return_url(url: str | None) -> bool:
    """An absolute http(s) URL on our public host or a configured ALLOWED_RETURN_HOSTS host.

    For return/cancel URLs that merchants' systems pass to the API. Hosts match exactly
    (no subdomains); no userinfo, no backslashes or control characters; when we are served
    over https, plain http is allowed only for loopback hosts.
    """
    if not url or len(url) > 2000 or _CONTROL.search(url) or "\\" in url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return False
    public_scheme = urlsplit(current_app.config.get("PUBLIC_BASE_URL") or "").scheme
    if (
        parts.scheme == "http"
        and public_scheme == "https"
        and parts.hostname not in ("localhost", "127.0.0.1", "::1")
    ):
        return False
    if port == _DEFAULT_PORTS[parts.scheme]:
        port = None
    return (parts.hostname.lower(), port) in allowed_return_hosts()


# --------------------------------------------------------------------------- sessions


def _stamp_login(sender: Any, user: Any = None, **extra: Any) -> None:
    now = int(time.time())
    session["kassa_login_at"] = now
    session["kassa_seen_at"] = now


def _enforce_session_lifetime() -> Response | None:
    """Idle and absolute timeouts for merchant sessions; owners enrol in 2FA if required."""
    if "_user_id" not in session:
        return None
    config = current_app.config
    now = int(time.time())
    login_at = session.get("kassa_login_at")
    seen_at = session.get("kassa_seen_at")
    if (
        not isinstance(login_at, int)
        or not isinstance(seen_at, int)
        or now - seen_at > int(config["SESSION_IDLE_MINUTES"]) * 60
        or now - login_at > int(config["SESSION_MAX_HOURS"]) * 3600
    ):
        # The request goes on as an anonymous one: protected views send it to sign in.
        logout_user()
        session.clear()
        g.session_expired = True
        return None
    # Activity is a page load or a form post. htmx GETs don't count: a dashboard left open
    # with self-polling widgets must still time out. Refreshed at most every 30 s so the
    # cookie is not rewritten on every request.
    background = request.method == "GET" and request.headers.get("HX-Request") == "true"
    if not background and now - seen_at >= 30:
        session["kassa_seen_at"] = now
    if (
        config.get("REQUIRE_2FA_FOR_OWNERS")
        and request.blueprint not in TWO_FACTOR_EXEMPT_BLUEPRINTS
        and request.endpoint not in (None, "static")
        and current_user.is_authenticated
        and current_user.role == "owner"
        and not current_user.totp_enabled
    ):
        target = url_for("auth.two_factor_setup")
        if request.headers.get("HX-Request") == "true":
            response = Response(status=204)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target, code=303)
    return None


# --------------------------------------------------------------------------- CSP reports


@bp.post("/csp-report")
@csrf.exempt
@limiter.limit(lambda: current_app.config["CSP_REPORT_RATE_LIMIT"])
def csp_report() -> tuple[str, int]:
    """Browsers report blocked scripts here (PCI DSS 11.6.1 change and tamper detection)."""
    raw = request.get_data(cache=False)[:16384]
    try:
        payload = json.loads(raw or b"null")
    except ValueError:
        return "", 400
    reports = payload if isinstance(payload, list) else [payload]
    for item in reports[:20]:
        if not isinstance(item, dict):
            continue
        body = item.get("csp-report") or item.get("body") or {}
        if not isinstance(body, dict):
            continue
        log.warning(
            "csp violation",
            extra={
                "csp_directive": str(
                    body.get("effective-directive")
                    or body.get("effectiveDirective")
                    or body.get("violated-directive")
                    or ""
                )[:100],
                # Only origins and paths: query strings may carry personal data.
                "csp_blocked": _trim_url(body.get("blocked-uri") or body.get("blockedURL")),
                "csp_document": _trim_url(body.get("document-uri") or body.get("documentURL")),
                "csp_source": _trim_url(body.get("source-file") or body.get("sourceFile")),
            },
        )
    return "", 204


def _trim_url(value: Any) -> str:
    text = str(value or "")[:500]
    parts = urlsplit(text)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
    return text.split("?")[0][:100]


# --------------------------------------------------------------------------- wiring


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer kept between requests.

    Flask builds a new serializer on every request (and itsdangerous test-serializes an
    empty dict while building it); it depends only on the secret keys and the settings
    below, so it is rebuilt only when those change. Cookies are unchanged, and a session
    that was not modified is still not re-signed (Flask's should_set_cookie)."""

    _cached: tuple[Any, URLSafeTimedSerializer | None] = (None, None)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached_key, serializer = self._cached
        if cached_key != key:
            serializer = super().get_signing_serializer(app)
            self._cached = (key, serializer)
        return serializer


def init_app(app: Flask) -> None:
    """Register headers, session checks, the CSP report endpoint and rate-limit exemptions."""
    app.session_interface = SessionInterface()
    app.extensions["kassa_csp_base"] = _base_directives(app)
    app.after_request(_security_headers)
    app.before_request(_enforce_session_lifetime)
    user_logged_in.connect(_stamp_login, app)
    app.jinja_env.globals.update(csp_nonce=csp_nonce, script_integrity=script_integrity)
    app.register_blueprint(bp)
    # Gateways retry until they get a 2xx: never rate-limit them (they are signature-checked).
    from app.webhooks import bp as webhooks_bp

    limiter.exempt(webhooks_bp)
