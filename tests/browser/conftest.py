"""Playwright fixtures: Debian's Chromium at /usr/bin/chromium, headless.

One browser per session, a new context (fresh cookies and storage) per test. Every test in
this folder is marked `browser`. When a test fails, a screenshot of its page is saved to
test-results/<test name>.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = ROOT / "test-results"

CHROMIUM = "/usr/bin/chromium"
# The network here reaches nothing but package registries: without the background-
# networking flags Chromium keeps opening connections that are refused. --no-sandbox because
# CI runs as root; --disable-dev-shm-usage because /dev/shm can be small in containers.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
]
# Generous but bounded: a hung page must fail the test, not CI's whole time budget.
DEFAULT_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items; mark only the ones in this folder.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so the page fixture knows whether the test failed.
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, shared by the session."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does). "
            "Never `playwright install`: it cannot download browsers here."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    """A fresh browser context; its base_url is the live server's when the test uses one,
    so `page.goto("/")` works."""
    options: dict[str, Any] = {}
    if "live_server" in request.fixturenames:
        options["base_url"] = request.getfixturevalue("live_server")
    ctx = browser.new_context(**options)
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, context: Any) -> Iterator[Any]:
    """A new page in this test's context; screenshot to test-results/ if the test fails."""
    from playwright.sync_api import Error as PlaywrightError

    pg = context.new_page()
    yield pg
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed and not pg.is_closed():
        RESULTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
        try:
            pg.screenshot(path=str(RESULTS / f"{name}.png"), full_page=True)
        except PlaywrightError as exc:  # a crashed page must not hide the test's own failure
            print(f"could not save a screenshot for {request.node.nodeid}: {exc}")
