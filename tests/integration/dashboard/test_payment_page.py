"""A payment's page and its actions: amounts, gateway links, timeline with raw payloads,
refunds with a confirmation step and inline errors, once-only submission, live refund
status, capture and sync."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.dashboard.queries import gateway_dashboard_url
from app.extensions import db
from app.models import Payment, Refund
from tests.integration.dashboard.conftest import (
    deliver_webhooks,
    hx_headers,
    make_payment,
    sandbox_payment,
)

TOKEN = re.compile(
    r'name="token" type="hidden" value="([^"]+)"|'
    r'id="token" name="token" type="hidden" value="([^"]+)"'
)


def form_token(html: str) -> str:
    match = re.search(r'<input[^>]*name="token"[^>]*value="([^"]+)"', html)
    assert match, "no refund token in the form"
    return match.group(1)


def test_page_shows_amounts_customer_items_gateway_and_timeline(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    pid = sandbox_payment(dash_app, client, sku="tee-usd", quantity=2)
    html = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert 'data-status="succeeded"' in html
    assert re.search(r'data-amount="charged">\$50\.00', html)
    assert re.search(r'data-amount="refunded">\$0\.00', html)
    assert re.search(r'data-amount="net">\$50\.00', html)
    assert "ann@example.com" in html and "Ann Lee" in html and "Kassa T-shirt" in html
    assert "sbx_cs_" in html and "sbx_pay_" in html
    assert "dashboard.stripe.com" not in html  # the sandbox has no dashboard to link to
    # Timeline: audit entries and the webhook events with their raw payloads.
    assert "payment.created" in html
    assert "payment.succeeded" in html and "Payload:" in html
    assert "Sandbox sent “payment succeeded”: applied" in html and "Payment succeeded" in html
    assert (
        "&#34;type&#34;: &#34;payment.succeeded&#34;" in html
        or "&quot;type&quot;: &quot;payment.succeeded&quot;" in html
    )
    # The status panel never polls: it refreshes on the page's event stream.
    panel = re.search(r'<section id="payment-status"[^>]*>', html)
    assert panel and "every" not in panel.group(0)
    assert f'hx-trigger="sse:payment-{pid}"' in panel.group(0)
    assert 'sse-connect="/dashboard/events?since=' in html
    assert client.get("/dashboard/payments/pay_nope").status_code == 404


def test_gateway_dashboard_links(dash_app: Flask) -> None:
    with dash_app.app_context():
        stripe = make_payment(gateway="stripe", gateway_payment_id="pi_123")
        razorpay = make_payment(gateway="razorpay", gateway_payment_id="pay_ABC")
        assert (
            gateway_dashboard_url(stripe, live=False)
            == "https://dashboard.stripe.com/test/payments/pi_123"
        )
        assert (
            gateway_dashboard_url(stripe, live=True)
            == "https://dashboard.stripe.com/payments/pi_123"
        )
        assert (
            gateway_dashboard_url(razorpay) == "https://dashboard.razorpay.com/app/payments/pay_ABC"
        )
        with dash_app.test_request_context():
            dash_app.config["STRIPE_SECRET_KEY"] = "sk_live_x"
            assert gateway_dashboard_url(stripe) == "https://dashboard.stripe.com/payments/pi_123"
            dash_app.config["STRIPE_SECRET_KEY"] = None


def test_refund_with_htmx_confirmation_then_live_status(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("admin")
    pid = sandbox_payment(dash_app, client, sku="tee-usd", quantity=2)
    page_url = f"/dashboard/payments/{pid}"
    page = client.get(page_url).get_data(as_text=True)
    # The amount defaults to what remains, in major units.
    assert re.search(r'<input[^>]*id="amount"[^>]*value="50.00"', page)
    token = form_token(page)
    headers = hx_headers(client, page_url)
    url = f"/dashboard/payments/{pid}/refund"
    data = {"amount": "12.50", "reason": "requested_by_customer", "token": token}

    review = client.post(url, data=data, headers=headers)
    html = review.get_data(as_text=True)
    assert review.status_code == 200 and "<html" not in html
    assert "Confirm the refund" in html and "$12.50" in html
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 0  # nothing happens before confirming

    confirmed = client.post(url, data={**data, "confirm": "yes"}, headers=headers)
    html = confirmed.get_data(as_text=True)
    assert confirmed.status_code == 200
    assert "Refund of $12.50 requested." in html
    # The refunds table and status panel come along out of band, polling while pending.
    assert re.search(r'<div id="refund-list" hx-swap-oob="true"\s+hx-get=', html)
    assert 'data-status="pending"' in html
    # A fresh form (new token) for the next refund, defaulting to what is left.
    assert form_token(html) != token
    assert re.search(r'<input[^>]*id="amount"[^>]*value="37.50"', html)

    # The same form submitted again (double click, retry): still one refund.
    again = client.post(url, data={**data, "confirm": "yes"}, headers=headers)
    assert again.status_code == 200 and "Refund of $12.50" in again.get_data(as_text=True)
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 1

    polled = client.get(f"/dashboard/payments/{pid}/refunds", headers=headers)
    assert polled.status_code == 200 and 'data-status="pending"' in polled.get_data(as_text=True)
    deliver_webhooks(dash_app, client)  # the gateway reports the refund succeeded
    polled = client.get(f"/dashboard/payments/{pid}/refunds", headers=headers)
    assert polled.status_code == 286
    assert 'data-status="succeeded"' in polled.get_data(as_text=True)
    status = client.get(f"/dashboard/payments/{pid}/status", headers=headers)
    body = status.get_data(as_text=True)
    assert status.status_code == 286
    assert 'data-status="partially_refunded"' in body
    assert re.search(r'data-amount="refunded">\$12\.50', body)
    assert re.search(r'data-amount="net">\$37\.50', body)


def test_refund_without_javascript_posts_and_redirects(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client, sku="mug-eur")
    page = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert csrf
    data = {
        "amount": "14.50",
        "reason": "duplicate",
        "token": form_token(page),
        "csrf_token": csrf.group(1),
    }
    url = f"/dashboard/payments/{pid}/refund"
    review = client.post(url, data=data)
    assert review.status_code == 200 and "<html" in review.get_data(as_text=True)
    assert "Confirm the refund" in review.get_data(as_text=True)
    done = client.post(url, data={**data, "confirm": "yes"})
    assert done.status_code == 303
    assert done.headers["Location"].endswith(f"/dashboard/payments/{pid}#refunds")
    html = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    assert "Refund of €14.50 requested." in html
    with dash_app.app_context():
        refund = db.session.execute(select(Refund)).scalar_one()
        assert refund.amount == 1450 and refund.reason == "duplicate"
        assert refund.requested_by.startswith("user:")


def test_refund_errors_are_shown_inline(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client, sku="tenugui-jpy")
    page_url = f"/dashboard/payments/{pid}"
    page = client.get(page_url).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="amount"[^>]*value="1800"', page)
    headers = hx_headers(client, page_url)
    url = f"/dashboard/payments/{pid}/refund"
    token = form_token(page)
    for amount, message in [
        ("1.5", "JPY has no minor unit: enter a whole amount"),
        ("1801", "At most ¥1,800 can still be refunded."),
        ("0", "Enter an amount greater than zero."),
        ("abc", "is not an amount"),
    ]:
        response = client.post(
            url, data={"amount": amount, "reason": "other", "token": token}, headers=headers
        )
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in html  # htmx swaps 2xx only
        assert message in html, amount
        assert 'aria-invalid="true"' in html and 'id="amount-error"' in html
    # Without htmx: the full page, 422.
    page_csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert page_csrf
    response = client.post(
        url,
        data={"amount": "1.5", "reason": "other", "token": token, "csrf_token": page_csrf.group(1)},
    )
    assert response.status_code == 422 and "<html" in response.get_data(as_text=True)
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 0


def test_refund_refused_by_the_core_is_shown_inline(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    """Two forms open at once: the second full refund finds nothing left."""
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client)
    page_url = f"/dashboard/payments/{pid}"
    first, second = (form_token(client.get(page_url).get_data(as_text=True)) for _ in "ab")
    headers = hx_headers(client, page_url)
    url = f"/dashboard/payments/{pid}/refund"
    data = {"amount": "25.00", "reason": "other", "confirm": "yes"}
    assert "requested" in client.post(url, data={**data, "token": first}, headers=headers).get_data(
        as_text=True
    )
    html = client.post(url, data={**data, "token": second}, headers=headers).get_data(as_text=True)
    assert "can still be refunded" in html and 'role="alert"' in html
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 1


def test_capture_an_authorized_payment_and_sync(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client, capture_method="manual")
    page_url = f"/dashboard/payments/{pid}"
    page = client.get(page_url).get_data(as_text=True)
    assert 'data-status="authorized"' in page and "Capture $25.00" in page
    # No refund form for an uncaptured payment.
    assert "Review refund" not in page
    headers = hx_headers(client, page_url)
    response = client.post(f"/dashboard/payments/{pid}/capture", headers=headers)
    html = response.get_data(as_text=True)
    assert response.status_code in (200, 286) and "Payment captured." in html
    assert 'id="payment-status"' in html and "<html" not in html
    deliver_webhooks(dash_app, client)
    with dash_app.app_context():
        payment = db.session.execute(select(Payment).where(Payment.public_id == pid)).scalar_one()
        assert payment.status == "succeeded"
    # Capturing again is refused inline (nothing to capture), not a crash.
    html = client.post(f"/dashboard/payments/{pid}/capture", headers=headers).get_data(as_text=True)
    assert "Only an authorized payment can be captured." in html and 'role="alert"' in html
    synced = client.post(f"/dashboard/payments/{pid}/sync", headers=headers)
    assert "Payment synced with the gateway." in synced.get_data(as_text=True)
    # Without htmx: 303 back to the page, with the message.
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert csrf
    response = client.post(f"/dashboard/payments/{pid}/sync", data={"csrf_token": csrf.group(1)})
    assert response.status_code == 303
    assert "Payment synced" in client.get(page_url).get_data(as_text=True)


def test_change_button_and_links_from_internal_ids(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client)
    headers = hx_headers(client, f"/dashboard/payments/{pid}")
    fresh = client.get(f"/dashboard/payments/{pid}/refund-form", headers=headers)
    html = fresh.get_data(as_text=True)
    assert fresh.status_code == 200 and "Review refund" in html and "<html" not in html
    assert client.get(f"/dashboard/payments/{pid}/refund-form").status_code == 302
    with dash_app.app_context():
        internal = db.session.execute(
            select(Payment.id).where(Payment.public_id == pid)
        ).scalar_one()
    response = client.get(f"/dashboard/payments/by-id/{internal}")
    assert response.status_code == 302 and response.headers["Location"].endswith(pid)
    assert client.get("/dashboard/payments/by-id/999999").status_code == 404


def test_in_flight_payment_panel_polls_until_final(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    dash_app.config["LIVE_UPDATES"] = False  # where no stream can be held: polling
    client = signed_in("viewer")
    with dash_app.app_context():
        pid = make_payment(status="processing").public_id
    html = client.get(f"/dashboard/payments/{pid}").get_data(as_text=True)
    panel = re.search(r'<section id="payment-status"[^>]*>', html)
    assert panel and 'hx-trigger="every 1s"' in panel.group(0)
    polled = client.get(f"/dashboard/payments/{pid}/status", headers={"HX-Request": "true"})
    assert polled.status_code == 200 and "Incomplete" in polled.get_data(as_text=True)
    with dash_app.app_context():
        db.session.execute(
            db.text(
                "UPDATE payments SET status='failed', "
                "failure_message='Your card was declined.' "
                "WHERE public_id=:p"
            ),
            {"p": pid},
        )
        db.session.commit()
    polled = client.get(f"/dashboard/payments/{pid}/status", headers={"HX-Request": "true"})
    assert polled.status_code == 286
    assert "Your card was declined." in polled.get_data(as_text=True)


def test_timeline_catches_up_when_a_refund_settles(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client)
    page_url = f"/dashboard/payments/{pid}"
    headers = hx_headers(client, page_url)
    token = form_token(client.get(page_url).get_data(as_text=True))
    html = client.post(
        f"/dashboard/payments/{pid}/refund",
        data={"amount": "5", "reason": "other", "token": token, "confirm": "yes"},
        headers=headers,
    ).get_data(as_text=True)
    assert html.count('id="timeline" hx-swap-oob="true"') == 1
    assert "refund.requested" in html
    pending = client.get(f"/dashboard/payments/{pid}/refunds", headers=headers)
    assert pending.status_code == 200 and 'id="timeline"' not in pending.get_data(as_text=True)
    deliver_webhooks(dash_app, client)
    settled = client.get(f"/dashboard/payments/{pid}/refunds", headers=headers)
    body = settled.get_data(as_text=True)
    assert settled.status_code == 286 and 'id="timeline" hx-swap-oob="true"' in body
    assert "refund.succeeded" in body


def test_typed_refund_amounts_follow_one_grammar_and_the_locale(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    """#23.9: "0,5" on a €14.50 payment was a €5.00 refund (commas dropped), "1_0" €10.00."""
    client = signed_in("owner")
    pid = sandbox_payment(dash_app, client, sku="mug-eur")
    page_url, url = f"/dashboard/payments/{pid}", f"/dashboard/payments/{pid}/refund"
    page = client.get(page_url, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="amount"[^>]*value="14.50"', page)
    assert "e.g. 12.50" in page
    headers = {**hx_headers(client, page_url), "Accept-Language": "en"}
    for typed in ["0,5", "1,5", "1_0", "1e3", "\u0661", "14,50"]:
        response = client.post(
            url,
            data={"amount": typed, "reason": "other", "token": form_token(page)},
            headers=headers,
        )
        html = response.get_data(as_text=True)
        assert "is not an amount" in html and "Confirm the refund" not in html, typed
    with dash_app.app_context():
        assert db.session.query(Refund).count() == 0

    # In German the page shows and reads a decimal comma: "0,5" is €0.50, never €5.00.
    german = {**hx_headers(client, page_url), "Accept-Language": "de"}
    page = client.get(page_url, headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert re.search(r'<input[^>]*id="amount"[^>]*value="14,50"', page)
    assert "z. B. 12,50" in page  # the dashboard speaks German too
    refused = client.post(
        url, data={"amount": "0.5", "reason": "other", "token": form_token(page)}, headers=german
    )
    # ...and says so in German, naming the separator to use.
    assert "ist kein Betrag: Verwenden Sie Ziffern und höchstens ein &#39;,&#39;" in (
        refused.get_data(as_text=True)
    )
    data = {"amount": "0,5", "reason": "other", "token": form_token(page)}
    review = client.post(url, data=data, headers=german).get_data(as_text=True)
    assert "Erstattung bestätigen" in review and "0,50" in review
    client.post(url, data={**data, "confirm": "yes"}, headers=german)
    with dash_app.app_context():
        refund = db.session.execute(select(Refund)).scalar_one()
        assert (refund.amount, refund.currency) == (50, "EUR")
