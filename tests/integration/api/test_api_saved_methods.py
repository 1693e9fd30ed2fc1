"""Customers and saved payment methods through the API with the sandbox gateway (issue 18):
save at checkout (with consent), charge later off-session with an Idempotency-Key, the
bank asking the customer to authenticate, declines, and removing a method."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEntry, Customer, Order, Payment, SavedPaymentMethod
from tests.integration.api.conftest import (
    Api,
    checkout_body,
    complete_at_sandbox,
    deliver_webhooks,
    error_code,
)


def save_at_checkout(
    api: Api, scenario: str = "succeed", email: str = "ada@example.com"
) -> dict[str, Any]:
    """Buy with "save" ticked and pay at the sandbox with `scenario`; the customer record."""
    response = api.post(
        "/checkout-sessions",
        checkout_body(save_payment_method=True, customer={"email": email, "name": "Ada Lovelace"}),
    )
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert data["payment"]["customer_id"].startswith("cus_")
    if scenario == "3ds_succeed":
        complete_at_sandbox(api.app, data["payment"]["gateway_reference"], "3ds_succeed")
    else:
        complete_at_sandbox(api.app, data["payment"]["gateway_reference"], scenario)
    customer = api.get(f"/customers/{data['payment']['customer_id']}").get_json()["data"]
    return dict(customer)


def charge(api: Api, method_id: str, key: str, **body: Any) -> Any:
    payload = {"payment_method_id": method_id, "amount": 1999, "currency": "USD", **body}
    return api.post("/payments/charge", payload, headers={"Idempotency-Key": key})


def counts(app: Flask) -> tuple[int, int, int, int]:
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(Payment)) or 0,
            db.session.scalar(select(func.count()).select_from(Order)) or 0,
            db.session.scalar(select(func.count()).select_from(SavedPaymentMethod)) or 0,
            db.session.scalar(select(func.count()).select_from(Customer)) or 0,
        )


def test_a_method_is_saved_only_with_consent(api: Api) -> None:
    response = api.post("/checkout-sessions", checkout_body())
    data = response.get_json()["data"]
    complete_at_sandbox(api.app, data["payment"]["gateway_reference"])
    customer = api.get(f"/customers/{data['payment']['customer_id']}").get_json()["data"]
    assert customer["email"] == "ada@example.com"
    assert customer["payment_methods"] == []
    # Buying again with the same email (any case) finds the same customer; now it saves.
    again = save_at_checkout(api, email="ADA@example.com")
    assert again["id"] == customer["id"]
    [method] = again["payment_methods"]
    assert method["id"].startswith("pm_")
    assert (method["brand"], method["last4"], method["status"]) == ("visa", "4242", "active")
    assert method["expired"] is False and method["exp_month"] == 12
    listed = api.get("/customers?email=ada@example.com").get_json()["data"]
    assert [c["id"] for c in listed] == [customer["id"]]
    # Kassa keeps the gateway's token only: never shown by the API.
    assert "token" not in str(method)


def test_charge_a_saved_method_later_and_the_same_key_charges_once(api: Api) -> None:
    customer = save_at_checkout(api)
    method_id = customer["payment_methods"][0]["id"]
    before = counts(api.app)

    first = charge(api, method_id, "charge-1", description="Monthly box")
    assert first.status_code == 201, first.get_json()
    payment = first.get_json()["data"]
    assert payment["status"] == "succeeded"
    assert payment["customer_id"] == customer["id"]
    assert payment["saved_payment_method_id"] == method_id
    assert payment["amount"] == 1999 and payment["currency"] == "USD"
    assert first.headers["Location"] == f"/api/v1/payments/{payment['id']}"

    again = charge(api, method_id, "charge-1", description="Monthly box")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["data"]["id"] == payment["id"]
    assert counts(api.app)[0] == before[0] + 1  # one charge

    deliver_webhooks(api.app)  # the sandbox's payment.succeeded: a duplicate, nothing moves
    with api.app.app_context():
        row = db.session.execute(
            select(Payment).where(Payment.public_id == payment["id"])
        ).scalar_one()
        assert row.status == "succeeded" and row.order.status == "paid"
        assert row.idempotency_key.startswith("kassa-charge-")
        sandbox = api.app.extensions["kassa_gateways"]["sandbox"].processor
        session = sandbox.get(row.gateway_reference)
        assert session.idempotency_key == row.idempotency_key  # the gateway got our key
        actions = [
            a.action
            for a in db.session.execute(
                select(AuditEntry).where(AuditEntry.payment_id == row.id).order_by(AuditEntry.id)
            ).scalars()
        ]
        assert actions[0] == "payment.created"
        assert "payment.status_changed" in actions


def test_charge_needs_an_idempotency_key_and_valid_input(api: Api) -> None:
    customer = save_at_checkout(api)
    method_id = customer["payment_methods"][0]["id"]
    before = counts(api.app)
    missing = api.post(
        "/payments/charge", {"payment_method_id": method_id, "amount": 100, "currency": "USD"}
    )
    assert missing.status_code == 400 and error_code(missing) == "validation_error"
    no_amount = charge(api, method_id, "k-1", amount=None)
    assert no_amount.status_code == 422 or no_amount.status_code == 400
    unknown = charge(api, "pm_doesnotexist", "k-2")
    assert unknown.status_code == 404
    assert counts(api.app) == before


def test_a_decline_is_402_with_the_reason_and_changes_nothing_else(api: Api) -> None:
    customer = save_at_checkout(api, scenario="save_then_decline")
    [method] = customer["payment_methods"]
    assert method["last4"] == "0341"
    before_methods = api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"]
    response = charge(api, method["id"], "decline-1")
    assert response.status_code == 402
    assert error_code(response) == "card_declined"
    assert "declined" in response.get_json()["error"]["message"]
    # The method and the customer are as they were; the attempt is recorded as failed.
    assert (
        api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"] == before_methods
    )
    with api.app.app_context():
        failed = db.session.execute(
            select(Payment).where(Payment.saved_method_id.is_not(None))
        ).scalar_one()
        assert failed.status == "failed" and failed.failure_code == "card_declined"
        assert failed.order.status == "failed"
    # The same key again answers the same 402 (stored), never a second attempt.
    assert charge(api, method["id"], "decline-1").status_code == 402
    with api.app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.saved_method_id.is_not(None))
            )
            == 1
        )


def test_authentication_required_waits_then_the_customers_link_settles_it(api: Api) -> None:
    customer = save_at_checkout(api, scenario="3ds_succeed")
    [method] = customer["payment_methods"]
    assert method["last4"] == "3184"
    response = charge(api, method["id"], "auth-1")
    assert response.status_code == 201
    payment = response.get_json()["data"]
    assert payment["status"] == "requires_action"
    link = payment["action_url"]
    assert re.search(r"/pay/action/[\w.-]+$", link)
    # The customer was emailed a link of their own (signed, so not the same string).
    [mail] = (Path(api.app.instance_path) / "outbox").glob(f"action-{payment['id']}*")
    text = message_from_bytes(mail.read_bytes(), policy=default).get_content()
    emailed = re.search(r"https?://\S+/pay/action/\S+", text)
    assert emailed, text
    link = emailed.group(0)
    with api.app.app_context():
        events = db.session.execute(
            select(AuditEntry.action, AuditEntry.to_state).where(
                AuditEntry.object_id == payment["id"]
            )
        ).all()
        assert ("payment.status_changed", "requires_action") in events

    # The link brings the customer to the sandbox's authentication page...
    path = link.removeprefix(api.app.config["PUBLIC_BASE_URL"])
    browser = api.app.test_client()
    hop = browser.get(path)
    assert hop.status_code == 303
    challenge = hop.headers["Location"]
    assert "/sandbox/pay/" in challenge and "/challenge" in challenge
    session_id = challenge.split("/sandbox/pay/")[1].split("/")[0]
    # ...where they authenticate; the webhook settles the payment as usual.
    complete_at_sandbox(api.app, session_id, "3ds_succeed")
    settled = api.get(f"/payments/{payment['id']}").get_json()["data"]
    assert settled["status"] == "succeeded" and settled["action_url"] is None
    # The link now says it is done instead of sending them to pay again.
    done = browser.get(path)
    assert done.status_code == 200 and "<h1>Payment confirmed</h1>" in done.get_data(as_text=True)


def test_a_forged_link_is_404(api: Api) -> None:
    assert api.app.test_client().get("/pay/action/not-a-token").status_code == 404


def test_removing_a_method_detaches_it_and_it_cannot_be_charged(api: Api) -> None:
    customer = save_at_checkout(api)
    method_id = customer["payment_methods"][0]["id"]
    removed = api.client.delete(
        f"/api/v1/customers/{customer['id']}/payment-methods/{method_id}",
        headers=api.headers(),
    )
    assert removed.status_code == 200
    assert removed.get_json()["data"]["status"] == "detached"
    assert api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"] == []
    response = charge(api, method_id, "after-removal")
    assert response.status_code == 409
    with api.app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "payment_method.detached")
            )
            == 1
        )


def test_an_expired_card_is_marked_and_not_charged(api: Api) -> None:
    customer = save_at_checkout(api)
    method_id = customer["payment_methods"][0]["id"]
    with api.app.app_context():
        row = db.session.execute(
            select(SavedPaymentMethod).where(SavedPaymentMethod.public_id == method_id)
        ).scalar_one()
        row.exp_year = 2020
        db.session.commit()
    [method] = api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"]
    assert method["expired"] is True
    assert charge(api, method_id, "expired-1").status_code == 409


def test_the_receipt_links_to_the_customers_own_page_where_they_remove_a_method(
    api: Api,
) -> None:
    customer = save_at_checkout(api)
    texts = [
        message_from_bytes(p.read_bytes(), policy=default)
        for p in (Path(api.app.instance_path) / "outbox").iterdir()
    ]
    receipts = [m for m in texts if str(m["Subject"]).startswith("Your receipt")]
    assert receipts
    body = receipts[-1].get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/account/methods/\S+", body.get_content())
    assert found, body.get_content()
    path = found.group(0).removeprefix(api.app.config["PUBLIC_BASE_URL"])
    browser = api.app.test_client()
    page = browser.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Visa •••• 4242" in html and "ada@example.com" in html
    method_id = customer["payment_methods"][0]["id"]
    removed = browser.post(f"{path}/{method_id}/remove")  # CSRF is off in the API app
    assert removed.status_code == 303
    assert "You have no saved payment methods." in browser.get(path).get_data(as_text=True)
    assert api.get(f"/customers/{customer['id']}/payment-methods").get_json()["data"] == []
    # A tampered link shows nothing.
    assert browser.get(path[:-3] + "xyz").status_code == 404


def test_customer_rows_hold_no_plaintext_and_search_by_email_still_works(api: Api) -> None:
    customer = save_at_checkout(api, email="Grace@Example.com")
    with api.app.app_context():
        raw = db.session.execute(text("SELECT email, name, email_hash FROM customers")).one()
        assert "grace@example.com" not in str(raw).lower() and "Ada" not in raw.name
        assert raw.email.startswith("gAAAAA") and raw.name.startswith("gAAAAA")
        token = db.session.execute(
            text("SELECT gateway_token FROM saved_payment_methods")
        ).scalar_one()
        assert token.startswith("gAAAAA") and "sbx_pm_" not in token
        # Through the model the values read back as they were written.
        method = db.session.execute(select(SavedPaymentMethod)).scalar_one()
        assert method.gateway_token.startswith("sbx_pm_succeed_")
    found = api.get("/customers?email=grace@EXAMPLE.com").get_json()["data"]
    assert [c["id"] for c in found] == [customer["id"]]
    assert found[0]["email"] == "grace@example.com"


def test_the_confirmation_email_is_in_the_language_the_customer_bought_in(api: Api) -> None:
    response = api.post(
        "/checkout-sessions",
        checkout_body(
            save_payment_method=True, customer={"email": "lea@example.com", "name": "Lea"}
        ),
        headers={"Accept-Language": "de-DE,de;q=0.9"},
    )
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    complete_at_sandbox(api.app, data["payment"]["gateway_reference"], "3ds_succeed")
    customer = api.get(f"/customers/{data['payment']['customer_id']}").get_json()["data"]
    [method] = customer["payment_methods"]
    # The merchant's charge carries no browser language: the customer's last order's is used.
    payment = charge(api, method["id"], "auth-de").get_json()["data"]
    assert payment["status"] == "requires_action"
    [mail] = (Path(api.app.instance_path) / "outbox").glob(f"action-{payment['id']}*")
    message = message_from_bytes(mail.read_bytes(), policy=default)
    assert message["Subject"] == "Bestätigen Sie Ihre Zahlung von $19,99"
    text = message.get_content()
    assert "Zahlung bestätigen: http" in text and "/pay/action/" in text
