"""Helpers for tests that run Kassa against the fake Razorpay API.

Apps come from the shared `make_app` (tests/conftest.py: this test's migrated database,
instance path in tmp, the area's settings); these helpers add the Razorpay settings, a small catalog and a way to start an attempt through the core.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import Payment, Product
from app.payments import checkout
from app.payments.audit import CUSTOMER
from app.payments.orders import ItemRequest
from tests.fakes.razorpay_api import FakeRazorpay

PRODUCTS = [
    ("notebook-inr", "Dot-grid notebook", 49900, "INR"),
    ("tenugui-jpy", "Tenugui towel", 1800, "JPY"),
    ("incense-kwd", "Oud incense", 12340, "KWD"),
]


def razorpay_config(fake: FakeRazorpay, **overrides: Any) -> dict[str, Any]:
    """Settings that make Razorpay the only gateway, talking to `fake`."""
    return {
        "SANDBOX_ENABLED": False,
        "RAZORPAY_KEY_ID": fake.key_id,
        "RAZORPAY_KEY_SECRET": fake.key_secret,
        "RAZORPAY_WEBHOOK_SECRET": fake.webhook_secret,
        "RAZORPAY_API_BASE": fake.url,
        "RAZORPAY_CHECKOUT_JS": f"{fake.url}/v1/checkout.js",
        # On, whatever the fixture's default: Razorpay's POST to the callback has no token.
        "WTF_CSRF_ENABLED": True,
        **overrides,
    }


def add_products() -> None:
    """The catalog (inside an app context); skus the app already has are kept."""
    have = set(db.session.execute(select(Product.sku)).scalars())
    for sku, name, amount, currency in PRODUCTS:
        if sku in have:
            continue
        db.session.add(
            Product(
                sku=sku,
                name=name,
                description=name,
                unit_amount=amount,
                currency=currency,
                stock=None,
                active=True,
            )
        )
    db.session.commit()


def start_checkout(sku: str = "notebook-inr", quantity: int = 1) -> Payment:
    """Order + Razorpay attempt through the core (inside a request context)."""
    return checkout.create_checkout(
        [ItemRequest(sku, quantity)], "asha@example.com", "Asha", "razorpay", CUSTOMER
    )
