"""Customers are listed a page at a time (GET /api/v1/customers, keyset cursors like the
payments list), and a customer made at checkout is audited and announced once
(`customer.created` in the outbox, thin: no email or name)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, OutboxEvent
from app.payments import outbox
from tests.integration.api.conftest import Api, checkout_body, error_code


def _buy(api: Api, email: str) -> dict[str, Any]:
    response = api.post(
        "/checkout-sessions",
        checkout_body(customer={"email": email, "name": email.split("@")[0]}, gateway="sandbox"),
    )
    assert response.status_code == 201, response.get_json()
    data: dict[str, Any] = response.get_json()["data"]
    return data


def test_customers_come_a_page_at_a_time_newest_first(api: Api) -> None:
    emails = [f"c{i}@example.com" for i in range(5)]
    for email in emails:
        _buy(api, email)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = api.get("/customers" + query).get_json()
        assert body["success"] is True
        assert len(body["data"]) <= 2
        seen += [c["email"] for c in body["data"]]
        pages += 1
        if pages == 1:
            _buy(api, "late@example.com")  # a new customer while paging: not on later pages
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(emails))  # each once, newest first
    assert api.get("/customers?limit=1").get_json()["data"][0]["email"] == "late@example.com"
    found = api.get("/customers?email=C3@Example.com").get_json()
    assert [c["email"] for c in found["data"]] == ["c3@example.com"]
    assert found["next_cursor"] is None


def test_a_bad_cursor_is_a_400_that_names_the_field(api: Api) -> None:
    response = api.get("/customers?cursor=not-a-cursor")
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert response.get_json()["error"]["details"][0]["field"] == "cursor"
    assert api.get("/customers?limit=101").status_code == 400


def test_a_new_customer_is_audited_and_announced_once(api: Api) -> None:
    first = _buy(api, "new@example.com")
    customer_id = first["payment"]["customer_id"]
    _buy(api, "NEW@example.com")  # the same customer again: matched, not created
    with api.app.app_context():
        audits = (
            db.session.execute(select(AuditEntry).where(AuditEntry.object_id == customer_id))
            .scalars()
            .all()
        )
        events = (
            db.session.execute(select(OutboxEvent).where(OutboxEvent.type == "customer.created"))
            .scalars()
            .all()
        )
    assert [(a.action, a.object_type, a.actor_type) for a in audits] == [
        ("customer.created", "customer", "api_key")
    ]
    [event] = events
    assert event.subject_type == "customer" and event.subject_id == customer_id
    assert set(event.data) == {"id", "object", "created_at"}  # no email, no name
    assert "new@example.com" not in str(event.data)
    assert event.dispatched_at is not None  # relayed like every other event


def test_endpoints_may_subscribe_to_customer_created(api: Api) -> None:
    assert "customer.created" in outbox.SUBSCRIBABLE
    response = api.post(
        "/webhook-endpoints",
        {"url": "https://merchant.example/hooks", "event_types": ["customer.created"]},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["data"]["event_types"] == ["customer.created"]
