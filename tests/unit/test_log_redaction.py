"""The log filter keeps secrets, signatures, e-mail local parts and card numbers out of logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.logging import (
    RedactingFilter,
    clean_record,
    configure,
    json_formatter,
    luhn_valid,
    redact,
)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (
            "Authorization: Bearer sk_live_51Habc",
            ["sk_live_51Habc", "Bearer sk"],
            ["Authorization"],
        ),
        ("authorization=Basic QWxhZGRpbjpvcGVu", ["QWxhZGRpbjpvcGVu"], ["authorization"]),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc", ["4eC39HqLyjWDarjtT1zdp7dc"], ["sk_test_"]),
        ("restricted rk_live_abcDEF123", ["abcDEF123"], ["rk_live_"]),
        ("secret whsec_5f2a9c1e7b", ["5f2a9c1e7b"], ["whsec_"]),
        ("razorpay rzp_live_Kx81Aa, rzp_test_Zz9", ["Kx81Aa", "Zz9"], ["rzp_live_"]),
        (
            "Stripe-Signature: t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
            ["5257a869e7", "t=1700000000"],
            ["Stripe-Signature"],
        ),
        ('{"kassa-signature": "t=1,v1=abcdef0123456789abcdef0123456789"}', ["abcdef0123"], []),
        ("client secret pi_3MtwBw_secret_YrKJUKribcBjcG8HVhfZluoGH", ["YrKJUKribc"], ["pi_3MtwBw"]),
        ("mail jane.doe+shop@example.com now", ["jane.doe", "+shop"], ["j***@example.com"]),
        ("card 4242 4242 4242 4242 ok", ["4242 4242 4242 4242"], ["****4242"]),
        ("card 4000-0566-5566-5556", ["4000-0566"], ["****5556"]),
        ("amex 378282246310005", ["378282246310005"], ["****0005"]),
        ("19 digits 6011000000000000001", ["6011000000000000001"], ["****0001"]),
    ],
)
def test_redact_removes_secrets(text: str, gone: list[str], kept: list[str]) -> None:
    out = redact(text)
    for fragment in gone:
        assert fragment not in out, out
    for fragment in kept:
        assert fragment in out, out


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 total",  # 13 digits, fails Luhn
        "payment id 4242424242424241",  # 16 digits, fails Luhn
        "amount 1999 USD, 12 items",
        "pay_3k2JdYy, ord_abc, evt_sbx_9",
    ],
)
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424241")


def _capture(json_lines: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure("INFO", json_lines=json_lines, stream=stream)
    logger = logging.getLogger("app.test_redaction")
    logger.setLevel(logging.INFO)
    return logger, stream


def test_filter_scrubs_message_args_extras_and_tracebacks() -> None:
    logger, stream = _capture(json_lines=True)
    try:
        raise ValueError("boom with sk_live_SECRETSECRET")
    except ValueError:
        logger.exception(
            "charge for %s with %s",
            "bob@example.org",
            "4242424242424242",
            extra={
                "headers": {"Authorization": "Bearer abc.def", "Stripe-Signature": "t=1,v1=ff"},
                "note": "whsec_leak",
                "gateway": "stripe",
            },
        )
    line = stream.getvalue().strip().splitlines()[-1]
    record = json.loads(line)
    assert record["message"] == "charge for b***@example.org with [CARD ****4242]"
    assert record["headers"] == {"Authorization": "[REDACTED]", "Stripe-Signature": "[REDACTED]"}
    assert record["note"] == "whsec_[REDACTED]"
    assert record["gateway"] == "stripe"
    assert "SECRETSECRET" not in line and "sk_live_[REDACTED]" in record["exc_info"]
    for secret in ("bob@", "abc.def", "4242424242424242"):
        assert secret not in line


def test_filter_is_reusable_on_any_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("app.test_redaction.other")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("key=%s", "sk_test_abc123")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().strip() == "key=sk_test_[REDACTED]"


def test_clean_records_take_a_short_cut_to_the_same_json_line() -> None:
    fields = {"status": 200, "route": "/products/<sku>", "duration_ms": 1.25}
    clean = clean_record(
        "app.access", logging.INFO, "GET /products/<sku> 200", "rid-123456", fields
    )
    plain = logging.LogRecord(
        "app.access", logging.INFO, __file__, 0, "GET /products/<sku> 200", None, None
    )
    plain.created, plain.msecs = clean.created, clean.msecs
    plain.request_id = "rid-123456"
    plain.__dict__.update(fields)
    formatter = json_formatter()
    line = formatter.format(clean)
    assert line == formatter.format(plain)
    assert list(json.loads(line)) == [
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "status",
        "route",
        "duration_ms",
    ]


def test_a_clean_record_with_a_traceback_is_still_scrubbed() -> None:
    logger, stream = _capture(json_lines=True)
    try:
        raise ValueError("boom with sk_live_SECRETSECRET")
    except ValueError:
        import sys

        record = clean_record(logger.name, logging.ERROR, "failed", "-", {"route": "/x"})
        record.exc_info = sys.exc_info()
        logger.handle(record)
    line = stream.getvalue().strip().splitlines()[-1]
    assert "SECRETSECRET" not in line and "sk_live_[REDACTED]" in json.loads(line)["exc_info"]
