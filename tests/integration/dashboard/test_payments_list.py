"""The payments list: filters, search, sort, keyset pages, htmx swaps that keep the URL
in step, and rows that poll only while a payment is in flight."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from app.crypto import email_hash
from app.dashboard.queries import PaymentFilters, payment_page
from app.extensions import db
from tests.integration.dashboard.conftest import HX, make_payment

ROW = re.compile(r'<tr id="row-(pay_[A-Za-z0-9]+)"')


def rows(html: str) -> list[str]:
    return ROW.findall(html)


def test_filters_search_and_sort(dash_app: Flask, signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("viewer")
    now = datetime.now(UTC)
    with dash_app.app_context():
        usd = make_payment(currency="USD", created_at=now - timedelta(days=3)).public_id
        eur = make_payment(
            currency="EUR", amount=1450, status="failed", created_at=now - timedelta(days=2)
        ).public_id
        inr = make_payment(
            currency="INR",
            amount=49900,
            gateway="razorpay",
            email="raj@example.com",
            gateway_payment_id="pay_RzP123",
            created_at=now - timedelta(days=1),
        ).public_id
        # The email is encrypted: found through its blind index, like the search does.
        order_of_usd = (
            db.session.execute(
                db.select(db.text("orders.public_id"))
                .select_from(db.text("orders"))
                .where(db.text("orders.customer_email_hash = :h"))
                .params(h=email_hash("ann@example.com"))
            )
            .scalars()
            .first()
        )

    assert rows(client.get("/dashboard/payments").get_data(as_text=True)) == [inr, eur, usd]
    assert rows(client.get("/dashboard/payments?sort=oldest").get_data(as_text=True)) == [
        usd,
        eur,
        inr,
    ]
    assert rows(client.get("/dashboard/payments?status=failed").get_data(as_text=True)) == [eur]
    assert rows(client.get("/dashboard/payments?gateway=razorpay").get_data(as_text=True)) == [inr]
    assert rows(client.get("/dashboard/payments?currency=EUR").get_data(as_text=True)) == [eur]
    day = (now - timedelta(days=2)).date().isoformat()
    assert rows(client.get(f"/dashboard/payments?from={day}&to={day}").get_data(as_text=True)) == [
        eur
    ]
    # Search: payment id, gateway payment id, email (typed in any case), order id.
    for q, expected in [
        (eur, [eur]),
        ("pay_RzP123", [inr]),
        ("Raj@Example.COM", [inr]),
        ("raj@example.com", [inr]),
        (f"ref_{usd}", [usd]),
        ("nobody@example.com", []),
    ]:
        html = client.get("/dashboard/payments", query_string={"q": q}).get_data(as_text=True)
        assert rows(html) == expected, q
    assert order_of_usd
    html = client.get("/dashboard/payments", query_string={"q": order_of_usd}).get_data(
        as_text=True
    )
    assert usd in rows(html)
    # Nonsense in the URL is ignored, not a 500.
    response = client.get("/dashboard/payments?status=bogus&from=notadate&after=%%%")
    assert response.status_code == 200 and len(rows(response.get_data(as_text=True))) == 3


def test_keyset_pages_cover_every_row_once(dash_app: Flask) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with dash_app.app_context():
        # Ties on created_at are the hard case for keyset paging: id breaks them.
        made = [
            make_payment(created_at=base + timedelta(minutes=i // 3), commit=False)
            for i in range(23)
        ]
        db.session.commit()
        ids = [p.public_id for p in made]
        seen: list[str] = []
        page = payment_page(PaymentFilters(), limit=5)
        pages = [page]
        while page.next_cursor:
            page = payment_page(PaymentFilters(), after=page.next_cursor, limit=5)
            pages.append(page)
        for p in pages:
            seen += [x.public_id for x in p.payments]
        assert len(seen) == 23 and set(seen) == set(ids)
        # Newest first, ties broken by id descending.
        expected = [
            p.public_id for p in sorted(made, key=lambda x: (x.created_at, x.id), reverse=True)
        ]
        assert seen == expected
        # Walking back from the last page gives the previous pages, same rows, same order.
        back = payment_page(PaymentFilters(), before=pages[-1].prev_cursor, limit=5)
        assert [x.public_id for x in back.payments] == [x.public_id for x in pages[-2].payments]
        # Oldest-first paging too.
        older = payment_page(PaymentFilters(sort="oldest"), limit=10)
        nxt = payment_page(PaymentFilters(sort="oldest"), after=older.next_cursor, limit=10)
        assert [x.public_id for x in older.payments + nxt.payments] == expected[::-1][:20]


def test_pager_links_and_htmx_swap_keep_the_url_in_step(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("viewer")
    with dash_app.app_context():
        for i in range(55):
            make_payment(currency="EUR" if i % 2 else "USD", commit=False)
        db.session.commit()
    html = client.get("/dashboard/payments").get_data(as_text=True)
    assert len(rows(html)) == 50
    older = re.search(r'rel="next" href="([^"]+)"', html)
    assert older and "after=" in older.group(1)
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert len(rows(second)) == 5 and 'rel="prev"' in second
    # The filter form swaps only the results and tells htmx which URL to push.
    response = client.get("/dashboard/payments?q=&status=&currency=EUR&sort=", headers=HX)
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and 'id="payments-results"' in fragment
    assert len(rows(fragment)) == 27
    assert response.headers["HX-Push-Url"] == "/dashboard/payments?currency=EUR"
    # The export link in the results carries the same filters.
    assert 'href="/dashboard/payments/export.csv?currency=EUR"' in fragment
    # The form is a plain GET form too (no JavaScript needed) and pushes the URL.
    page = client.get("/dashboard/payments?currency=EUR").get_data(as_text=True)
    assert 'hx-push-url="true"' in page and '<option selected value="EUR">' in page


def test_only_in_flight_rows_poll_and_stop_when_final(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    dash_app.config["LIVE_UPDATES"] = False  # where no stream can be held: polling
    client = signed_in("viewer")
    with dash_app.app_context():
        moving = make_payment(status="processing").public_id
        done = make_payment(status="succeeded").public_id
    html = client.get("/dashboard/payments").get_data(as_text=True)
    moving_row = re.search(rf'<tr id="row-{moving}"[^>]*>', html, re.DOTALL)
    done_row = re.search(rf'<tr id="row-{done}"[^>]*>', html, re.DOTALL)
    assert moving_row and 'hx-trigger="every 2s"' in moving_row.group(0)
    assert done_row and "hx-trigger" not in done_row.group(0)
    response = client.get(f"/dashboard/payments/{moving}/row", headers=HX)
    assert response.status_code == 200 and 'data-status="processing"' in response.get_data(
        as_text=True
    )
    with dash_app.app_context():
        db.session.execute(
            db.text("UPDATE payments SET status='succeeded' WHERE public_id=:p"), {"p": moving}
        )
        db.session.commit()
    response = client.get(f"/dashboard/payments/{moving}/row", headers=HX)
    assert response.status_code == 286  # htmx stops polling
    row = response.get_data(as_text=True)
    assert 'data-status="succeeded"' in row and "hx-trigger" not in row
    # Without htmx the row URL is just the payment page.
    assert client.get(f"/dashboard/payments/{moving}/row").status_code == 302
