"""HTTP serving: trusted proxy headers, and gzip for static files.

Proxies: with PROXY_FIX_HOPS=N (the number of proxies in front of the app that set the
headers, usually 1), the client address (rate limits, logs), scheme (https URLs, secure
cookies), host and port come from the forwarded headers of the last N hops. With 0 (the
default, direct serving) the headers are ignored, because anyone could send them.

Compression: static files (htmx is ~50 KB raw, ~16 KB gzipped) are sent gzipped to
clients that accept it, compressed once per file version and kept in memory. Pages are
not compressed on purpose: an HTML page holds the CSRF token next to text the visitor
typed, the pattern the BREACH attack exploits over TLS. STATIC_GZIP=false when a proxy
in front compresses already.
"""

from __future__ import annotations

import gzip
import threading

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

COMPRESSIBLE = {
    "text/css",
    "text/javascript",
    "application/javascript",
    "image/svg+xml",
    "text/plain",
    "application/json",
}
MIN_SIZE = 1024


def init_app(app: Flask) -> None:
    hops = int(app.config.get("PROXY_FIX_HOPS") or 0)
    if hops > 0:
        # Flask's documented way to add WSGI middleware; mypy sees wsgi_app as a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
    if app.config.get("STATIC_GZIP", True):
        _static_gzip(app)


def _static_gzip(app: Flask) -> None:
    cache: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()

    @app.after_request
    def gzip_static(response: Response) -> Response:
        if request.endpoint != "static":
            return response
        response.vary.add("Accept-Encoding")
        if (
            response.status_code != 200
            or response.mimetype not in COMPRESSIBLE
            or "gzip" not in request.headers.get("Accept-Encoding", "").lower()
            or "Content-Encoding" in response.headers
        ):
            return response
        etag, _weak = response.get_etag()
        key = (request.path, etag or "")
        original = response.response  # the open file: closed below, whatever happens
        try:
            with lock:
                body = cache.get(key)
            response.direct_passthrough = False
            if body is None:
                raw = response.get_data()
                if len(raw) < MIN_SIZE:
                    return response
                body = gzip.compress(raw, compresslevel=9, mtime=0)
                with lock:
                    cache[key] = body
            response.set_data(body)
        finally:
            close = getattr(original, "close", None)
            if close is not None:
                close()
        response.headers["Content-Encoding"] = "gzip"
        if etag:
            # Another representation, another validator.
            response.set_etag(f"{etag}-gzip")
        return response
