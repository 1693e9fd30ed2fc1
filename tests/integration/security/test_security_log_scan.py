"""Nothing secret or personal reaches the logs during a whole purchase, refund and sign-in.

The app runs behind a real HTTP server (werkzeug's access log included), the sandbox
delivers its signed webhooks over HTTP, and every logger is captured at DEBUG. Then
everything logged (messages, extra fields, tracebacks) is scanned.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD, SANDBOX_SECRET, SECRET_KEY, csrf_from

from app.extensions import db
from app.models import Order, Payment, Refund

CUSTOMER_EMAIL = "jane.customer+vip@example.com"
CARD = "4242424242424242"

# LogRecord attributes that are bookkeeping, not content (thread ids can look like cards).
_RECORD_FIELDS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message"}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_like(text: str) -> list[str]:
    found = []
    # Delimited by anything but letters and digits: a run of digits inside a hex id or a
    # random token is not a card number (and would make the scan flaky).
    for match in re.finditer(r"(?<![A-Za-z0-9])(?:\d[ -]?){12,18}\d(?![A-Za-z0-9])", text):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(match.group(0))
    return found


def test_luhn_scanner_finds_cards() -> None:
    assert card_like(f"card {CARD} and 4000 0000 0000 0002 and 5555-5555-5555-4444")
    assert not card_like("order 1763916450 took 4242424242424241 ms")
    assert card_like('{"card": "4242424242424242"} pan=4242424242424242;')
    assert not card_like("request_id=a0102268137373f 0102268137373ab")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(
            f"{record.name} {record.levelname} {text} {json.dumps(extras, default=str)}"
        )


@pytest.fixture
def captured() -> Iterator[Capture]:
    root = logging.getLogger()
    handler = Capture()
    old_level = root.level
    loggers = [logging.getLogger(n) for n in ("app", "werkzeug", "urllib3")]
    old = [lg.level for lg in loggers]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for lg in loggers[1:]:
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)


def _wait_for(app: Any, check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with app.app_context():
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_full_flow_logs_no_secrets_cards_emails_or_credentials(
    live_app: tuple[Any, str], captured: Capture
) -> None:
    app, base = live_app
    assert logging.getLogger("app").isEnabledFor(logging.DEBUG)
    browser = requests.Session()

    # A customer buys two T-shirts through the sandbox's hosted page.
    page = browser.get(f"{base}/products/tee-usd")
    response = browser.post(
        f"{base}/products/tee-usd",
        allow_redirects=False,
        data={
            "email": CUSTOMER_EMAIL,
            "name": "Jane Customer",
            "quantity": "2",
            "gateway": "sandbox",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert response.status_code == 303
    hosted = browser.get(response.headers["Location"])
    assert hosted.status_code == 200
    done = browser.post(
        hosted.url, data={"scenario": "succeed", "csrf_token": csrf_from(hosted.text)}
    )
    assert done.status_code == 200
    payment_id = done.url.split("/checkout/return/")[1].split("?")[0]
    _wait_for(app, lambda: db.session.query(Order).one().status == "paid", "the paid order")
    browser.get(f"{base}/orders/{db_order_id(app)}/status", headers={"HX-Request": "true"})

    # The merchant signs in (one typo first), looks around, refunds, signs out.
    merchant = requests.Session()
    login_page = merchant.get(f"{base}/auth/login")
    merchant.post(
        f"{base}/auth/login",
        data={
            "email": OWNER_EMAIL,
            "password": "typo " + OWNER_PASSWORD,
            "csrf_token": csrf_from(login_page.text),
        },
    )
    login_page = merchant.get(f"{base}/auth/login")
    signed_in = merchant.post(
        f"{base}/auth/login",
        allow_redirects=False,
        data={
            "email": OWNER_EMAIL,
            "password": OWNER_PASSWORD,
            "csrf_token": csrf_from(login_page.text),
        },
    )
    assert signed_in.status_code == 303
    setup = merchant.get(f"{base}/auth/2fa/setup")
    assert setup.status_code == 200
    with app.app_context():
        from app.models import User
        from app.payments.audit import Actor
        from app.payments.refunds import create_refund

        user = db.session.query(User).filter_by(email=OWNER_EMAIL).one()
        create_refund(payment_id, None, "requested_by_customer", Actor("user", str(user.id)))
    _wait_for(
        app, lambda: db.session.query(Refund).one().status == "succeeded", "the refund webhook"
    )
    _wait_for(app, lambda: db.session.query(Payment).one().status == "refunded", "refunded")
    merchant.post(f"{base}/auth/logout", data={"csrf_token": csrf_from(setup.text)})

    # Someone forges a webhook carrying credentials and a card number; another probes
    # the API with a live key.
    forged = requests.post(
        f"{base}/webhooks/sandbox",
        data=json.dumps({"id": "evt_forged", "card": CARD, "email": CUSTOMER_EMAIL}),
        headers={
            "Authorization": "Bearer sk_live_forgedKey123",
            "Kassa-Signature": "t=1,v1=" + "a" * 64,
            "Content-Type": "application/json",
        },
    )
    assert forged.status_code == 400
    requests.get(f"{base}/api/v1/payments", headers={"Authorization": "Bearer sk_live_probeKey456"})
    requests.post(
        f"{base}/csp-report",
        json={
            "csp-report": {
                "document-uri": f"{base}/checkout/return/x?email={CUSTOMER_EMAIL}&card={CARD}",
                "blocked-uri": "inline",
                "violated-directive": "script-src",
            }
        },
    )
    time.sleep(0.3)  # let the last webhook retries and access-log lines land

    logged = "\n".join(captured.lines)
    print(len(captured.lines))
    print(logged[-3000:])
    assert "POST /webhooks/sandbox" in logged, "the access log was not captured"
    assert "csp violation" in logged
    gateway = app.extensions["kassa_gateways"]["sandbox"].processor
    problems = []
    if card_like(logged):
        problems.append(f"card-like numbers: {card_like(logged)[:3]}")
    for needle, what in (
        (SECRET_KEY, "SECRET_KEY"),
        (SANDBOX_SECRET, "webhook secret"),
        (gateway.webhook_secret, "webhook secret"),
        ("sk_live_", "sk_live_"),
        ("whsec_", "whsec_"),
        (OWNER_PASSWORD, "a password"),
        ("Authorization", "Authorization header"),
        ("Bearer ", "bearer token"),
        ("kassa_session=", "a session cookie"),
        ("v1=" + "a" * 64, "signature"),
    ):
        if needle in logged:
            problems.append(what)
    emails = re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", logged)
    if emails:
        problems.append(f"email addresses: {sorted(set(emails))[:3]}")
    assert not problems, "found in the logs: " + "; ".join(problems)


def db_order_id(app: Any) -> str:
    with app.app_context():
        return str(db.session.query(Order).one().public_id)
