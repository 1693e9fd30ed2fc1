"""POST /webhooks/<gateway>: raw body, verify, record (stop if seen), enqueue, 2xx.

CSRF-exempt (gateways sign instead) and never rate-limited; nothing is parsed before
the signature checks out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import cast

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from app.extensions import csrf
from app.gateways.base import SignatureError
from app.payments import events
from app.payments.errors import GatewayNotAvailable

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)
log = logging.getLogger(__name__)


@bp.post("/<gateway>")
def receive(gateway: str) -> tuple[Response, int]:
    """Accept one gateway event."""
    body = request.get_data(cache=False)
    try:
        # Werkzeug's Headers: a case-insensitive str -> str mapping (typeshed does not say so).
        headers = cast(Mapping[str, str], request.headers)
        stored, _event_id = events.receive(gateway, body, headers)
    except GatewayNotAvailable:
        return jsonify(error="unknown gateway"), 404
    except SignatureError as exc:
        log.warning("webhook rejected", extra={"gateway": gateway, "reason": str(exc)})
        return jsonify(error="invalid signature"), 400
    return jsonify(received=True, duplicate=not stored), 200
