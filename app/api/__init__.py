"""The JSON API door: /api/v1 (JSON in and out, API keys, idempotency keys) and /api/docs.

Routes parse with app/api/schemas.py, call one core function, and answer the envelope;
all errors under /api are JSON (app/api/errors.py).
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, Flask, Response, current_app, request
from flask_limiter.util import get_remote_address

from app.extensions import csrf, limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
docs_bp = Blueprint("api_docs", __name__, url_prefix="/api")
# Bearer keys, no cookies: nothing for a cross-site form to ride on.
csrf.exempt(bp)


def rate_limit_key() -> str:
    """Per API key when one is sent (by its public prefix), else per client address."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return "key:" + hashlib.sha256(header[7:].strip()[:18].encode()).hexdigest()[:24]
    return "addr:" + (get_remote_address() or "unknown")


limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=rate_limit_key, scope="api")(
    bp
)

from app.api import docs, errors, routes  # noqa: F401  (routes register on bp)

errors.register(bp)


@bp.after_request
def no_store(response: Response) -> Response:
    """Answers carry customers' emails, names and payment details: no cache keeps them
    (errors included; the dashboard's pages do the same)."""
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(docs_bp)
    from app.api import cli

    cli.init_app(app)
