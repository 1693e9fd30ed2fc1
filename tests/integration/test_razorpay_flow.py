"""Razorpay through the whole app: checkout page, callback, webhooks, capture, refunds.

Flask test client + database + the fake Razorpay API over HTTP (the SDK is real).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Order, Payment, Refund, WebhookEvent
from app.payments import refunds
from app.payments.audit import Actor
from app.payments.errors import PaymentGatewayFailed
from tests.fakes.razorpay_api import FakeRazorpay
from tests.integration.razorpay_app import add_products, razorpay_config, start_checkout

MERCHANT = Actor("user", "merchant@example.com")


@pytest.fixture
def fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as api:
        yield api


@pytest.fixture
def make_razorpay_app(make_app: Callable[..., Flask], fake: FakeRazorpay) -> Callable[..., Flask]:
    """An app (shared make_app: migrated database) with Razorpay on the fake, and products."""

    def factory(**overrides: object) -> Flask:
        app = make_app(**razorpay_config(fake, **overrides))
        with app.app_context():
            add_products()
        return app

    return factory


@pytest.fixture
def app(make_razorpay_app: Callable[..., Flask]) -> Iterator[Flask]:
    app = make_razorpay_app()
    # A request context: the core builds absolute URLs with url_for.
    with app.test_request_context():
        yield app


def fresh(payment_public_id: str) -> Payment:
    """Re-read a payment after requests that used their own sessions."""
    # End the read transaction: SQLite (WAL) would keep showing its old snapshot.
    db.session.rollback()
    payment = db.session.execute(
        select(Payment).where(Payment.public_id == payment_public_id)
    ).scalar_one()
    return payment


def transitions(payment: Payment, to_state: str) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(AuditEntry)
        .where(
            AuditEntry.payment_id == payment.id,
            AuditEntry.action == "payment.status_changed",
            AuditEntry.to_state == to_state,
        )
    ).scalar_one()


def post_webhook(client: FlaskClient, body: bytes, headers: dict[str, str]) -> dict[str, object]:
    response = client.post("/webhooks/razorpay", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# ---------------------------------------------------------------- the checkout page


def test_the_checkout_page_opens_razorpay_with_our_order(
    app: Flask, client: FlaskClient, fake: FakeRazorpay
) -> None:
    base = app.config["PUBLIC_BASE_URL"]
    payment = start_checkout()
    assert payment.checkout_url == f"{base}/checkout/razorpay/{payment.public_id}"
    assert payment.gateway_reference in fake.orders

    response = client.get(f"/checkout/razorpay/{payment.public_id}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    match = re.search(r'data-options="([^"]+)"', html)
    assert match is not None
    options = json.loads(match.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    assert options == {
        "key": fake.key_id,
        "amount": 49900,
        "currency": "INR",
        "order_id": payment.gateway_reference,
        "name": app.config["STORE_NAME"],
        "description": "1 × Dot-grid notebook",
        "prefill": {"name": "Asha", "email": "asha@example.com"},
        "notes": {"order_id": payment.order.public_id, "payment_id": payment.public_id},
        "callback_url": f"{base}/checkout/razorpay/{payment.public_id}/callback",
        "redirect": True,
    }
    assert fake.key_secret not in html and fake.webhook_secret not in html
    # Only external scripts: checkout.js (the one third-party) and our own file.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert all('src="' in attrs and not body.strip() for attrs, body in scripts)
    sources = sorted(re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts)
    assert f"{fake.url}/v1/checkout.js" in sources
    assert all(s.startswith("/static/") for s in sources if s != f"{fake.url}/v1/checkout.js")
    policy = response.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", policy).group(1).split()
    # Plus this response's nonce (app/security.py), which no tag on this page uses.
    assert [s for s in script_src if not s.startswith("'nonce-")] == ["'self'", fake.url]
    assert "'unsafe-inline'" not in policy


def test_only_the_razorpay_page_allows_razorpay(client: FlaskClient, fake: FakeRazorpay) -> None:
    payment = start_checkout()
    other = client.get(f"/checkout/cancel/{payment.public_id}")
    assert fake.url not in other.headers.get("Content-Security-Policy", "")


def test_an_unknown_payment_has_no_razorpay_page(client: FlaskClient) -> None:
    assert client.get("/checkout/razorpay/pay_doesnotexist").status_code == 404


# ---------------------------------------------------------------- the callback


def test_a_verified_callback_marks_the_order_paid(client: FlaskClient, fake: FakeRazorpay) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")

    before = len(fake.requests)
    # CSRF stays on in this app: Razorpay's POST carries no token, the route is exempt.
    response = client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data=fake.callback_fields(payment.gateway_reference or "", paid["id"]),
    )

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/checkout/return/{payment.public_id}")
    # Verification costs two reads at Razorpay: the payment, then our order.
    assert [(r.method, r.path) for r in fake.requests[before:]] == [
        ("GET", f"/v1/payments/{paid['id']}"),
        ("GET", f"/v1/orders/{payment.gateway_reference}"),
    ]
    payment = fresh(payment.public_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")
    assert payment.gateway_payment_id == paid["id"]
    assert payment.payment_method == {
        "method": "card",
        "brand": "Visa",
        "last4": "1111",
        "funding": "credit",
        "issuer": "HDFC",
    }
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'data-status="paid"' in page


def test_forged_callbacks_change_nothing(client: FlaskClient, fake: FakeRazorpay) -> None:
    victim = start_checkout()
    other = start_checkout()
    their_payment = fake.add_payment(other.gateway_reference or "")
    ours_unpaid = victim.gateway_reference or ""
    forged = [
        fake.callback_fields(other.gateway_reference or "", their_payment["id"]),
        fake.callback_fields(ours_unpaid, their_payment["id"], secret="not_our_key_secret"),
        {
            **fake.callback_fields(other.gateway_reference or "", their_payment["id"]),
            "razorpay_order_id": ours_unpaid,
        },
        {
            "razorpay_order_id": ours_unpaid,
            "razorpay_payment_id": their_payment["id"],
            "razorpay_signature": "0" * 64,
        },
        {
            "error[code]": "BAD_REQUEST_ERROR",
            "error[description]": "Forged",
            "error[metadata][payment_id]": their_payment["id"],
        },
    ]
    for fields in forged:
        response = client.post(f"/checkout/razorpay/{victim.public_id}/callback", data=fields)
        assert response.status_code == 400, fields
        page = response.get_data(as_text=True)
        assert "We could not verify this payment" in page
        assert f'href="/checkout/razorpay/{victim.public_id}"' in page
        payment = fresh(victim.public_id)
        assert (payment.status, payment.order.status) == ("processing", "pending"), fields
        assert payment.gateway_payment_id is None and payment.failure_message is None
    # The genuine callback afterwards still pays the order.
    genuine = fake.add_payment(ours_unpaid)
    response = client.post(
        f"/checkout/razorpay/{victim.public_id}/callback",
        data=fake.callback_fields(ours_unpaid, genuine["id"]),
    )
    assert response.status_code == 303
    payment = fresh(victim.public_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")


def test_a_failed_try_shows_razorpays_reason_and_the_customer_can_retry(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    order_id = payment.gateway_reference or ""
    failed = fake.add_payment(
        order_id,
        "failed",
        error_reason="insufficient_funds",
        error_description="Your card has insufficient funds.",
    )

    response = client.post(
        f"/checkout/razorpay/{payment.public_id}/callback", data=fake.failure_fields(failed["id"])
    )

    assert response.headers["Location"].endswith(f"/checkout/razorpay/{payment.public_id}")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your card has insufficient funds." in page and "Try again" in page
    assert 'data-auto-open="false"' in page
    assert fresh(payment.public_id).status == "processing"

    # Same Razorpay order, second try succeeds.
    paid = fake.add_payment(order_id)
    client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data=fake.callback_fields(order_id, paid["id"]),
    )
    assert fresh(payment.public_id).order.status == "paid"
    assert len(fake.orders) == 1


def test_dismissing_leads_to_the_cancel_page(client: FlaskClient) -> None:
    payment = start_checkout()
    page = client.get(f"/checkout/razorpay/{payment.public_id}").get_data(as_text=True)
    assert f'data-cancel-url="/checkout/cancel/{payment.public_id}"' in page
    assert client.get(f"/checkout/cancel/{payment.public_id}").status_code == 200


def test_a_paid_attempt_no_longer_opens_checkout(client: FlaskClient, fake: FakeRazorpay) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data=fake.callback_fields(payment.gateway_reference or "", paid["id"]),
    )
    response = client.get(f"/checkout/razorpay/{payment.public_id}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/checkout/return/{payment.public_id}")


# ---------------------------------------------------------------- manual capture


def test_manual_capture_keeps_the_deadline_and_captures_from_the_core(
    make_razorpay_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    app = make_razorpay_app(CAPTURE_METHOD="manual")
    with app.test_request_context():
        client = app.test_client()
        payment = start_checkout()
        assert fake.calls("POST", "/v1/orders")[0].json["payment"] == {"capture": "manual"}
        held = fake.add_payment(payment.gateway_reference or "")
        client.post(
            f"/checkout/razorpay/{payment.public_id}/callback",
            data=fake.callback_fields(payment.gateway_reference or "", held["id"]),
        )
        payment = fresh(payment.public_id)
        assert payment.status == "authorized"
        assert payment.capture_deadline is not None
        assert int(payment.capture_deadline.timestamp()) == held["created_at"] + 3 * 86400

        refunds.capture_payment(payment.public_id, MERCHANT)

        payment = fresh(payment.public_id)
        assert (payment.status, payment.order.status) == ("succeeded", "paid")
        assert fake.calls("POST", f"/v1/payments/{held['id']}/capture")[0].json == {
            "amount": 49900,
            "currency": "INR",
        }


# ---------------------------------------------------------------- webhooks


def test_forged_webhooks_are_rejected_and_not_stored(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    body, headers = fake.webhook(
        "payment.captured", payment_id=paid["id"], secret="not_the_webhook_secret"
    )
    assert client.post("/webhooks/razorpay", data=body, headers=headers).status_code == 400
    good_body, good_headers = fake.webhook("payment.captured", payment_id=paid["id"])
    tampered = good_body.replace(b'"amount": 49900', b'"amount": 1')
    assert client.post("/webhooks/razorpay", data=tampered, headers=good_headers).status_code == 400
    assert db.session.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 0
    assert fresh(payment.public_id).status == "processing"


EVENTS = (
    "payment.authorized",
    "payment.captured",
    "order.paid",
    "refund.created",
    "refund.processed",
)


def deliver_in_order(
    client: FlaskClient, fake: FakeRazorpay, order: tuple[str, ...]
) -> tuple[Payment, dict[str, tuple[bytes, dict[str, str]]]]:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    refund = fake.dashboard_refund(paid["id"], 9900)
    built = {
        kind: fake.webhook(
            kind,
            payment_id=paid["id"],
            refund_id=refund["id"] if kind.startswith("refund.") else None,
        )
        for kind in EVENTS
    }
    for kind in order:
        body, headers = built[kind]
        assert post_webhook(client, body, headers)["duplicate"] is False
        # Razorpay delivers at least once: every event comes again at once.
        assert post_webhook(client, body, headers)["duplicate"] is True
    return fresh(payment.public_id), built


def final_state(payment: Payment) -> tuple[object, ...]:
    refunds_ = tuple((r.amount, r.status, r.requested_by) for r in payment.refunds)
    return (
        payment.status,
        payment.order.status,
        payment.amount_refunded,
        refunds_,
        transitions(payment, "succeeded"),
    )


def test_every_ordering_of_the_webhooks_ends_in_the_same_state(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    check_every_ordering(client, fake)


@pytest.mark.postgres
def test_every_ordering_on_postgresql(
    pg_url: str, make_razorpay_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    # Row locks (SELECT ... FOR UPDATE) instead of SQLite's single writer. SQLite already
    # runs all 120 orderings; here every 8th (15, each event twice) keeps CI quick.
    app = make_razorpay_app(SQLALCHEMY_DATABASE_URI=pg_url)
    with app.test_request_context():
        check_every_ordering(app.test_client(), fake, every=8)
        db.session.remove()


def check_every_ordering(client: FlaskClient, fake: FakeRazorpay, every: int = 1) -> None:
    finals = set()
    for order in itertools.islice(itertools.permutations(EVENTS), 0, None, every):
        payment, _ = deliver_in_order(client, fake, order)
        state = final_state(payment)
        assert state == (
            "partially_refunded",
            "partially_refunded",
            9900,
            ((9900, "succeeded", "gateway"),),
            1,
        ), order
        finals.add(state)
        stored = db.session.execute(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.payment_id == payment.id)
        ).scalar_one()
        assert stored == len(EVENTS)
    assert len(finals) == 1


def test_a_failed_payment_webhook_does_not_close_the_order(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    order_id = payment.gateway_reference or ""
    failed = fake.add_payment(
        order_id, "failed", error_reason="card_declined", error_description="Declined by the bank"
    )
    paid = fake.add_payment(order_id)
    late_failure = fake.webhook("payment.failed", payment_id=failed["id"])
    post_webhook(client, *fake.webhook("payment.captured", payment_id=paid["id"]))
    post_webhook(client, *late_failure)
    payment = fresh(payment.public_id)
    assert (payment.status, payment.order.status) == ("succeeded", "paid")

    other = start_checkout()
    failed = fake.add_payment(
        other.gateway_reference or "", "failed", error_description="Declined by the bank"
    )
    post_webhook(client, *fake.webhook("payment.failed", payment_id=failed["id"]))
    other = fresh(other.public_id)
    assert (other.status, other.order.status) == ("processing", "pending")
    assert other.failure_message == "Declined by the bank"


# ---------------------------------------------------------------- refunds


def test_refunds_carry_our_id_as_idempotency_key_and_follow_webhooks(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data=fake.callback_fields(payment.gateway_reference or "", paid["id"]),
    )

    first = refunds.create_refund(payment.public_id, 10000, "damaged", MERCHANT)
    second = refunds.create_refund(payment.public_id, 5000, None, MERCHANT)
    again = refunds.send_refund(first.id, MERCHANT)  # a retry of the first

    calls = fake.calls("POST", f"/v1/payments/{paid['id']}/refund")
    assert [c.idempotency_key for c in calls] == [
        first.public_id,
        second.public_id,
        first.public_id,
    ]
    assert calls[0].json["notes"] == {
        "refund_id": first.public_id,
        "payment_id": payment.public_id,
        "reason": "damaged",
    }
    assert again.gateway_refund_id == first.gateway_refund_id
    assert len(fake.refunds) == 2
    assert (first.status, second.status) == ("pending", "pending")

    for refund in (first, second):
        post_webhook(client, *fake.webhook("refund.processed", refund_id=refund.gateway_refund_id))
    payment = fresh(payment.public_id)
    assert [r.status for r in payment.refunds] == ["succeeded", "succeeded"]
    assert (payment.amount_refunded, payment.status) == (15000, "partially_refunded")


def test_a_refund_made_in_razorpays_dashboard_appears(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    post_webhook(client, *fake.webhook("payment.captured", payment_id=paid["id"]))
    theirs = fake.dashboard_refund(paid["id"])
    post_webhook(client, *fake.webhook("refund.processed", refund_id=theirs["id"]))
    refund = db.session.execute(
        select(Refund).where(Refund.gateway_refund_id == theirs["id"])
    ).scalar_one()
    assert (refund.amount, refund.status, refund.requested_by) == (49900, "succeeded", "gateway")
    assert fresh(payment.public_id).order.status == "refunded"


def test_a_failed_refund_webhook_marks_our_refund_failed(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    post_webhook(client, *fake.webhook("payment.captured", payment_id=paid["id"]))
    refund = refunds.create_refund(payment.public_id, None, None, MERCHANT)
    post_webhook(client, *fake.webhook("refund.failed", refund_id=refund.gateway_refund_id))
    payment = fresh(payment.public_id)
    assert [r.status for r in payment.refunds] == ["failed"]
    assert (payment.status, payment.order.status) == ("succeeded", "paid")


@pytest.mark.parametrize(("sku", "amount"), [("tenugui-jpy", 1800), ("incense-kwd", 12340)])
def test_zero_and_three_decimal_currencies_reach_razorpay_unchanged(
    client: FlaskClient, fake: FakeRazorpay, sku: str, amount: int
) -> None:
    payment = start_checkout(sku)
    assert fake.orders[payment.gateway_reference or ""]["amount"] == amount
    paid = fake.add_payment(payment.gateway_reference or "")
    client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data=fake.callback_fields(payment.gateway_reference or "", paid["id"]),
    )
    assert fresh(payment.public_id).order.status == "paid"


def test_orders_are_not_duplicated_when_the_first_create_timed_out(
    make_razorpay_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    # One attempt (no retry layer retries): the adapter's own answer to a timeout.
    app = make_razorpay_app(RAZORPAY_TIMEOUT_SECONDS=0.3, GATEWAY_MAX_ATTEMPTS=1)
    with app.test_request_context():
        fake.queue_latency(1.0, path="/v1/orders", method="POST")
        with pytest.raises(Exception) as err:
            start_checkout()
        assert "not answering" in str(err.value)
        payment = db.session.execute(select(Payment)).scalar_one()
        assert payment.status == "created" and payment.gateway_reference is None

        from app.payments.audit import CUSTOMER
        from app.payments.checkout import open_checkout

        reopened = open_checkout(payment.id, CUSTOMER)
        assert reopened.gateway_reference in fake.orders
        assert len(fake.orders) == 1
        assert db.session.execute(select(func.count()).select_from(Order)).scalar_one() == 1


def test_sync_brings_an_attempt_up_to_date_from_its_order(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    fake.add_payment(payment.gateway_reference or "", "failed")
    paid = fake.add_payment(payment.gateway_reference or "", method="upi")
    # Neither callback nor webhook arrived (customer closed the tab, webhook delayed).
    refunds.sync_payment(payment.public_id, MERCHANT)
    payment = fresh(payment.public_id)
    assert (payment.status, payment.gateway_payment_id) == ("succeeded", paid["id"])
    assert payment.payment_method == {"method": "upi", "vpa": "customer@okbank"}
    assert fake.calls("GET", f"/v1/orders/{payment.gateway_reference}/payments")


def test_stored_webhooks_keep_no_card_numbers_or_tokens(
    client: FlaskClient, fake: FakeRazorpay
) -> None:
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    payload = fake.event_payload("payment.captured", payment_id=paid["id"])
    entity = payload["payload"]["payment"]["entity"]
    entity["token_id"] = "token_SavedCard0001"
    entity["card"]["number"] = "4111111111111111"
    from tests.fakes.razorpay_signing import signed_webhook

    post_webhook(client, *signed_webhook(fake.webhook_secret, payload))
    stored = db.session.execute(select(WebhookEvent.payload)).scalar_one()
    assert "4111111111111111" not in stored and "token_SavedCard0001" not in stored
    assert json.loads(stored)["payload"]["payment"]["entity"]["card"]["last4"] == "1111"
    assert fresh(payment.public_id).status == "succeeded"


def test_razorpay_is_active_only_with_all_three_secrets(
    make_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    app = make_app(**razorpay_config(fake, RAZORPAY_WEBHOOK_SECRET=None, SANDBOX_ENABLED=True))
    assert "razorpay" not in app.extensions["kassa_gateways"]
    assert app.test_client().post("/webhooks/razorpay", data=b"{}").status_code == 404


def test_the_real_checkout_host_gets_razorpays_frames_and_nothing_inline_for_scripts(
    make_razorpay_app: Callable[..., Flask],
) -> None:
    app = make_razorpay_app(RAZORPAY_CHECKOUT_JS="https://checkout.razorpay.com/v1/checkout.js")
    with app.test_request_context():
        payment = start_checkout()
        response = app.test_client().get(f"/checkout/razorpay/{payment.public_id}")
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert re.sub(r" 'nonce-[^']+'", "", policy["script-src"]) == (
        "'self' https://checkout.razorpay.com https://cdn.razorpay.com"
    )
    assert policy["frame-src"] == "https://api.razorpay.com"
    assert policy["form-action"] == "'self' https://api.razorpay.com"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"


def test_webhooks_alone_settle_a_payment_over_http(
    serve: Callable[..., Any], fake: FakeRazorpay
) -> None:
    """The customer pays and closes the tab: no callback, Razorpay's webhooks do it all."""
    import requests

    server = serve(**razorpay_config(fake))
    live_app: Flask = server.app
    fake.webhook_url = f"{server.url}/webhooks/razorpay"
    with live_app.test_request_context(base_url=server.url):
        payment = start_checkout()
        paid = requests.post(
            f"{fake.url}/_fake/checkout/{payment.gateway_reference}/pay",
            data={"outcome": "success", "key": fake.key_id},
            timeout=10,
        )
        assert paid.ok
        fake.wait_for_deliveries()
        assert fake.deliveries == [
            ("payment.authorized", 200),
            ("payment.captured", 200),
            ("order.paid", 200),
        ]
        live_app.extensions["kassa_jobs"].wait_idle()
        payment = fresh(payment.public_id)
        assert (payment.status, payment.order.status) == ("succeeded", "paid")
        assert transitions(payment, "succeeded") == 1
        db.session.remove()


def test_an_attempt_past_its_deadline_never_opens_the_modal(client: FlaskClient) -> None:
    payment = start_checkout()
    payment.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    response = client.get(f"/checkout/razorpay/{payment.public_id}")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/checkout/cancel/{payment.public_id}")


def test_a_live_key_in_debug_mode_stops_the_app(
    make_app: Callable[..., Flask], fake: FakeRazorpay
) -> None:
    with pytest.raises(RuntimeError, match="live Razorpay key"):
        make_app(**razorpay_config(fake, RAZORPAY_KEY_ID="rzp_live_realmoney", DEBUG=True))


def test_no_secret_or_card_number_reaches_the_logs(
    client: FlaskClient,
    fake: FakeRazorpay,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    payment = start_checkout()
    paid = fake.add_payment(payment.gateway_reference or "")
    fields = fake.callback_fields(payment.gateway_reference or "", paid["id"])
    client.post(f"/checkout/razorpay/{payment.public_id}/callback", data=fields)
    client.post(
        f"/checkout/razorpay/{payment.public_id}/callback",
        data={**fields, "razorpay_signature": "f" * 64},
    )  # a forged one, logged
    post_webhook(client, *fake.webhook("payment.captured", payment_id=paid["id"]))
    refunds.create_refund(payment.public_id, 100, None, MERCHANT)
    for _ in range(3):  # every attempt of the retry layer (GATEWAY_MAX_ATTEMPTS)
        fake.queue_reset(path="/v1/payments")  # the SDK prints here
    with pytest.raises(PaymentGatewayFailed):
        refunds.create_refund(payment.public_id, 100, None, MERCHANT)
    logged = caplog.text + "".join(capsys.readouterr())
    assert "razorpay callback signature mismatch" in logged
    for secret in (fake.key_secret, fake.webhook_secret, fields["razorpay_signature"]):
        assert secret not in logged
