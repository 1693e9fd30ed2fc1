"""gevent helpers: keep CPU-heavy calls from stalling a gevent worker's other requests."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from flask import Flask

from app.extensions import OFF_THE_EVENT_LOOP

T = TypeVar("T")


def off_the_event_loop(fn: Callable[..., T], *args: object) -> T:
    """Call a CPU-heavy function (a password hash: ~70 ms of scrypt) without stalling
    the worker's other requests.

    Under gunicorn's gevent workers every request of a worker shares one OS thread, so
    the call goes to gevent's pool of native threads (hashlib's scrypt lets go of the
    interpreter lock while it works) and only this request waits for it. With OS-thread
    workers, or outside gunicorn, it is a plain call.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        import gevent

        result: T = gevent.get_hub().threadpool.apply(fn, args)
        return result
    return fn(*args)


def init_app(app: Flask) -> None:
    """Install the runner that CPU-heavy calls in the app go through (app/auth/service.py's
    password check reads app.extensions[OFF_THE_EVENT_LOOP]; the doors never import serving)."""
    app.extensions[OFF_THE_EVENT_LOOP] = off_the_event_loop
