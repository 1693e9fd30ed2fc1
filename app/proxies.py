"""The objects behind Flask's context proxies, for code that keeps them past the context
(threads, pools, callbacks that run after the request).

Flask declares `current_app: Flask` and `request: Request`, but both are werkzeug
LocalProxy objects; `_get_current_object()` is the documented way to reach what they
point at, and the declaration hides it from a type checker. Here, once, each proxy is
read as what it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import Flask, Request, current_app, request

if TYPE_CHECKING:
    from werkzeug.local import LocalProxy


def real_app() -> Flask:
    """The app behind flask.current_app (needs an app context)."""
    return cast("LocalProxy[Flask]", current_app)._get_current_object()


def real_request() -> Request:
    """The request behind flask.request (needs a request context)."""
    return cast("LocalProxy[Request]", request)._get_current_object()
