"""Template filters and globals."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Flask, current_app, url_for
from flask_babel import format_datetime, gettext, ngettext

from app.i18n import current_locale
from app.methods import describe
from app.money import format_minor
from app.presentation import access_reason, payment_status, return_heading, status_label


def cart_count() -> int:
    """Units in the customer's cart, for the header."""
    from app.checkout.cart import count

    return count()


def init_app(app: Flask) -> None:
    @app.template_filter("money")
    def money(amount_minor: int, currency: str) -> str:
        # Formatted for the reader's language: $25.00, 25,00 $, $25.00 (hi: ₹ groups).
        return format_minor(amount_minor, currency, current_locale())

    app.add_template_filter(status_label, "status_label")
    app.add_template_filter(lambda r: gettext(access_reason(r or "")), "access_reason")
    app.add_template_filter(payment_status, "payment_status")

    @app.template_filter("local_when")
    def local_when(value: datetime | None) -> str:
        """A date and time in the reader's language (customer pages and emails), UTC."""
        return f"{format_datetime(value, 'medium')} UTC" if value else ""

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
        return {
            "store_name": current_app.config["STORE_NAME"],
            "cart_count": cart_count,
            # Widgets refresh on the page's event stream, or poll when streams are off.
            "live_updates": bool(current_app.config.get("LIVE_UPDATES", True)),
        }

    static = Path(app.static_folder or "static")

    @lru_cache(maxsize=1024)
    def product_image(sku: str) -> str | None:
        """The product's picture: static/products/<sku>.svg|.png|.jpg when one ships."""
        for ext in ("svg", "png", "jpg", "webp"):
            if (static / "products" / f"{sku}.{ext}").is_file():
                return url_for("static", filename=f"products/{sku}.{ext}")
        return None

    app.jinja_env.globals["product_image"] = product_image

    def plan_every(plan: Any) -> str:
        """ "every month", "every 3 weeks": how often a plan is billed, in the reader's
        language."""
        count = int(plan.interval_count)
        words = {
            "day": lambda: ngettext("every day", "every %(num)d days", count),
            "week": lambda: ngettext("every week", "every %(num)d weeks", count),
            "month": lambda: ngettext("every month", "every %(num)d months", count),
            "year": lambda: ngettext("every year", "every %(num)d years", count),
        }
        unit = str(plan.interval)
        return str(words[unit]()) if unit in words else f"every {count} {unit}"

    app.jinja_env.globals["plan_every"] = plan_every

    from app.models.enums import ORDER_PAID, REFUNDABLE
    from app.payments.status import headline, is_settled

    app.jinja_env.globals.update(
        order_headline=headline,
        order_settled=is_settled,
        # Status sets, from beside their enums (never spelled out in a template).
        ORDER_PAID=ORDER_PAID,
        REFUNDABLE=REFUNDABLE,
        return_heading=return_heading,
    )
