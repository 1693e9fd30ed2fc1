"""A merchant in Chromium adds a webhook endpoint, reads its secret, sends a test event
and finds it delivered in the endpoint's log, with the request as it was signed."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from werkzeug.security import generate_password_hash

from app.cli import seed_demo_data
from app.extensions import db
from app.models import User
from tests.integration.outgoing.receiver import Receiver

PASSWORD = "correct horse battery staple"
SHOTS = Path(__file__).resolve().parents[2] / "test-results"


def test_merchant_adds_an_endpoint_and_sends_a_test_event(
    app: Any, live_server: str, page: Page
) -> None:
    app.config["OUTGOING_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    with app.app_context():
        seed_demo_data()
        db.session.add(
            User(
                email="merchant@example.com",
                role="owner",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                session_token=secrets.token_hex(16),
            )
        )
        db.session.commit()
    receiver = Receiver()
    try:
        page.goto("/auth/login?next=/dashboard/endpoints")
        page.get_by_label("Email").fill("merchant@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Webhook endpoints")).to_be_visible()
        page.get_by_label("URL").fill("http://10.1.2.3/hooks")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator(".field-error")).to_contain_text("private address")
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_label("order.paid").check()
        page.get_by_label("refund.succeeded").check()
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_role("status").first).to_contain_text("Endpoint added")
        page.get_by_text("Show").click()
        secret = page.get_by_label("Signing secret").input_value()
        assert secret.startswith("whsec_")
        receiver.secrets = [secret]
        page.get_by_role("button", name="Send test event").click()
        row = page.locator("table.deliveries tbody tr").first
        expect(row).to_have_attribute("data-status", "delivered")
        [got] = receiver.wait_for(1)
        assert got.verified_with == [0] and got.payload["type"] == "webhook_endpoint.test"
        SHOTS.mkdir(exist_ok=True)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"endpoint-{width}.png"), full_page=True)
        row.get_by_role("link").click()
        expect(page.get_by_role("heading", name=re.compile("Delivery of"))).to_be_visible()
        expect(page.locator("article.attempt h3").first).to_contain_text("answered 204")
        page.get_by_text(re.compile("^Request to")).click()
        expect(page.locator("article.attempt pre").first).to_contain_text("webhook-signature: v1,")
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"delivery-{width}.png"), full_page=True)
        page.goto("/dashboard/endpoints")
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(SHOTS / f"endpoints-{width}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        receiver.close()
