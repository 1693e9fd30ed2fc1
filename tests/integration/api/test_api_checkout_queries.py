"""The API's checkout answers from what the core already has (#23.10): after the checkout
is committed, building the 201 reads nothing back (no lazy load of the order, its items or
its payments), and the answer says exactly what is stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import event

from app.extensions import db
from tests.integration.api.conftest import Api, checkout_body

READS = re.compile(r"\bFROM\s+\"?(orders|order_items|payments)\b", re.IGNORECASE)


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_the_checkout_answer_reads_nothing_back(api: Api, db_backend: str) -> None:
    body = checkout_body(
        items=[{"sku": "tee-usd", "quantity": 2}, {"sku": "print-usd", "quantity": 1}]
    )
    with statements(api.app) as seen:
        response = api.post("/checkout-sessions", body)
    assert response.status_code == 201, response.get_json()
    reads = [s for s in seen if READS.search(s) and s.lstrip().upper().startswith("SELECT")]
    assert reads == [], reads

    # And what it answered is what is stored (the same as reading it afterwards).
    data = response.get_json()["data"]
    order = api.get(f"/orders/{data['order']['id']}").get_json()["data"]
    payment = api.get(f"/payments/{data['payment']['id']}").get_json()["data"]
    assert data["order"] == order
    assert data["payment"] == payment
    assert data["checkout_url"] == payment["checkout_url"] and payment["checkout_url"]
    assert [i["sku"] for i in order["items"]] == ["tee-usd", "print-usd"]
    assert order["payment_ids"] == [payment["id"]] and payment["order_id"] == order["id"]
    assert payment["status"] == "incomplete" and payment["gateway_reference"]
