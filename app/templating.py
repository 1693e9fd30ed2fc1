"""Template filters and globals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Flask, current_app

from app.methods import describe
from app.money import format_minor

STATUS_LABELS = {
    "pending": "Awaiting payment",
    "paid": "Paid",
    "partially_refunded": "Partially refunded",
    "refunded": "Refunded",
    "canceled": "Canceled",
    "expired": "Expired",
    "failed": "Payment failed",
    "created": "Created",
    "processing": "Processing",
    "authorized": "Authorized",
    "succeeded": "Succeeded",
}


def init_app(app: Flask) -> None:
    @app.template_filter("money")
    def money(amount_minor: int, currency: str) -> str:
        return format_minor(amount_minor, currency)

    @app.template_filter("status_label")
    def status_label(status: str) -> str:
        return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())

    @app.template_filter("method_label")
    def method_label(details: Mapping[str, Any] | None) -> str:
        return describe(details)

    @app.template_filter("iso_when")
    def iso_when(value: str | None) -> str:
        try:
            return when(datetime.fromisoformat(value)) if value else ""
        except ValueError:
            return ""

    @app.template_filter("when")
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""

    @app.context_processor
    def store() -> dict[str, object]:
        return {"store_name": current_app.config["STORE_NAME"]}

    from app.payments.status import headline, is_settled

    app.jinja_env.globals.update(order_headline=headline, order_settled=is_settled)
