"""The dashboard's tables on a phone (390 px): rows stack into blocks, each cell under its
column's name, so neither the page nor any table scrolls sideways, and no heading, id or
button sticks out past the screen's edge (customers, subscriptions, endpoints and the
customer's plan, subscription and saved-method pages included); the same pages in Hindi
render their Devanagari text with a real font, and German (long words) fits too. Screenshots go to test-results/pages/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_accessibility import PASSWORD, _world

SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "pages"
PHONE = 390

# Every table-wrap wider inside than on screen, and the page's own width.
SIDEWAYS = """() => ({
  page: document.documentElement.scrollWidth,
  tables: [...document.querySelectorAll('.table-wrap')]
    .filter(w => w.scrollWidth > w.clientWidth + 1)
    .map(w => (w.querySelector('table') || w).className || w.parentElement.id || 'table'),
  // Headings, ids and buttons that stick out past the right edge (cut off or scrolling).
  wide: [...document.querySelectorAll('main h1, main h2, main code, main .button, main button')]
    .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
    .map(e => e.tagName.toLowerCase() + ': ' + e.textContent.trim().slice(0, 40)),
})"""


def _sign_in(page: Page) -> None:
    # By the fields' ids: the form's words follow the browser's language.
    page.goto("/auth/login")
    page.locator("#email").fill("merchant@example.com")
    page.locator("#password").fill(PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/dashboard/"))


def _pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("overview", "/dashboard/"),
        ("payments", "/dashboard/payments"),
        ("payment", f"/dashboard/payments/{ids['paid']}"),
        ("links", "/dashboard/links"),
        ("webhooks", "/dashboard/webhooks"),
        ("api-keys", "/dashboard/api-keys"),
        ("endpoints", "/dashboard/endpoints"),
        ("endpoint", f"/dashboard/endpoints/{ids['endpoint']}"),
        ("customers", "/dashboard/customers"),
        ("customer", f"/dashboard/customers/{ids['customer']}"),
        ("charge", f"/dashboard/customers/{ids['customer']}/methods/{ids['method']}/charge"),
        ("subscriptions", "/dashboard/subscriptions"),
        ("subscription", f"/dashboard/subscriptions/{ids['sub']}"),
        # The customer's own pages with tables or lists.
        ("plans", "/plans"),
        ("plan", f"/plans/{ids['plan']}"),
        ("customer-subscription", f"/subscriptions/{ids['sub']}?t={ids['sub_token']}"),
        ("saved-methods", ids["methods_path"]),
    ]


@pytest.mark.parametrize("lang", ["en", "hi", "de"])
def test_no_dashboard_table_scrolls_sideways_on_a_phone(
    app: Any, live_server: str, browser: Browser, lang: str
) -> None:
    ids = _world(app)
    context = browser.new_context(
        base_url=live_server,
        viewport={"width": PHONE, "height": 844},
        locale={"en": "en-US", "hi": "hi-IN", "de": "de-DE"}[lang],
        extra_http_headers={
            "Accept-Language": {"en": "en-US,en", "hi": "hi-IN,hi", "de": "de-DE,de"}[lang]
        },
    )
    page = context.new_page()
    problems = []
    try:
        _sign_in(page)
        for name, path in _pages(ids):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"phone-{name}-{lang}.png"), full_page=True)
            found = page.evaluate(SIDEWAYS)
            if found["page"] > PHONE:
                problems.append(f"{name}: page is {found['page']}px wide")
            if found["tables"]:
                problems.append(f"{name}: tables scroll sideways: {found['tables']}")
            if found["wide"]:
                problems.append(f"{name}: wider than the screen: {found['wide']}")
        if lang == "hi":
            page.goto(f"/dashboard/payments/{ids['paid']}")
            assert page.locator("html").get_attribute("lang") == "hi"
            assert "भुगतान" in page.locator("h1").inner_text()
            # The Devanagari is drawn by an installed font (scripts/ensure-chromium.sh).
            assert page.evaluate("document.fonts.check('16px sans-serif', 'भुगतान')")
    finally:
        context.close()
    assert not problems, "\n".join(problems)
