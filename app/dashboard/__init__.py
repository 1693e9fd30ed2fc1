"""The merchant dashboard: pages under /dashboard/ and their htmx partials."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from app.dashboard import endpoints, routes, subscriptions  # noqa: F401  (registers the views)
