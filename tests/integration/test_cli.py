"""flask seed-demo and create-merchant."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from app.extensions import db
from app.models import Plan, Product, User


def test_seed_demo_is_idempotent_and_prints_the_password(make_app: Callable[..., Flask]) -> None:
    app = make_app()  # already seeded once
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0
    assert "0 product(s) added (5 already there); 2 plan(s) added" in result.output
    again = runner.invoke(args=["seed-demo"])
    assert "0 plan(s) added (2 already there)" in again.output
    password = result.output.split("password: ")[1].split()[0]
    storefront = app.test_client().get("/").get_data(as_text=True)
    assert "Coffee club" in storefront and "/plans/" in storefront
    with app.app_context():
        assert db.session.execute(select(func.count(Product.id))).scalar_one() == 5
        currencies = set(db.session.execute(select(Product.currency)).scalars())
        assert currencies == {"USD", "EUR", "INR", "JPY"}
        plans = db.session.execute(select(Plan.name, Plan.currency).order_by(Plan.id)).all()
        assert [tuple(p) for p in plans] == [("Coffee club", "EUR"), ("Monthly zine", "INR")]
        user = db.session.execute(select(User)).scalar_one()
        assert user.role == "owner" and check_password_hash(user.password_hash, password)


def test_create_merchant_with_and_without_prompt(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    runner = app.test_cli_runner()
    ok = runner.invoke(
        args=[
            "create-merchant",
            "Viewer@Example.com",
            "--role",
            "viewer",
            "--password",
            "correct horse battery",
        ]
    )
    assert ok.exit_code == 0 and "viewer@example.com (viewer)" in ok.output
    short = runner.invoke(args=["create-merchant", "x@example.com", "--password", "short"])
    assert short.exit_code != 0 and "at least 12" in short.output
    prompted = runner.invoke(
        args=["create-merchant", "admin@example.com", "--role", "admin"],
        input="another long password\nanother long password\n",
    )
    assert prompted.exit_code == 0
    with app.app_context():
        roles = dict(db.session.execute(select(User.email, User.role)).all())
        assert roles["viewer@example.com"] == "viewer" and roles["admin@example.com"] == "admin"
        assert "x@example.com" not in roles
