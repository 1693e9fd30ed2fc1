"""Serving: how requests reach the app, not what it does with them.

- http.py: trusted proxy headers, gzip for static files
- admission.py: the line of running requests, and stepping out of it while a request
  waits on a gateway (applied at start-up to the gateways, never imported by them)
- greenlets.py: gevent helpers (CPU-heavy calls off the event loop; installed at start-up
  as app.extensions[OFF_THE_EVENT_LOOP], which the sign-in's password check calls)
- gunicorn.py: the gunicorn server hooks that gunicorn.conf.py installs

It imports settings and the gateways' port only: never the core or an adapter.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire serving around the built app; the admission line is outermost, so a request
    waits in line before anything else runs."""
    from app.serving import admission, greenlets, http

    http.init_app(app)
    admission.init_app(app)
    greenlets.init_app(app)
