"""In a real browser, the CSP blocks nothing our pages need (zero violations, htmx works)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-component-update",
]

# Runs before any page script (Playwright injects it outside the page's CSP).
COLLECT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile);
});
"""


def in_browser(scenario: Callable[[Any], None]) -> None:
    """Run `scenario(browser)` with its own headless Chromium, in a thread of its own.

    Playwright's sync API refuses to start while another sync instance runs in the same
    thread (the shared session browser of tests/browser); a separate thread has its own
    event loop, so these tests work in any run order.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (Debian's chromium package)")
    errors: list[BaseException] = []

    def run() -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                try:
                    scenario(browser)
                finally:
                    browser.close()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test's thread)
            errors.append(exc)

    thread = threading.Thread(target=run, name="security-browser")
    thread.start()
    thread.join(timeout=90)
    assert not thread.is_alive(), "the browser scenario hung"
    if errors:
        raise errors[0]


def test_storefront_checkout_sandbox_and_merchant_pages_have_no_csp_violations(
    live_app: tuple[Any, str],
) -> None:
    from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD

    _app, base = live_app
    console: list[str] = []
    visited: list[tuple[str, list[str]]] = []
    in_browser(
        lambda browser: _customer_and_merchant(
            browser, base, console, visited, OWNER_EMAIL, OWNER_PASSWORD
        )
    )
    violations = [(url, v) for url, v in visited if v]
    csp_console = [
        line
        for line in console
        if "Content Security Policy" in line or "Content-Security-Policy" in line
    ]
    assert not violations, violations
    assert not csp_console, csp_console
    assert not [line for line in console if line.startswith("pageerror")], console
    assert len(visited) == 7


def _customer_and_merchant(
    chromium: Any,
    base: str,
    console: list[str],
    visited: list[tuple[str, list[str]]],
    email: str,
    password: str,
) -> None:
    context = chromium.new_context(base_url=base)
    context.set_default_timeout(15_000)
    context.add_init_script(COLLECT)
    page = context.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

    def check() -> None:
        visited.append((page.url, page.evaluate("window.__cspViolations")))

    try:
        page.goto("/")
        check()
        page.get_by_role("link", name="Kassa T-shirt").click()
        page.wait_for_load_state()
        check()
        page.get_by_label("Email").fill("browser.buyer@example.com")
        page.get_by_label("Full name").fill("Browser Buyer")
        page.get_by_role("button", name="Continue to payment").click()
        page.wait_for_url(re.compile(r".*/sandbox/pay/.*"))
        check()
        page.get_by_label(re.compile("3-D Secure challenge, then success")).check()
        page.get_by_role("button", name=re.compile("^Pay ")).click()
        page.wait_for_url(re.compile(r".*/challenge.*"))
        check()
        page.get_by_role("button", name="Complete authentication").click()
        page.wait_for_url(re.compile(r".*/checkout/return/.*"))
        # htmx polls the status widget until the webhook lands: it must run under the CSP.
        page.locator('.status-headline[data-status="paid"]').wait_for()
        check()

        page.goto("/auth/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        page.goto("/auth/2fa/setup")
        page.locator("figure.qr-code svg").wait_for()
        check()
        page.goto("/no-such-page")
        check()
    finally:
        context.close()


def test_the_browser_check_does_see_violations(live_app: tuple[Any, str]) -> None:
    """Control: unsigned inline code is blocked and reported, signed inline code runs."""
    app, base = live_app

    @app.get("/_test/inline")
    def inline() -> str:
        """A page that breaks the rules on purpose."""
        from app.security import csp_nonce

        return (
            f'<!doctype html><script nonce="{csp_nonce()}">window.signed = 1;</script>'
            "<script>window.unsigned = 1;</script><style>p { color: red }</style>"
            '<p style="color: blue">x</p>'
        )

    seen: dict[str, Any] = {}

    def scenario(chromium: Any) -> None:
        context = chromium.new_context(base_url=base)
        context.add_init_script(COLLECT)
        page = context.new_page()
        try:
            page.goto("/_test/inline")
            page.wait_for_timeout(200)
            seen["violations"] = page.evaluate("window.__cspViolations")
            seen["signed"] = page.evaluate("window.signed")
            seen["unsigned"] = page.evaluate("window.unsigned")
        finally:
            context.close()

    in_browser(scenario)
    violations = seen["violations"]
    assert seen["signed"] == 1 and seen["unsigned"] is None
    directives = {v.split()[0] for v in violations}
    assert {"script-src-elem", "style-src-elem", "style-src-attr"} <= directives, violations
