"""Template filters and globals."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app

from app.money import format_minor
from app.presentation import payment_status, return_heading, status_label


def init_app(app: Flask) -> None:
    @app.template_filter("money")
    def money(amount_minor: int, currency: str) -> str:
        return format_minor(amount_minor, currency)

    app.add_template_filter(status_label, "status_label")
    app.add_template_filter(payment_status, "payment_status")

    @app.template_filter("when")
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""

    @app.context_processor
    def store() -> dict[str, object]:
        return {"store_name": current_app.config["STORE_NAME"]}

    from app.payments.status import headline, is_settled

    app.jinja_env.globals.update(
        order_headline=headline, order_settled=is_settled, return_heading=return_heading
    )
