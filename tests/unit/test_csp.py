"""The per-page CSP hook: pages add sources, everything else stays strict."""

from __future__ import annotations

from flask import Flask, Response

from app import csp


def test_merge_adds_sources_and_drops_none() -> None:
    policy = "default-src 'self'; script-src 'self'; frame-src 'none'"
    merged = csp.parse(
        csp.merge(
            policy,
            {
                "script-src": ["https://checkout.example"],
                "frame-src": ["https://api.example"],
                "connect-src": ["https://api.example"],
            },
        )
    )
    assert merged["script-src"] == ["'self'", "https://checkout.example"]
    assert merged["frame-src"] == ["https://api.example"]
    # A directive the policy lacked starts from default-src, as browsers would.
    assert merged["connect-src"] == ["'self'", "https://api.example"]
    assert merged["default-src"] == ["'self'"]


def test_apply_changes_only_responses_that_asked() -> None:
    app = Flask(__name__)
    with app.test_request_context():
        plain = csp.apply(Response("x"))
        assert "Content-Security-Policy" not in plain.headers
        csp.allow(script_src=["https://checkout.example"])
        csp.allow(script_src=["https://checkout.example"])  # once is enough
        strict = csp.apply(Response("x"))
    directives = csp.parse(strict.headers["Content-Security-Policy"])
    assert directives["script-src"] == ["'self'", "https://checkout.example"]
    assert directives["object-src"] == ["'none'"]


def test_apply_extends_a_policy_set_elsewhere() -> None:
    app = Flask(__name__)
    with app.test_request_context():
        csp.allow(script_src=["https://checkout.example"])
        response = Response(
            "x",
            headers={
                "Content-Security-Policy": "default-src 'self'; script-src 'self' 'nonce-abc'"
            },
        )
        csp.apply(response)
    assert csp.parse(response.headers["Content-Security-Policy"])["script-src"] == [
        "'self'",
        "'nonce-abc'",
        "https://checkout.example",
    ]


def test_origin_of_a_script_url() -> None:
    assert (
        csp.origin("https://checkout.razorpay.com/v1/checkout.js")
        == "https://checkout.razorpay.com"
    )
    assert csp.origin("http://127.0.0.1:8765/v1/checkout.js") == "http://127.0.0.1:8765"
