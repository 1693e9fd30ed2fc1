"""The dashboard says what happened in plain words (issue 20, items 2, 4 and 5)."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from app.dashboard import queries
from app.extensions import db
from app.models import Payment, PaymentStatus
from app.payments.audit import JOB
from app.payments.state import transition_payment
from app.payments.uow import lock, unit_of_work
from tests.integration.dashboard.conftest import (
    deliver_webhooks,
    hx_headers,
    make_payment,
    sandbox_payment,
)


def form_token_of(html: str) -> str:
    match = re.search(r'<input[^>]*name="token"[^>]*value="([^"]+)"', html)
    assert match, "no refund token in the form"
    return match.group(1)


def _refund_all(client: FlaskClient, pid: str) -> None:
    page_url = f"/dashboard/payments/{pid}"
    html = client.get(page_url).get_data(as_text=True)
    data = {"amount": "25.00", "reason": "requested_by_customer", "token": form_token_of(html)}
    headers = hx_headers(client, page_url)
    url = f"/dashboard/payments/{pid}/refund"
    assert client.post(url, data=data, headers=headers).status_code == 200
    done = client.post(url, data={**data, "confirm": "yes"}, headers=headers)
    assert done.status_code == 200, done.get_data(as_text=True)


def test_opened_but_unpaid_checkouts_are_incomplete_and_left_out_of_the_rate(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    with dash_app.app_context():
        opened = make_payment(status="processing").public_id
        make_payment(status="succeeded")
        make_payment(status="failed")
        in_flight = make_payment(status="processing", gateway_payment_id="sbx_pay_x").public_id
    row = client.get("/dashboard/payments").get_data(as_text=True)
    assert re.search(rf'id="row-{opened}".*?data-status="incomplete">Incomplete<', row, re.DOTALL)
    assert re.search(
        rf'id="row-{in_flight}".*?data-status="processing">Processing<', row, re.DOTALL
    )
    only = client.get("/dashboard/payments?status=incomplete").get_data(as_text=True)
    assert opened in only and in_flight not in only
    overview = client.get("/dashboard/").get_data(as_text=True)
    # 1 of 2 settled attempts succeeded: the two open ones are not failures.
    assert "50.0%" in overview and "2 checkouts still open, not counted" in overview
    csv = client.get("/dashboard/payments/export.csv").get_data(as_text=True)
    assert f"{opened}," in csv and ",incomplete,sandbox," in csv


def test_timeline_names_the_merchant_and_folds_checks_that_changed_nothing(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    pid = sandbox_payment(dash_app, client)
    _refund_all(client, pid)
    deliver_webhooks(dash_app, client)
    with dash_app.app_context():
        for _ in range(3):  # three periodic reconciles finding nothing new
            with unit_of_work():
                payment = lock(Payment, public_id=pid)
                assert payment is not None
                transition_payment(payment, PaymentStatus.SUCCEEDED, JOB, reason="reconcile")
    html = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    timeline = html[html.index('id="timeline"') :]
    assert "Refund of $25.00 requested" in timeline and "by admin@shop.test" in timeline
    assert "Payment succeeded" in timeline and "by user:" not in timeline.split("<details")[0]
    shown, _, folded = timeline.partition('class="timeline-routine"')
    assert "Checked: no change" not in shown and "→" not in re.sub(
        r"<details.*?</details>", "", shown, flags=re.DOTALL
    )
    assert re.search(r"\d+ checks that changed nothing", folded)
    assert folded.count("Checked: no change") >= 3
    with dash_app.app_context():
        items = queries.timeline(db.session.get(Payment, _id(dash_app, pid)))
        assert all(i.raw for i in items)  # the raw record is kept, folded


def _id(app: Flask, pid: str) -> int:
    with app.app_context():
        payment = db.session.query(Payment).filter_by(public_id=pid).one()
        return payment.id


def test_after_a_full_refund_the_page_says_so_and_the_order_label_follows(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    pid = sandbox_payment(dash_app, client)
    _refund_all(client, pid)
    deliver_webhooks(dash_app, client)
    headers = hx_headers(client, f"/dashboard/payments/{pid}")
    panel = client.get(f"/dashboard/payments/{pid}/status", headers=headers)
    body = panel.get_data(as_text=True)
    # The order's label comes along with the status panel, already "Refunded".
    assert '<span id="order-label" hx-swap-oob="true">(Refunded)</span>' in body
    # ...and the refund form, which now says there is nothing left to refund.
    assert '<div id="refund-form" class="panel" hx-swap-oob="true">' in body
    assert "has been refunded in full ($25.00)" in body
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert "has been refunded in full ($25.00)" in page
    assert "cannot be refunded while" not in page
