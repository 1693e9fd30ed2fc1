"""A Kassa app wired to the fake Razorpay API, for integration and browser tests.

SQLite in a tmp directory (the core supports it with BEGIN IMMEDIATE); the instance
path is moved to tmp as well so receipts never land in the worktree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.extensions import db
from app.models import Payment, Product
from app.payments import checkout
from app.payments.audit import CUSTOMER
from app.payments.orders import ItemRequest
from tests.fakes.razorpay_api import FakeRazorpay

PRODUCTS = [("notebook-inr", "Dot-grid notebook", 49900, "INR"),
            ("tenugui-jpy", "Tenugui towel", 1800, "JPY"),
            ("incense-kwd", "Oud incense", 12340, "KWD")]


def make_app(tmp_path: Path, fake: FakeRazorpay, monkeypatch: pytest.MonkeyPatch,
             **overrides: Any) -> Flask:
    # load_settings() would otherwise write a secret key into the worktree's instance/.
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-" + "x" * 32)
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'kassa.db'}",
        "PUBLIC_BASE_URL": "http://localhost",
        "SANDBOX_ENABLED": False,
        "JOBS_EAGER": True,
        "RATELIMIT_ENABLED": False,
        "RAZORPAY_KEY_ID": fake.key_id,
        "RAZORPAY_KEY_SECRET": fake.key_secret,
        "RAZORPAY_WEBHOOK_SECRET": fake.webhook_secret,
        "RAZORPAY_API_BASE": fake.url,
        "RAZORPAY_CHECKOUT_JS": f"{fake.url}/v1/checkout.js",
        **overrides,
    }
    app = create_app(config)
    app.instance_path = str(tmp_path / "instance")
    with app.app_context():
        db.create_all()
        for sku, name, amount, currency in PRODUCTS:
            db.session.add(Product(sku=sku, name=name, description=name, unit_amount=amount,
                                   currency=currency, stock=None, active=True))
        db.session.commit()
    return app


@contextmanager
def running_fake() -> Iterator[FakeRazorpay]:
    with FakeRazorpay().running() as fake:
        yield fake


def start_checkout(sku: str = "notebook-inr", quantity: int = 1) -> Payment:
    """Order + Razorpay attempt through the core (inside an app context)."""
    return checkout.create_checkout([ItemRequest(sku, quantity)], "asha@example.com", "Asha",
                                    "razorpay", CUSTOMER)
