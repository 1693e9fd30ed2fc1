"""Domain errors and HTTP errors become responses here, in one place.

Blueprints that speak JSON (the API) register their own handlers for their prefix;
everything else gets a plain page (or a fragment for htmx requests).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.payments.errors import KassaError


def init_app(app: Flask) -> None:
    from app.api import errors as api_errors

    @app.errorhandler(KassaError)
    def domain_error(exc: KassaError) -> Any:
        if api_errors.is_api_request():
            return api_errors.kassa_error_response(exc)
        return render_template(
            "errors/error.html",
            title="Something went wrong",
            message=exc.message,
            status=exc.http_status,
        ), exc.http_status

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[str, int]:
        return render_template(
            "errors/error.html",
            title="Please try again",
            message="This form expired or was sent from another site, so nothing was done. "
            "Go back, reload the page and send it again.",
            status=400,
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if api_errors.is_api_request():  # /api speaks JSON only, even when no route matched
            return api_errors.http_error_response(exc)
        if request.path.startswith("/webhooks/"):
            return f"{exc.name}\n", status
        return render_template(
            "errors/error.html", title=exc.name, message=exc.description, status=status
        ), status

    @app.errorhandler(500)
    def server_error(exc: Exception) -> Any:
        if api_errors.is_api_request():
            return api_errors.server_error_response()
        return render_template(
            "errors/error.html",
            title="Server error",
            message="Something went wrong on our side. Nothing was charged "
            "twice; please try again.",
            status=500,
        ), 500
