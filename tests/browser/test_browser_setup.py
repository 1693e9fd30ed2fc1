"""Headless Debian Chromium loads pages from the live server and runs the vendored htmx."""

from __future__ import annotations


def test_chromium_runs_vendored_htmx_from_the_live_server(page, live_server, tmp_path):
    response = page.goto("/static/js/htmx.min.js")  # relative: the context's base_url
    assert response is not None and response.ok
    assert page.url.startswith(live_server)
    page.add_script_tag(url="/static/js/htmx.min.js")
    assert page.evaluate("window.htmx && window.htmx.version") == "2.0.11"
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
