"""Expiry expires every due order, in bounded batches, and says what is left when a run
has to stop (issue 23 item 8: one run stopped at 200 of 230 and said nothing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, insert, select

from app.extensions import db
from app.models import Order
from app.models.base import utcnow
from app.payments.reconcile import expire_due, expire_overdue

OVERDUE = 230


def _overdue_orders(app: Flask, count: int) -> None:
    now = utcnow()
    with app.app_context():
        db.session.execute(
            insert(Order),
            [
                {
                    "currency": "USD",
                    "total_amount": 100,
                    "customer_email": f"c{i}@example.com",
                    "customer_name": "C",
                    "status": "pending",
                    "stock_reserved": False,
                    # Many share one expiry time: the batches must still reach each of them.
                    "expires_at": now - timedelta(minutes=1 + i % 3),
                }
                for i in range(count)
            ],
        )
        db.session.commit()


def _pending(app: Flask) -> int:
    with app.app_context():
        n = db.session.execute(
            select(func.count(Order.id)).where(Order.status == "pending")
        ).scalar_one()
        db.session.rollback()
        return int(n)


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_one_periodic_run_expires_all_230_overdue_orders(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    _overdue_orders(app, OVERDUE)
    with app.app_context():
        assert expire_overdue() == OVERDUE
    assert _pending(app) == 0


def test_small_batches_reach_every_due_order(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    _overdue_orders(app, 23)
    with app.app_context():
        run = expire_due(batch=5)
    assert (run.expired, run.left, run.stopped) == (23, 0, False)
    assert _pending(app) == 0


def test_a_run_that_must_stop_reports_what_is_left(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    _overdue_orders(app, 30)
    with app.app_context():
        run = expire_due(batch=10, max_seconds=0)  # stops after its first order
    assert (run.expired, run.left, run.stopped) == (1, 29, True)
    assert run.lines()[1].startswith("29 overdue order(s) still pending")


def test_the_command_expires_all_and_reports(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    _overdue_orders(app, OVERDUE)
    result = app.test_cli_runner().invoke(args=["expire-checkouts"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Expired {OVERDUE} order(s)."
    assert _pending(app) == 0
