"""A WSGI app whose every request waits on a slow upstream HTTP call, as a checkout waits on
its gateway (tests/integration/test_gunicorn_default.py)."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with urllib.request.urlopen(os.environ["UPSTREAM_URL"], timeout=30) as upstream:
        body = upstream.read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
