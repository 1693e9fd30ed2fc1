"""Behind a load balancer: trust its X-Forwarded-* headers, and only its.

With PROXY_FIX_HOPS=N (the number of proxies in front of the app that set the headers,
usually 1), the client address (rate limits, logs), scheme (https URLs, secure cookies),
host and port come from the forwarded headers of the last N hops. With 0 (the default,
direct serving) the headers are ignored, because anyone could send them.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def init_app(app: Flask) -> None:
    hops = int(app.config.get("PROXY_FIX_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
