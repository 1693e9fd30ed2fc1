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
        ids.update(_more_world(app, user))
    return ids


def _settled(check: Any) -> Any:
    """Wait (bounded) for the sandbox's webhooks to land: check() returns a value or None."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        db.session.rollback()
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("the sandbox's webhooks did not land in time")


def _more_world(app: Any, user: User) -> dict[str, str]:
    """A customer with a saved card, a plan and an active subscription, a webhook endpoint
    with a delivery, a password-reset link and links the customer gets by email."""
    from app.auth import reset
    from app.models import Customer, SavedPaymentMethod, Subscription
    from app.payments import charges, customers, subscriptions
    from app.payments.audit import CUSTOMER, SYSTEM, Actor
    from app.payments.checkout import create_checkout
    from app.payments.orders import ItemRequest
    from app.payments.outgoing.endpoints import create_endpoint, send_test

    ids: dict[str, str] = {}
    processor = app.extensions["kassa_gateways"]["sandbox"].processor
    with app.test_request_context():
        saved = create_checkout(
            [ItemRequest("tee-usd", 1)],
            "ana.silva.with.a.long.address@example.com",
            "Ana Silva",
            "sandbox",
            CUSTOMER,
            save_payment_method=True,
        )
    processor.complete(saved.gateway_reference, "succeed")
    method = _settled(lambda: db.session.execute(select(SavedPaymentMethod)).scalars().first())
    customer = db.session.get(Customer, method.customer_id)
    ids["customer"] = customer.public_id
    ids["method"] = method.public_id
    paid = db.session.execute(select(Payment).filter_by(public_id=saved.public_id)).scalar_one()
    with app.test_request_context():
        ids["methods_path"] = customers.methods_link(customer).split("://", 1)[-1]
        ids["methods_path"] = "/" + ids["methods_path"].split("/", 1)[1]
        ids["action_path"] = "/" + charges.action_link(paid).split("://", 1)[-1].split("/", 1)[1]
        plan = subscriptions.create_plan(
            sku="coffee-monthly",
            name="Coffee club",
            amount=1200,
            currency="EUR",
            interval="month",
            trial_days=0,
            description="A bag of fresh beans every month.",
            actor=SYSTEM,
        )
        subscriptions.create_plan(
            sku="news-weekly",
            name="Newsletter",
            amount=500,
            currency="USD",
            interval="week",
            trial_days=14,
            actor=SYSTEM,
        )
        ids["plan"] = plan.public_id
        sub = subscriptions.start(
            plan.public_id,
            email="lu@example.com",
            name="Lu Chen",
            gateway_name="sandbox",
            actor=CUSTOMER,
        )
        ids["sub"] = sub.public_id
        ids["sub_token"] = subscriptions.customer_token(sub.public_id)
        sandbox_sub = (sub.checkout_url or "").rstrip("/").rsplit("/", 1)[-1]
    processor.subscribe(sandbox_sub, "succeed")
    _settled(
        lambda: db.session.execute(
            select(Subscription).filter_by(public_id=ids["sub"], status="active")
        ).scalar_one_or_none()
    )
    app.config["OUTGOING_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    with app.test_request_context():
        endpoint, _secret = create_endpoint(
            "http://127.0.0.1:9/kassa/hooks",
            ["order.paid", "refund.succeeded"],
            "Order system",
            Actor("user", str(user.id)),
        )
        ids["endpoint"] = endpoint.public_id
        send_test(endpoint.public_id, Actor("user", str(user.id)))
        ids["reset_path"] = "/auth/reset/" + reset.make_token(user)
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
        ("reset-password", ids["reset_path"]),
        ("plans", "/plans"),
        ("plan", f"/plans/{ids['plan']}"),
        ("subscription", f"/subscriptions/{ids['sub']}?t={ids['sub_token']}"),
        ("saved-methods", ids["methods_path"]),
        ("payment-action", ids["action_path"]),
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
        ("dash-customers", "/dashboard/customers"),
        ("dash-customer", f"/dashboard/customers/{ids['customer']}"),
        ("dash-charge", f"/dashboard/customers/{ids['customer']}/methods/{ids['method']}/charge"),
        ("dash-subscriptions", "/dashboard/subscriptions"),
        ("dash-subscription", f"/dashboard/subscriptions/{ids['sub']}"),
        ("dash-endpoints", "/dashboard/endpoints"),
        ("dash-endpoint", f"/dashboard/endpoints/{ids['endpoint']}"),
        ("mfa-setup", "/auth/2fa/setup"),
    ]


def _merchant_steps(page: Page, ids: dict[str, str], width: int, scheme: str) -> list[str]:
    """Pages reached by a step: a charge's confirmation, a delivery, a refused plan form."""
    problems = []
    page.goto(f"/dashboard/customers/{ids['customer']}/methods/{ids['method']}/charge")
    page.get_by_role("button", name="Review charge").click()
    problems += _check(page, "dash-charge-errors", width, scheme)
    page.get_by_label("What the customer is charged for").fill("Second shirt")
    page.get_by_label("Amount").fill("12.50")
    page.get_by_role("button", name="Review charge").click()
    page.locator("#charge-confirmation").wait_for()
    problems += _check(page, "dash-charge-confirm", width, scheme)
    page.goto(f"/dashboard/endpoints/{ids['endpoint']}")
    page.locator("table.deliveries tbody a").first.click()
    page.wait_for_url(re.compile(r"/deliveries/"))
    problems += _check(page, "dash-delivery", width, scheme)
    page.goto(f"/plans/{ids['plan']}")
    page.get_by_role("button", name="Subscribe").click()
    problems += _check(page, "plan-errors", width, scheme)
    page.goto("/auth/forgot")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_role("button", name="Send").click()
    problems += _check(page, "forgot-sent", width, scheme)
    return problems


def _two_factor_steps(app: Any, page: Page, width: int, scheme: str) -> list[str]:
    """Another owner turns two-factor sign-in on, keeps the codes, signs in again."""
    import pyotp

    email = f"second-{width}-{scheme}@example.com"
    with app.app_context():
        db.session.add(
            User(
                email=email,
                role="owner",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                session_token=secrets.token_hex(16),
            )
        )
        db.session.commit()
    page.context.clear_cookies()
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/dashboard/"))
    page.goto("/auth/2fa/setup")
    secret = page.locator(".totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code").fill("000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-factor sign in").click()
    problems = _check(page, "mfa-setup-wrong", width, scheme)
    page.get_by_label("Code").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor sign in").click()
    page.locator(".recovery-codes").wait_for()
    problems += _check(page, "mfa-recovery-codes", width, scheme)
    page.goto("/auth/2fa/setup")
    problems += _check(page, "mfa-manage", width, scheme)
    page.context.clear_cookies()
    page.goto("/auth/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/auth/2fa"))
    problems += _check(page, "mfa-challenge", width, scheme)
    page.get_by_label("Code").fill("123")
    page.get_by_role("button", name="Verify").click()
    problems += _check(page, "mfa-challenge-wrong", width, scheme)
    return problems


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
            problems += _merchant_steps(page, ids, width, scheme)
            problems += _two_factor_steps(app, page, width, scheme)
        finally:
            context.close()
    assert not problems, "\n".join(problems)
