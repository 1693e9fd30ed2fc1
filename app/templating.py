"""Template filters and globals."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app

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

    @app.template_filter("when")
    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""

    @app.context_processor
    def store() -> dict[str, object]:
        return {
            "store_name": current_app.config["STORE_NAME"],
            # Widgets refresh on the page's event stream, or poll when streams are off.
            "live_updates": bool(current_app.config.get("LIVE_UPDATES", True)),
        }

    from app.models.enums import ORDER_PAID, REFUNDABLE
    from app.payments.status import headline, is_settled

    app.jinja_env.globals.update(
        order_headline=headline,
        order_settled=is_settled,
        # Status sets, from beside their enums (never spelled out in a template).
        ORDER_PAID=ORDER_PAID,
        REFUNDABLE=REFUNDABLE,
    )
