"""Helpers for tests that run Kassa against the fake PayPal API.

Apps come from the shared `make_app` fixture (migrated, seeded database); these helpers add
the PayPal settings, route PayPal's certificate host to the fake (the adapter fetches
webhook certificates only from https://api.sandbox.paypal.com and friends) and start
attempts through the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Payment, Product
from app.payments import checkout
from app.payments.audit import CUSTOMER
from app.payments.orders import ItemRequest
from tests.fakes.paypal_api import FakePayPal, route_paypal_hosts

PRODUCTS = [
    ("mug-usd", "Enamel mug", 2500, "USD"),
    ("tenugui-jpy", "Tenugui towel", 1800, "JPY"),
    ("paprika-huf", "Paprika tin", 190000, "HUF"),
    ("oud-kwd", "Oud incense", 12340, "KWD"),
]


def paypal_config(fake: FakePayPal, ca_file: Path, **overrides: Any) -> dict[str, Any]:
    """Settings that make PayPal the only gateway, talking to `fake`, trusting its root."""
    ca_file.write_bytes(fake.bundle.root_pem)
    return {
        "SANDBOX_ENABLED": False,
        "PAYPAL_CLIENT_ID": fake.client_id,
        "PAYPAL_CLIENT_SECRET": fake.client_secret,
        "PAYPAL_WEBHOOK_ID": fake.webhook_id,
        "PAYPAL_API_BASE": fake.url,
        "PAYPAL_WEBHOOK_CA_FILE": str(ca_file),
        "GATEWAY_BACKOFF_SECONDS": 0.01,
        "GATEWAY_BACKOFF_MAX_SECONDS": 0.05,
        **overrides,
    }


def route_certificates(app: Flask, fake: FakePayPal) -> None:
    """Send the app's certificate fetches for PayPal's host to the fake (transport only)."""
    gateway = app.extensions["kassa_gateways"]["paypal"]
    route_paypal_hosts(gateway.inner.cert_session, fake.url)


def add_products() -> None:
    have = set(db.session.execute(select(Product.sku)).scalars())
    for sku, name, amount, currency in PRODUCTS:
        if sku not in have:
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


def start_checkout(sku: str = "mug-usd", quantity: int = 1) -> Payment:
    """Order + PayPal attempt through the core (inside a request context)."""
    return checkout.create_checkout(
        [ItemRequest(sku, quantity)], "asha@example.com", "Asha", "paypal", CUSTOMER
    )
