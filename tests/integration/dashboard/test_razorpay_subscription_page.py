"""The dashboard's subscription page for a Razorpay subscription (the fake over HTTP):
the plan change goes to Razorpay as PATCH /v1/subscriptions/:id after a confirmation,
and "Resume" after a scheduled cancellation is answered with Razorpay's reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.payments import subscriptions
from app.payments.audit import CUSTOMER, SYSTEM
from tests.fakes.razorpay_api import FakeRazorpay
from tests.fakes.razorpay_signing import signed_webhook
from tests.integration.dashboard.conftest import csrf_token, login
from tests.integration.razorpay_app import razorpay_config


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


def test_razorpay_plan_change_and_resume_from_the_dashboard(
    make_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    app = make_app(**razorpay_config(fake))
    owner: FlaskClient = login(app.test_client(), "owner")
    with app.test_request_context():
        small = subscriptions.create_plan(
            sku="s", name="Small", amount=19900, currency="INR", interval="month", actor=SYSTEM
        ).public_id
        large = subscriptions.create_plan(
            sku="l", name="Large", amount=59900, currency="INR", interval="month", actor=SYSTEM
        ).public_id
        sub = subscriptions.start(
            small, email="r@example.com", name="R", gateway_name="razorpay", actor=CUSTOMER
        )
        public_id, sub_id = sub.public_id, str(sub.gateway_subscription_id)
    fake.authenticate(sub_id)
    for event_id, body in fake.sub_events:
        raw, headers = signed_webhook(fake.webhook_secret, body, event_id)
        assert owner.post("/webhooks/razorpay", data=raw, headers=headers).status_code == 200
    path = f"/dashboard/subscriptions/{public_id}"
    assert "active" in owner.get(path).get_data(as_text=True)

    token = csrf_token(owner, path)
    form = {"plan": large, "from_plan": small, "csrf_token": token}
    asked = owner.post(f"{path}/change-plan", data=form)
    assert "Confirm plan change" in asked.get_data(as_text=True)
    assert not fake.calls("PATCH")
    done = owner.post(f"{path}/change-plan", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    edits = fake.calls("PATCH", f"/v1/subscriptions/{sub_id}")
    assert len(edits) == 1 and edits[0].json["schedule_change_at"] == "now"
    assert fake.plans[edits[0].json["plan_id"]]["item"]["amount"] == 59900
    owner.post(f"{path}/change-plan", data={**form, "confirm": "yes"})  # double submit
    assert len(fake.calls("PATCH")) == 1

    owner.post(f"{path}/cancel_at_period_end", data={"csrf_token": token})
    page = owner.get(path).get_data(as_text=True)
    assert "then ends" in page and "Cancel now" in page
    assert ">Resume<" not in page and 'id="resume-refused"' in page  # the reason instead
    owner.post(f"{path}/resume", data={"csrf_token": token})  # a stale page's button
    page = owner.get(path).get_data(as_text=True)
    assert 'role="alert">Razorpay cannot undo a cancellation' in page
    assert not fake.calls("POST", f"/v1/subscriptions/{sub_id}/resume")
