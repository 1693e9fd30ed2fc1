"""Every route answers with the security headers, and no page runs inline code unsigned."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import g
from sec_helpers import csrf_from, login, start_checkout
from werkzeug.routing import IntegerConverter

from app.security import SCRIPT_INVENTORY, csp_allow


def parse_csp(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for chunk in header.split(";"):
        words = chunk.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def assert_security_headers(response: Any, where: str) -> dict[str, list[str]]:
    headers = response.headers
    csp = headers.get("Content-Security-Policy")
    assert csp, f"{where}: no CSP"
    d = parse_csp(csp)
    assert d["default-src"] == ["'self'"], where
    assert d["object-src"] == ["'none'"], where
    assert d["base-uri"] == ["'none'"], where
    assert d["frame-ancestors"] == ["'none'"], where
    assert d["form-action"][0] == "'self'", where
    for name in ("script-src", "style-src"):
        sources = d[name]
        assert "'self'" in sources, where
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, where
        assert any(s.startswith("'nonce-") for s in sources), where
        assert "*" not in sources and "https:" not in sources and "data:" not in sources, where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("strict-origin-when-cross-origin", "no-referrer")
    permissions = headers.get("Permissions-Policy", "")
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=(self"):
        assert feature in permissions, where
    assert "Strict-Transport-Security" not in headers, f"{where}: HSTS over plain HTTP"
    return d


class InlineCode(HTMLParser):
    """Collects inline <script>/<style> elements, style= and on*= attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.nonces: list[str | None] = []
        self.scripts: list[str] = []
        self.nonce: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.scripts.append(str(a["src"]))
            else:
                self.nonces.append(a.get("nonce"))
        if tag == "style":
            self.nonces.append(a.get("nonce"))
        if tag == "link" and (a.get("rel") or "").lower() == "stylesheet":
            href = a.get("href") or ""
            if href.startswith(("http:", "https:", "//")):
                self.problems.append(f"third-party stylesheet {href}")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> event handler attribute")
            if name == "style":
                self.problems.append(f"<{tag} style=...> inline style attribute")
            if name in ("href", "src", "action", "formaction") and (
                value or ""
            ).strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=javascript:...>")


def check_html(response: Any, csp: dict[str, list[str]], where: str) -> InlineCode:
    parser = InlineCode()
    parser.feed(response.get_data(as_text=True))
    parser.close()
    allowed = {s[len("'nonce-") : -1] for s in csp["script-src"] if s.startswith("'nonce-")}
    for nonce in parser.nonces:
        assert nonce is not None and nonce in allowed, (
            f"{where}: inline <script>/<style> without this response's nonce"
        )
    assert not parser.problems, f"{where}: {parser.problems}"
    return parser


@pytest.fixture
def samples(app: Any, client: Any) -> dict[str, str]:
    """Real ids from seeded data: an open attempt (sandbox page), and a paid, partly
    refunded order (return, refund and merchant pages)."""
    from app.extensions import db
    from app.models import Payment
    from app.payments.audit import SYSTEM
    from app.payments.refunds import create_refund

    paid = start_checkout(client)
    page = client.get(paid.headers["Location"]).get_data(as_text=True)
    client.post(
        paid.headers["Location"], data={"scenario": "succeed", "csrf_token": csrf_from(page)}
    )
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    for body, headers in processor.undelivered:
        assert client.post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
    processor.undelivered.clear()
    assert start_checkout(client, "mug-eur").status_code == 303
    with app.app_context():
        payments = db.session.query(Payment).order_by(Payment.id).all()
        assert [p.status for p in payments] == ["succeeded", "processing"]
        refund = create_refund(payments[0].public_id, 500, "requested_by_customer", SYSTEM)
        return {
            "sku": "tee-usd",
            "order_id": payments[0].order.public_id,
            "payment_id": payments[0].public_id,
            "refund_id": refund.public_id,
            "session_id": str(payments[1].gateway_reference),
            "open_payment_id": payments[1].public_id,
            "gateway": "sandbox",
            "filename": "css/app.css",
            "public_id": payments[0].public_id,
            # <int:...> arguments: database ids
            "int:payment_id": str(payments[0].id),
            "int:order_id": str(payments[0].order.id),
        }


def crawl_urls(app: Any, samples: dict[str, str]) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method in the URL map."""
    out = []
    with app.test_request_context():
        from flask import url_for

        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.endpoint == "auth.logout"):
            values: dict[str, Any] = {}
            for arg in rule.arguments:
                if isinstance(rule._converters.get(arg), IntegerConverter):
                    values[arg] = int(samples.get(f"int:{arg}", 1))
                else:
                    values[arg] = samples.get(arg, "sample")
            url = url_for(rule.endpoint, **values)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((rule.endpoint, method, url))
    return out


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "owner"])
def test_every_route_sends_security_headers_and_no_unsigned_inline_code(
    app: Any, client: Any, samples: dict[str, str], signed_in: bool
) -> None:
    if signed_in:
        assert login(client).status_code == 303
    seen_endpoints = set()
    for endpoint, method, url in crawl_urls(app, samples):
        for htmx in (False, True):
            headers = {"HX-Request": "true"} if htmx else {}
            response = client.open(url, method=method, headers=headers)
            where = f"{method} {url}{' (htmx)' if htmx else ''} -> {response.status_code}"
            csp = assert_security_headers(response, where)
            if response.mimetype == "text/html":
                check_html(response, csp, where)
            response.close()  # static files stream from an open file
        seen_endpoints.add(endpoint)
    # The crawl really covered the doors: pages, partials, webhooks, static, auth.
    for endpoint in (
        "checkout.storefront",
        "checkout.product",
        "checkout.order_status",
        "checkout.payment_return",
        "sandbox.pay",
        "webhooks.receive",
        "static",
        "auth.login",
        "auth.two_factor_setup",
        "security.csp_report",
    ):
        assert endpoint in seen_endpoints


def test_errors_and_unknown_paths_have_the_headers(client: Any) -> None:
    for response in (
        client.get("/no/such/page"),
        client.post("/products/tee-usd", data={}),
        client.get("/orders/ord_missing"),
    ):
        csp = assert_security_headers(response, response.request.path)
        check_html(response, csp, response.request.path)


def test_nonce_is_fresh_per_response_and_usable_in_templates(app: Any, client: Any) -> None:
    first = parse_csp(client.get("/").headers["Content-Security-Policy"])["script-src"]
    second = parse_csp(client.get("/").headers["Content-Security-Policy"])["script-src"]
    assert first != second
    with app.test_request_context("/"):
        from flask import render_template_string

        html = render_template_string('<script nonce="{{ csp_nonce() }}">1</script>')
        assert f'nonce="{g._csp_nonce}"' in html


def test_a_page_can_add_razorpay_checkout_and_only_that_page_gets_it(make_app: Any) -> None:
    app = make_app()

    @app.get("/_test/razorpay-page")
    def razorpay_page() -> str:
        """A stand-in for the Razorpay checkout page."""
        g.csp_extra_script_src = ["https://checkout.razorpay.com"]
        return "<p>pay</p>"

    @app.get("/_test/other-extra")
    def other_extra() -> str:
        """A page using the csp_allow() form of the hook."""
        csp_allow(script_src=["http://127.0.0.1:9999"], frame_src=["http://127.0.0.1:9999"])
        return "<p>x</p>"

    client = app.test_client()
    rzp = parse_csp(client.get("/_test/razorpay-page").headers["Content-Security-Policy"])
    assert "https://checkout.razorpay.com" in rzp["script-src"]
    assert "https://cdn.razorpay.com" in rzp["script-src"]
    assert rzp["frame-src"] == ["https://api.razorpay.com"]
    assert "https://lumberjack.razorpay.com" in rzp["connect-src"]
    assert "https://api.razorpay.com" in rzp["form-action"]
    other = parse_csp(client.get("/_test/other-extra").headers["Content-Security-Policy"])
    assert "http://127.0.0.1:9999" in other["script-src"]
    assert "http://127.0.0.1:9999" in other["frame-src"]
    plain = parse_csp(client.get("/").headers["Content-Security-Policy"])
    assert not any("razorpay" in s or "9999" in s for v in plain.values() for s in v)


@pytest.mark.parametrize(
    "base_url", ["http://localhost", "https://localhost", "https://shop.example:8443"]
)
def test_precomputed_policy_is_the_policy_build_csp_writes(make_app: Any, base_url: str) -> None:
    # Pages without extras get the policy from a per-app cache, split around the nonce.
    from app.security import build_csp

    app = make_app()
    client = app.test_client()
    for _ in range(2):  # the first response fills the cache, the second uses it
        response = client.get("/healthz", base_url=base_url)
        header = response.headers["Content-Security-Policy"]
        nonce = parse_csp(header)["script-src"][-1][len("'nonce-") : -1]
        with app.test_request_context("/healthz", base_url=base_url):
            assert header == build_csp(nonce, {}, app.config["CSP_REPORT_URI"])
        if base_url.startswith("https"):
            assert response.headers["Reporting-Endpoints"] == f'csp="{base_url}/csp-report"'
        else:
            assert "Reporting-Endpoints" not in response.headers


def test_form_action_names_only_enabled_gateways(make_app: Any) -> None:
    app = make_app()
    csp = parse_csp(app.test_client().get("/").headers["Content-Security-Policy"])
    # Only the sandbox is on here: its hosted page is ours, nobody else may receive a form.
    assert csp["form-action"] == ["'self'"]


def test_hsts_only_when_enabled_and_over_https(make_app: Any) -> None:
    app = make_app(HSTS_ENABLED=True)
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/").headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "upgrade-insecure-requests" in secure.headers["Content-Security-Policy"]
    assert "report-to csp" in secure.headers["Content-Security-Policy"]
    assert secure.headers["Reporting-Endpoints"] == 'csp="https://localhost/csp-report"'
    off = make_app(HSTS_ENABLED=False).test_client()
    assert "Strict-Transport-Security" not in off.get("/", base_url="https://localhost").headers


def test_payment_return_pages_send_no_referrer(client: Any, samples: dict[str, str]) -> None:
    response = client.get(f"/checkout/return/{samples['payment_id']}")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


# PCI DSS 4.0 6.4.3 / 11.6.1: the exact scripts each payment page may load. A change here
# is a reviewed change to the script inventory (app/security.py SCRIPT_INVENTORY).
EXPECTED_PAYMENT_PAGE_SCRIPTS = ["/static/js/htmx.min.js", "/static/js/app.js"]
# Pages with a live status widget also load the htmx SSE extension (their event stream).
LIVE_PAGE_SCRIPTS = [*EXPECTED_PAYMENT_PAGE_SCRIPTS, "/static/js/htmx-ext-sse.min.js"]


def test_payment_pages_load_exactly_the_inventoried_scripts(
    app: Any, client: Any, samples: dict[str, str]
) -> None:
    pages = [
        "/",
        f"/products/{samples['sku']}",
        f"/sandbox/pay/{samples['session_id']}",
        f"/checkout/return/{samples['payment_id']}",
        f"/orders/{samples['order_id']}",
        f"/checkout/cancel/{samples['open_payment_id']}",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        csp = parse_csp(response.headers["Content-Security-Policy"])
        parser = check_html(response, csp, url)
        live = url.startswith(("/orders/", "/checkout/return/"))
        assert parser.scripts == (LIVE_PAGE_SCRIPTS if live else EXPECTED_PAYMENT_PAGE_SCRIPTS), url
        assert parser.nonces == [], f"{url}: payment pages run no inline code at all"
        html = response.get_data(as_text=True)
        integrity = SCRIPT_INVENTORY["js/htmx.min.js"]["integrity"]
        assert f'integrity="{integrity}"' in html, url
        if live:
            integrity = SCRIPT_INVENTORY["js/htmx-ext-sse.min.js"]["integrity"]
            assert f'integrity="{integrity}"' in html, url


def test_inventoried_script_files_match_their_pinned_hashes(app: Any) -> None:
    for filename, entry in SCRIPT_INVENTORY.items():
        with open(f"{app.static_folder}/{filename}", "rb") as fh:
            digest = base64.b64encode(hashlib.sha384(fh.read()).digest()).decode()
        assert entry["integrity"] == f"sha384-{digest}", (
            f"{filename} changed: review it, then update SCRIPT_INVENTORY"
        )
        assert entry["purpose"]


def test_csp_reports_are_logged_without_query_strings(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    report = {
        "csp-report": {
            "document-uri": "http://localhost/checkout/return/pay_x?session_id=secret123",
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "blocked-uri": "https://evil.example/skimmer.js?card=4242424242424242",
        }
    }
    with caplog.at_level(logging.WARNING, logger="app.security"):
        response = client.post(
            "/csp-report", json=report, headers={"Content-Type": "application/csp-report"}
        )
    assert response.status_code == 204
    record = next(r for r in caplog.records if r.getMessage() == "csp violation")
    assert record.csp_blocked == "https://evil.example/skimmer.js"  # type: ignore[attr-defined]
    assert record.csp_document == "http://localhost/checkout/return/pay_x"  # type: ignore
    assert record.csp_directive == "script-src-elem"  # type: ignore
    assert "4242" not in caplog.text and "secret123" not in caplog.text
    reporting_api = [
        {
            "type": "csp-violation",
            "body": {
                "documentURL": "http://localhost/",
                "effectiveDirective": "style-src-attr",
                "blockedURL": "inline",
            },
        }
    ]
    assert (
        client.post(
            "/csp-report", json=reporting_api, headers={"Content-Type": "application/reports+json"}
        ).status_code
        == 204
    )
    assert client.post("/csp-report", data=b"not json").status_code == 400


def test_no_template_contains_inline_code() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "templates"
    for path in root.rglob("*.html"):
        if path.parent.name == "emails":
            # Emails are never served under our CSP; mail apps need inline styles (and run
            # no scripts at all). They must still carry no script or event handler.
            text = path.read_text()
            assert "<script" not in text and not re.search(r"\son[a-z]+=\"", text), path
            continue
        text = path.read_text()
        for match in re.finditer(r"<(script|style)\b([^>]*)>", text):
            attrs = match.group(2)
            assert "src=" in attrs or "csp_nonce()" in attrs, f"{path}: {match.group(0)}"
        assert not re.search(r"\sstyle=\"", text), f"{path}: inline style attribute"
        assert not re.search(r"\son[a-z]+=\"", text), f"{path}: inline event handler"
