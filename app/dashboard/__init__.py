"""The merchant dashboard: pages under /dashboard/ and their htmx partials."""

from __future__ import annotations

from flask import Blueprint

from app.i18n import N_

# Statuses the templates show capitalised (deliveries, refunds, fulfilment) and translate.
STATUS_WORDS = (
    N_("Pending"),
    N_("Delivered"),
    N_("Failed"),
    N_("Dead"),
    N_("Succeeded"),
    N_("Canceled"),
    N_("Unfulfilled"),
    N_("Fulfilled"),
)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from app.dashboard import (  # noqa: F401  (registers the views)
    customers,
    endpoints,
    routes,
    subscriptions,
)
