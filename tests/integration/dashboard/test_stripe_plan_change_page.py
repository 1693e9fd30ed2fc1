"""The dashboard's plan change for a Stripe subscription (the fake over HTTP): asked
first, then the subscription's item moves to the new Price with create_prorations, once
however often the confirmed form is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from app.payments import subscriptions
from app.payments.audit import CUSTOMER, SYSTEM
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.stripe_fixtures import FAKE_WEBHOOK_SECRET, fake_stripe  # noqa: F401
from tests.fakes.stripe_signing import signed_event
from tests.integration.dashboard.conftest import csrf_token, login
from tests.integration.stripe_support import make_stripe_app  # noqa: F401


def test_stripe_plan_change_from_the_dashboard(
    make_stripe_app: Callable[..., Flask],  # noqa: F811
    fake_stripe: FakeStripe,  # noqa: F811
) -> None:
    app = make_stripe_app()
    owner = login(app.test_client(), "owner")
    with app.test_request_context():
        small = subscriptions.create_plan(
            sku="s", name="Small", amount=1200, currency="JPY", interval="month", actor=SYSTEM
        ).public_id
        large = subscriptions.create_plan(
            sku="l", name="Large", amount=3000, currency="JPY", interval="month", actor=SYSTEM
        ).public_id
        sub = subscriptions.start(
            small, email="s@example.com", name="S", gateway_name="stripe", actor=CUSTOMER
        )
        public_id, session_id = sub.public_id, str(sub.checkout_reference)
    since = len(fake_stripe.events)
    stripe_sub = fake_stripe.complete_subscription_session(session_id)
    for event in fake_stripe.events[since:]:
        public: dict[str, Any] = {k: v for k, v in event.items() if not k.startswith("_")}
        body, headers = signed_event(public, FAKE_WEBHOOK_SECRET)
        assert owner.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    path = f"/dashboard/subscriptions/{public_id}"
    assert "Review plan change" in owner.get(path).get_data(as_text=True)

    token = csrf_token(owner, path)
    form = {"plan": large, "from_plan": small, "csrf_token": token}
    asked = owner.post(f"{path}/change-plan", data=form).get_data(as_text=True)
    assert "Confirm plan change" in asked and fake_stripe.prorations == []
    for _ in range(2):  # confirmed, then the same form again
        done = owner.post(f"{path}/change-plan", data={**form, "confirm": "yes"})
        assert done.status_code == 303
    assert fake_stripe.prorations == [
        {"subscription": stripe_sub["id"], "behavior": "create_prorations"}
    ]
    item = fake_stripe.subscriptions[stripe_sub["id"]]["items"]["data"][0]
    assert item["price"]["unit_amount"] == 3000
    page = owner.get(path).get_data(as_text=True)
    assert "Plan changed to Large" in page and "The subscription is on Large" in page
    with app.app_context():
        assert subscriptions.get_subscription(public_id).plan.public_id == large
