"""Customers in the dashboard: a customer who saved their card at checkout is listed with
it; the merchant charges it (a confirmation step first; a double submit charges once),
sees declines on the form, and removes a method."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import Payment, SavedPaymentMethod
from tests.integration.api.conftest import complete_at_sandbox
from tests.integration.dashboard.conftest import CSRF_FIELD, csrf_token

KEY = re.compile(r'id="key" name="key" type="hidden" value="([^"]+)"')


def buy_and_save(app: Flask, scenario: str = "succeed", save: bool = True) -> str:
    """A customer buys on the shop's product page, ticking "save"; the sandbox session."""
    shop = app.test_client()
    page = shop.get("/products/tee-usd").get_data(as_text=True)
    assert "Save this payment method for future purchases" in page
    assert 'name="save_payment_method" type="checkbox" value="y"' in page  # unticked
    assert "you can remove it at any time" in page  # the consent text is shown
    token = CSRF_FIELD.search(page)
    assert token
    form = {
        "csrf_token": token.group(1),
        "email": "ann@example.com",
        "name": "Ann Lee",
        "quantity": "1",
        "gateway": "sandbox",
    }
    if save:
        form["save_payment_method"] = "y"
    response = shop.post("/products/tee-usd", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    session_id = response.headers["Location"].rsplit("/", 1)[-1]
    complete_at_sandbox(app, session_id, scenario)
    return session_id


def customer_path(client: FlaskClient) -> str:
    listing = client.get("/dashboard/customers").get_data(as_text=True)
    match = re.search(r'href="(/dashboard/customers/cus_[A-Za-z0-9]+)"', listing)
    assert match, listing
    return match.group(1)


def charges(app: Flask) -> int:
    with app.app_context():
        return int(
            db.session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.saved_method_id.is_not(None))
            )
            or 0
        )


def test_without_consent_nothing_is_saved(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    buy_and_save(dash_app, save=False)
    client = signed_in("owner")
    page = client.get(customer_path(client)).get_data(as_text=True)
    assert "No saved methods" in page
    with dash_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SavedPaymentMethod)) == 0


def test_merchant_charges_a_saved_method_after_confirming_and_a_resend_charges_once(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    buy_and_save(dash_app)
    client = signed_in("owner")
    path = customer_path(client)
    page = client.get(path).get_data(as_text=True)
    assert "Visa •••• 4242" in page and "Ann Lee" in page
    charge_link = re.search(r'href="(/dashboard/customers/[^"]+/charge)"', page)
    assert charge_link
    form_page = client.get(charge_link.group(1)).get_data(as_text=True)
    key = KEY.search(form_page)
    assert key
    fields = {
        "csrf_token": csrf_token(client, charge_link.group(1)),
        "key": key.group(1),
        "amount": "19.99",
        "currency": "USD",
        "description": "Refill",
    }
    bad = client.post(charge_link.group(1), data={**fields, "amount": "0.00"})
    assert bad.status_code == 422 and "greater than zero" in bad.get_data(as_text=True)
    review = client.post(charge_link.group(1), data=fields)
    assert review.status_code == 200
    text = review.get_data(as_text=True)
    assert "Charge <strong>$19.99</strong> to Visa •••• 4242" in text
    assert charges(dash_app) == 0  # nothing charged before the confirmation
    confirmed = {**fields, "confirmed": "yes"}
    done = client.post(charge_link.group(1), data=confirmed)
    assert done.status_code == 303
    assert "/dashboard/payments/pay_" in done.headers["Location"]
    again = client.post(charge_link.group(1), data=confirmed)  # a double submit
    assert again.status_code == 303 and again.headers["Location"] == done.headers["Location"]
    assert charges(dash_app) == 1
    payment_page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "Succeeded" in payment_page
    assert "$19.99" in client.get(path).get_data(as_text=True)


def test_a_decline_is_shown_on_the_form(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    buy_and_save(dash_app, scenario="save_then_decline")
    client = signed_in("admin")
    page = client.get(customer_path(client)).get_data(as_text=True)
    charge_link = re.search(r'href="(/dashboard/customers/[^"]+/charge)"', page)
    assert charge_link
    form_page = client.get(charge_link.group(1)).get_data(as_text=True)
    key = KEY.search(form_page)
    assert key
    response = client.post(
        charge_link.group(1),
        data={
            "csrf_token": csrf_token(client, charge_link.group(1)),
            "key": key.group(1),
            "amount": "5.00",
            "currency": "USD",
            "description": "Refill",
            "confirmed": "yes",
        },
    )
    assert response.status_code == 402
    assert "Your card was declined." in response.get_data(as_text=True)


def test_viewers_cannot_charge_and_owners_remove_methods(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    buy_and_save(dash_app)
    viewer = signed_in("viewer")
    path = customer_path(viewer)
    assert "Charge this method" not in viewer.get(path).get_data(as_text=True)
    owner = signed_in("owner")
    page = owner.get(path).get_data(as_text=True)
    remove = re.search(r'action="(/dashboard/customers/[^"]+/remove)"', page)
    assert remove
    token = CSRF_FIELD.search(page)
    assert token
    viewer_token = csrf_token(viewer, path)
    assert viewer.post(remove.group(1), data={"csrf_token": viewer_token}).status_code == 403
    gone = owner.post(remove.group(1), data={"csrf_token": token.group(1)})
    assert gone.status_code == 303
    assert "No saved methods" in owner.get(path).get_data(as_text=True)


def _add_customers(app: Flask, count: int) -> None:
    from app.payments.customers import match_customer
    from app.payments.uow import unit_of_work

    with app.app_context():
        for i in range(count):
            with unit_of_work():
                match_customer(f"shopper{i:02d}@example.com", f"Shopper {i:02d}")


def test_the_customer_list_comes_a_page_at_a_time(
    dash_app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    _add_customers(dash_app, 53)
    client = signed_in("viewer")
    first = client.get("/dashboard/customers").get_data(as_text=True)
    rows = re.findall(r"shopper(\d\d)@example.com", first)
    assert rows == [f"{i:02d}" for i in range(52, 2, -1)]  # 50, newest first
    older = re.search(r'href="(/dashboard/customers\?before=\d+)"[^>]*>Older<', first)
    assert older, first
    assert ">Newest<" not in first
    second = client.get(older.group(1)).get_data(as_text=True)
    assert re.findall(r"shopper(\d\d)@example.com", second) == ["02", "01", "00"]
    assert ">Older<" not in second and ">Newest<" in second
    # An exact email finds one customer, any letter case.
    found = client.get("/dashboard/customers?email=SHOPPER07@example.com").get_data(as_text=True)
    assert re.findall(r"shopper(\d\d)@example.com", found) == ["07"]
    missing = client.get("/dashboard/customers?email=nobody@example.com").get_data(as_text=True)
    assert "No customer has this email." in missing
    assert client.get("/dashboard/customers?before=99999999999").status_code == 400
