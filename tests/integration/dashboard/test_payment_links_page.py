"""Payment links in the dashboard: create, see the payments, turn off; expiry."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app.extensions import db
from app.models import PaymentLink
from tests.integration.dashboard.conftest import csrf_token


def test_merchant_creates_a_link_the_customer_pays_and_it_is_listed(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    assert "Payment links" in client.get("/dashboard/").get_data(as_text=True)  # in the nav
    token = csrf_token(client, "/dashboard/links")
    bad = client.post("/dashboard/links", data={"csrf_token": token, "description": "x"})
    assert bad.status_code == 422
    assert "Enter the amount, or choose a product." in bad.get_data(as_text=True)
    made = client.post(
        "/dashboard/links",
        data={
            "csrf_token": token,
            "description": "Balance for the table",
            "amount": "80.00",
            "currency": "usd",
            "quantity": "1",
        },
    )
    assert made.status_code == 201
    url = re.search(r'id="new-link-url">([^<]+)<', made.get_data(as_text=True))
    assert url and "/pay/plink_" in url.group(1)
    path = url.group(1).split("localhost", 1)[-1].split("5000", 1)[-1]

    customer = dash_app.test_client()
    page = customer.get(path).get_data(as_text=True)
    paid = customer.post(
        path,
        data={
            "csrf_token": re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(
                1
            ),  # type: ignore[union-attr]
            "email": "table@example.com",
            "name": "Tab Le",
            "gateway": "sandbox",
        },
    )
    assert paid.status_code == 303
    listing = client.get("/dashboard/links").get_data(as_text=True)
    assert "Balance for the table" in listing and "$80.00" in listing
    assert re.search(r'/dashboard/payments/pay_[^"]+">pay_', listing)
    assert "Used" in listing  # a single-use link once paid


def test_turned_off_and_expired_links_take_no_payment(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    token = csrf_token(client, "/dashboard/links")
    form = {"csrf_token": token, "sku": "tee-usd", "quantity": "1", "description": "A shirt"}
    for _ in range(2):
        assert client.post("/dashboard/links", data={**form, "reusable": "y"}).status_code == 201
    with dash_app.app_context():
        first, second = db.session.query(PaymentLink).order_by(PaymentLink.id).all()
        first_id, second_id = first.public_id, second.public_id
        db.session.execute(
            update(PaymentLink)
            .where(PaymentLink.id == second.id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        db.session.commit()
    off = client.post(f"/dashboard/links/{first_id}/off", data={"csrf_token": token})
    assert off.status_code == 303
    turned_off = dash_app.test_client().get(f"/pay/{first_id}")
    assert turned_off.status_code == 410 and "turned off" in turned_off.get_data(as_text=True)
    expired = dash_app.test_client().get(f"/pay/{second_id}")
    assert expired.status_code == 410 and "expired" in expired.get_data(as_text=True)
    viewer = signed_in("viewer")  # reads, never creates: no form for a viewer
    assert "New payment link" not in viewer.get("/dashboard/links").get_data(as_text=True)
