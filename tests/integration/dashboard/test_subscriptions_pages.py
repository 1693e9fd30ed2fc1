"""The dashboard's subscriptions: list with filters, one subscription's page (entitlement,
paid periods, timeline), the manager's cancel / resume buttons, and the overview's
active subscribers, MRR per currency and churn."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from app.payments import subscriptions
from app.payments.audit import CUSTOMER, SYSTEM
from tests.integration.dashboard.conftest import csrf_token, deliver_webhooks


def started(app: Flask, client: FlaskClient, email: str, amount: int, interval: str) -> str:
    with app.test_request_context():
        plan = subscriptions.create_plan(
            sku=f"plan-{email}",
            name=f"Plan {interval}",
            amount=amount,
            currency="USD",
            interval=interval,
            actor=SYSTEM,
        )
        sub = subscriptions.start(
            plan.public_id, email=email, name="N", gateway_name="sandbox", actor=CUSTOMER
        )
        processor = app.extensions["kassa_gateways"]["sandbox"].processor
        processor.subscribe(sub.gateway_subscription_id, "succeed")
        public_id = sub.public_id
    deliver_webhooks(app, client)
    return public_id


def test_list_page_buttons_and_overview(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    owner = signed_in("owner")
    monthly = started(dash_app, owner, "m@example.com", 1000, "month")
    started(dash_app, owner, "y@example.com", 12000, "year")

    listed = owner.get("/dashboard/subscriptions").get_data(as_text=True)
    assert monthly in listed and "y@example.com" in listed
    filtered = owner.get("/dashboard/subscriptions?email=m@example.com").get_data(as_text=True)
    assert monthly in filtered and "y@example.com" not in filtered
    assert "No subscriptions match" in owner.get(
        "/dashboard/subscriptions?status=canceled"
    ).get_data(as_text=True)

    page = owner.get(f"/dashboard/subscriptions/{monthly}").get_data(as_text=True)
    assert "subscription.status_changed" in page and "subscription.period_paid" in page
    assert "Cancel at period end" in page and "sbx_in_" in page

    token = csrf_token(owner, f"/dashboard/subscriptions/{monthly}")
    answer = owner.post(
        f"/dashboard/subscriptions/{monthly}/cancel_at_period_end", data={"csrf_token": token}
    )
    assert answer.status_code == 303
    page = owner.get(f"/dashboard/subscriptions/{monthly}").get_data(as_text=True)
    assert "Resume" in page and "then ends" in page
    assert (
        owner.post(f"/dashboard/subscriptions/{monthly}/cancel_now", data={}).status_code == 400
    )  # no CSRF token

    overview = owner.get("/dashboard/").get_data(as_text=True)
    assert "Active subscribers" in overview
    # MRR: $10.00 + $120.00 / 12 = $20.00 a month.
    assert "$20.00" in overview

    token = csrf_token(owner, f"/dashboard/subscriptions/{monthly}")
    owner.post(f"/dashboard/subscriptions/{monthly}/cancel_now", data={"csrf_token": token})
    deliver_webhooks(dash_app, owner)
    overview = owner.get("/dashboard/").get_data(as_text=True)
    assert "$10.00" in overview and "50.0%" in overview  # one of two ended


def test_a_viewer_cannot_cancel(dash_app: Flask, signed_in: Callable[[str], FlaskClient]) -> None:
    owner = signed_in("owner")
    public_id = started(dash_app, owner, "v@example.com", 1000, "month")
    viewer = signed_in("viewer")
    page = viewer.get(f"/dashboard/subscriptions/{public_id}").get_data(as_text=True)
    assert "Cancel now" not in page
    token = csrf_token(viewer, f"/dashboard/subscriptions/{public_id}")
    answer = viewer.post(
        f"/dashboard/subscriptions/{public_id}/cancel_now", data={"csrf_token": token}
    )
    assert answer.status_code == 403


def test_plan_change_asks_first_needs_csrf_and_changes_once(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    owner = signed_in("owner")
    public_id = started(dash_app, owner, "p@example.com", 1000, "month")
    with dash_app.test_request_context():
        bigger = subscriptions.create_plan(
            sku="plan-bigger",
            name="Bigger",
            amount=2500,
            currency="USD",
            interval="month",
            actor=SYSTEM,
        ).public_id
        subscriptions.create_plan(
            sku="plan-euro", name="Euro", amount=900, currency="EUR", interval="month", actor=SYSTEM
        )
        current = subscriptions.get_subscription(public_id).plan.public_id
    path = f"/dashboard/subscriptions/{public_id}"
    page = owner.get(path).get_data(as_text=True)
    assert "Review plan change" in page and bigger in page
    assert "Euro" not in page  # another currency is never offered
    form = {"plan": bigger, "from_plan": current}

    assert owner.post(f"{path}/change-plan", data=form).status_code == 400  # no CSRF token
    token = csrf_token(owner, path)
    asked = owner.post(f"{path}/change-plan", data={**form, "csrf_token": token})
    assert asked.status_code == 200
    text = asked.get_data(as_text=True)
    assert "Confirm plan change" in text and "$25.00" in text
    assert subscriptions_plan(dash_app, public_id) == current  # nothing changed yet

    confirmed = {**form, "confirm": "yes", "csrf_token": token}
    done = owner.post(f"{path}/change-plan", data=confirmed)
    assert done.status_code == 303
    assert subscriptions_plan(dash_app, public_id) == bigger
    assert "Plan changed to Bigger" in owner.get(path).get_data(as_text=True)
    # The same confirmed form again (double click): answered as done, not sent again.
    again = owner.post(f"{path}/change-plan", data=confirmed)
    assert again.status_code == 303
    assert "The subscription is on Bigger" in owner.get(path).get_data(as_text=True)
    with dash_app.app_context():
        from sqlalchemy import func, select

        from app.extensions import db
        from app.models import AuditEntry

        requested = db.session.execute(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "subscription.plan_change_requested")
        ).scalar_one()
    assert requested == 1
    viewer = signed_in("viewer")
    assert "Review plan change" not in viewer.get(path).get_data(as_text=True)
    token = csrf_token(viewer, path)
    denied = viewer.post(f"{path}/change-plan", data={**confirmed, "csrf_token": token})
    assert denied.status_code == 403


def subscriptions_plan(app: Flask, public_id: str) -> str:
    with app.app_context():
        return subscriptions.get_subscription(public_id).plan.public_id
