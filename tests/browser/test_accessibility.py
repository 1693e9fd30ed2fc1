"""Every page, customer and merchant, at 1280 and 390 px wide (and the customer pages in
dark mode): axe-core finds no serious or critical violation, nothing is wider than the
screen, and a screenshot of each is kept in test-results/pages/ to look at."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import Payment, User

HERE = Path(__file__).resolve().parent
AXE = (HERE / "vendor" / "axe.min.js").read_text()
SHOTS = HERE.parents[1] / "test-results" / "pages"
PASSWORD = "correct horse battery staple"
WIDTHS = (1280, 390)


def _world(app: Any) -> dict[str, str]:
    """A paid order, a failed one, a payment link and a merchant."""
    from app.payments.audit import CUSTOMER, Actor
    from app.payments.checkout import create_checkout
    from app.payments.links import NewLink, create_link
    from app.payments.orders import ItemRequest

    ids: dict[str, str] = {}
    with app.app_context():
        seed_demo_data()
        user = User(
            email="merchant@example.com",
            role="owner",
            password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
            session_token=secrets.token_hex(16),
        )
        db.session.add(user)
        db.session.commit()
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        for key, sku, scenario in (
            ("paid", "tee-usd", "succeed"),
            ("failed", "mug-eur", "decline"),
        ):
            with app.test_request_context():
                payment = create_checkout(
                    [ItemRequest(sku, 2)], f"{key}@example.com", "Ann Lee", "sandbox", CUSTOMER
                )
            processor.complete(payment.gateway_reference, scenario)
            ids[key] = payment.public_id
            ids[f"{key}_order"] = payment.order.public_id
            ids[f"{key}_session"] = payment.gateway_reference or ""
        with app.test_request_context():
            open_payment = create_checkout(
                [ItemRequest("print-usd", 1)], "open@example.com", "Open", "sandbox", CUSTOMER
            )
            ids["open_session"] = open_payment.gateway_reference or ""
            link = create_link(
                NewLink(description="Deposit for order 1042", amount=5000, currency="USD"),
                Actor("user", str(user.id)),
            )
            ids["link"] = link.public_id
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            db.session.rollback()
            done = set(db.session.execute(select(Payment.status)).scalars())
            if {"succeeded", "failed"} <= done:
                break
            time.sleep(0.05)
    return ids


def _check(page: Page, name: str, width: int, scheme: str = "light") -> list[str]:
    """Screenshot, width check and axe run of the page as it is now."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
    problems = []
    scroll = page.evaluate("document.documentElement.scrollWidth")
    if scroll > width:
        problems.append(f"{name} @{width}: page is {scroll}px wide")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE)  # through the DevTools protocol: the page's CSP doesn't apply
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    for v in result:
        if v["impact"] in ("serious", "critical"):
            problems.append(f"{name} @{width} {scheme}: {v['id']} ({v['help']}) at {v['nodes']}")
    return problems


def _customer_pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("storefront", "/"),
        ("product", "/products/tee-usd"),
        ("product-limited", "/products/print-usd"),
        ("cart-empty", "/cart"),
        ("order-paid", f"/orders/{ids['paid_order']}"),
        ("order-failed", f"/orders/{ids['failed_order']}"),
        ("return-failed", f"/checkout/return/{ids['failed']}"),
        ("receipt", f"/orders/{ids['paid_order']}/receipt"),
        ("sandbox-open", f"/sandbox/pay/{ids['open_session']}"),
        ("sandbox-done", f"/sandbox/pay/{ids['paid_session']}"),
        ("payment-link", f"/pay/{ids['link']}"),
        ("not-found", "/no/such/page"),
        ("api-docs", "/api/docs"),
        ("sign-in", "/auth/login"),
        ("forgot-password", "/auth/forgot"),
    ]


def _merchant_pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("dash-overview", "/dashboard/"),
        ("dash-payments", "/dashboard/payments"),
        ("dash-payment", f"/dashboard/payments/{ids['paid']}"),
        ("dash-payment-failed", f"/dashboard/payments/{ids['failed']}"),
        ("dash-links", "/dashboard/links"),
        ("dash-webhooks", "/dashboard/webhooks"),
        ("dash-api-keys", "/dashboard/api-keys"),
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_is_accessible_at_both_widths(
    app: Any, live_server: str, browser: Browser, scheme: str
) -> None:
    ids = _world(app)
    problems: list[str] = []
    for width in WIDTHS:
        context = browser.new_context(
            base_url=live_server, viewport={"width": width, "height": 900}, color_scheme=scheme
        )
        page = context.new_page()
        try:
            for name, path in _customer_pages(ids):
                page.goto(path)
                problems += _check(page, name, width, scheme)
            # A cart with two lines, and a form sent with mistakes (error summary).
            page.goto("/products/tee-usd")
            page.get_by_role("button", name="Add to cart").click()
            page.goto("/products/print-usd")
            page.get_by_role("button", name="Add to cart").click()
            problems += _check(page, "cart", width, scheme)
            page.get_by_role("button", name="Continue to payment").click()
            problems += _check(page, "cart-errors", width, scheme)
            page.goto("/auth/login")
            page.get_by_label("Email").fill("merchant@example.com")
            page.get_by_label("Password").fill("not the password at all")
            page.get_by_role("button", name="Sign in").click()
            problems += _check(page, "sign-in-wrong", width, scheme)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/dashboard/"))
            for name, path in _merchant_pages(ids):
                page.goto(path)
                problems += _check(page, name, width, scheme)
        finally:
            context.close()
    assert not problems, "\n".join(problems)
