"""The dashboard's tables on a phone (390 px): rows stack into blocks, each cell under its
column's name, so neither the page nor any table scrolls sideways; the same pages in Hindi
render their Devanagari text with a real font. Screenshots go to test-results/pages/."""

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
})"""


def _sign_in(page: Page) -> None:
    page.goto("/auth/login")
    page.get_by_label("Email").fill("merchant@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
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
    ]


@pytest.mark.parametrize("lang", ["en", "hi"])
def test_no_dashboard_table_scrolls_sideways_on_a_phone(
    app: Any, live_server: str, browser: Browser, lang: str
) -> None:
    ids = _world(app)
    context = browser.new_context(
        base_url=live_server,
        viewport={"width": PHONE, "height": 844},
        locale={"en": "en-US", "hi": "hi-IN"}[lang],
        extra_http_headers={"Accept-Language": {"en": "en-US,en", "hi": "hi-IN,hi"}[lang]},
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
        if lang == "hi":
            page.goto(f"/dashboard/payments/{ids['paid']}")
            assert page.locator("html").get_attribute("lang") == "hi"
            assert "भुगतान" in page.locator("h1").inner_text()
            # The Devanagari is drawn by an installed font (scripts/ensure-chromium.sh).
            assert page.evaluate("document.fonts.check('16px sans-serif', 'भुगतान')")
    finally:
        context.close()
    assert not problems, "\n".join(problems)
