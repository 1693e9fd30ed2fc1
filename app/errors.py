"""Domain errors and HTTP errors become responses here, in one place.

Blueprints that speak JSON (the API) register their own handlers for their prefix;
everything else gets a plain page (or a fragment for htmx requests).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from app.inputs import unstorable
from app.payments.errors import KassaError

log = logging.getLogger(__name__)

# Werkzeug's stock sentences ("The requested URL was not found on the server. If you
# entered the URL manually...") read like a server log; say it as a shop would.
PLAIN_WORDS = {
    400: ("Something was wrong with that request", "Nothing was changed. Go back and try again."),
    403: ("Not allowed", "Your account cannot open this page. Ask the store's owner for access."),
    404: (
        "Page not found",
        "There is nothing at this address. Check the link, or start again from the shop.",
    ),
    405: ("That didn't work", "This page cannot be used that way. Go back and try again."),
}


UNSTORABLE_MESSAGE = (
    "The request holds a character that cannot be stored (a NUL byte or an unpaired "
    "surrogate). Nothing was changed."
)
# Bodies read raw (signatures are checked over the exact bytes): never parsed as forms here.
_RAW_BODY_PREFIXES = ("/webhooks/", "/api/")


def _unstorable_input() -> tuple[int, str, str] | None:
    """(status, where, name) of the first path segment, query parameter or form field that
    no database here can store; None when everything can be."""
    if unstorable(request.path):
        return 404, "path", ""
    for key, value in request.args.items(multi=True):
        if unstorable(key) or unstorable(value):
            return 400, "query", key
    if (
        request.method not in ("GET", "HEAD", "OPTIONS")
        and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
        and not request.path.startswith(_RAW_BODY_PREFIXES)
    ):
        for key, value in request.form.items(multi=True):
            if unstorable(key) or unstorable(value):
                return 400, "form", key
    return None


def _page(status: int, title: str, message: str) -> Response:
    """The error as a page, or as the fragment alone for an htmx swap."""
    template = (
        "errors/_error.html"
        if request.headers.get("HX-Request") == "true" and not request.headers.get("HX-Boosted")
        else "errors/error.html"
    )
    return make_response(
        render_template(template, title=title, message=message, status=status), status
    )


def init_app(app: Flask) -> None:
    from app.api import errors as api_errors

    def refuse_unstorable_input() -> Response | None:
        """One guard for every door: a path, query string or form that cannot be stored
        is refused before any view (or the database) sees it, the same on both databases:
        404 for a path (nothing can live there), 400 otherwise."""
        found = _unstorable_input()
        if found is None:
            return None
        status, where, name = found
        if api_errors.is_api_request():
            if status == 404:
                return api_errors.error_response(
                    404, "not_found", "Nothing here: check the path (see /api/v1/openapi.json)."
                )
            return api_errors.error_response(
                400,
                "validation_error",
                UNSTORABLE_MESSAGE,
                [{"field": name, "in": where, "message": "contains NUL or a lone surrogate"}],
            )
        if status == 404:
            return _page(404, *PLAIN_WORDS[404])
        return _page(400, PLAIN_WORDS[400][0], UNSTORABLE_MESSAGE)

    # Early, right after the request id: before CSRF, sign-in checks and every view.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_unstorable_input)

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
        title, message = PLAIN_WORDS.get(status, (exc.name, exc.description))
        return render_template(
            "errors/error.html", title=title, message=message, status=status
        ), status

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.TimeoutError)
    def database_unavailable(exc: Exception) -> Any:
        """The database did not answer in time (app/config.py's timeouts, app/db.py's
        watchdog, the pool's wait): a clear 503, never a hung request."""
        log.error("database unavailable: %s", type(exc).__name__)
        headers = {"Retry-After": "5"}
        if api_errors.is_api_request():
            return api_errors.error_response(
                503,
                "database_unavailable",
                "The database is not answering. Retry shortly; retrying with the same "
                "Idempotency-Key is safe.",
                headers=headers,
            )
        if request.path.startswith("/webhooks/"):
            return "Service Unavailable\n", 503, headers
        return (
            render_template(
                "errors/error.html",
                title="Temporarily unavailable",
                message="We cannot reach our records right now, so nothing was changed. "
                "Please try again in a minute.",
                status=503,
            ),
            503,
            headers,
        )

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
