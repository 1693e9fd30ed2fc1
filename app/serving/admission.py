"""Admission control: at most ACTIVE_REQUESTS requests of a worker run at once.

A worker serves many requests at once (gevent greenlets by default, or threads) so that
requests waiting on a gateway (250 ms and more) don't hold up the others. Under gevent the
line keeps the order fair and fewer requests interleave their database round trips (the
checkout benchmark: about 15% more checkouts per second than with no line, bench/NOTES.md).
With threads it matters far more: they share one interpreter lock, and CPython makes every
thread that waits for it wake up every 5 ms to ask for it again: with a hundred runnable
threads a worker spent more CPU on that than on the requests (the checkout benchmark at
0 ms gateway latency: 12.1 ms of CPU and 217 context switches per checkout with 128
threads, 6.3 ms and 86 with 8; bench/NOTES.md).

So a request enters only when fewer than ACTIVE_REQUESTS are running, and the others wait
in line, asleep, without asking for the interpreter lock. A request that waits on a
gateway steps out of the count meanwhile, so threads blocked on the network never use up
a place and the worker still needs many threads. The layers below never import this
module: init_app wraps the gateways' network calls in `waiting_outside` (in place, as
observability times them), and leaves `waiting_outside` in app.extensions[WAIT_OUTSIDE]
for the inbox's group commit to wait in.

Coming back from the gateway never waits for a place: that thread may hold a database
connection or a row lock that the running requests wait for, and making it queue behind
them could deadlock. The count can exceed the limit for a moment; new requests wait then.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, request

from app.extensions import WAIT_OUTSIDE
from app.gateways.base import NETWORK_CALLS

# The WSGI environ key where the time a request arrived (before any wait) is kept, so the
# access log and the latency histogram include the time spent in line.
ARRIVED = "kassa.arrived"
# Set on responses whose body is generated while it is sent (the CSV export).
STREAMED = "kassa.streamed"
LIVENESS_PATH = "/healthz"

_local = threading.local()


class ActiveLimit:
    """A count of running requests with a first-come, first-served line: a leaving
    request hands its place straight to the oldest waiter, so a request that has just
    arrived can never overtake the ones already waiting."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        self._line: deque[threading.Lock] = deque()

    def enter(self) -> None:
        with self._lock:
            if self.active < self.limit and not self._line:
                self.active += 1
                ticket = None
            else:
                ticket = threading.Lock()
                ticket.acquire()
                self._line.append(ticket)
        if ticket is not None:
            ticket.acquire()  # released by the request that hands us its place
        _local.limit = self

    def leave(self) -> None:
        _local.limit = None
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._line and self.active <= self.limit:
                self._line.popleft().release()  # the place goes on, the count stays
            else:
                self.active -= 1

    def _resume(self) -> None:
        with self._lock:
            self.active += 1


@contextmanager
def waiting_outside() -> Iterator[None]:
    """Around a slow network call: the request gives its place to another meanwhile.
    Outside a limited request (jobs, CLI, tests) it does nothing."""
    limit: ActiveLimit | None = getattr(_local, "limit", None)
    if limit is None:
        yield
        return
    _local.limit = None  # a wait nested in this one must not give the place away again
    limit._release()
    try:
        yield
    finally:
        limit._resume()
        _local.limit = limit


class _Middleware:
    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], limit: ActiveLimit) -> None:
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        environ[ARRIVED] = time.perf_counter()
        if environ.get("PATH_INFO") == LIVENESS_PATH:
            # "Alive" means the worker answers: a liveness probe never waits behind a queue
            # (an orchestrator would restart a busy but healthy worker).
            return self.wsgi_app(environ, start_response)
        self.limit.enter()
        try:
            body = self.wsgi_app(environ, start_response)
        except BaseException:
            self.limit.leave()
            raise
        if not environ.get(STREAMED):
            # The body is made already (or is a file the server sends): nothing left to run.
            self.limit.leave()
            return body
        return _StreamedBody(body, self.limit.leave)


class _StreamedBody:
    """A body made while it is sent (the CSV export): it keeps its place until it is
    exhausted or closed, whichever comes first."""

    def __init__(self, body: Iterable[bytes], leave: Callable[[], None]) -> None:
        self._body = body
        self._chunks = iter(body)
        self._leave: Callable[[], None] | None = leave

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self._done()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()

    def _done(self) -> None:
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()


def _mark_streamed(response: Response) -> Response:
    if response.is_streamed and not response.direct_passthrough:
        request.environ[STREAMED] = True
    return response


def _stepping_outside(call: Callable[..., Any]) -> Callable[..., Any]:
    def outside(*args: Any, **kwargs: Any) -> Any:
        with waiting_outside():
            return call(*args, **kwargs)

    return outside


def step_outside_for_gateways(gateways: dict[str, Any]) -> None:
    """Waiting on the network (and between its retries), a request gives up its place:
    every network call of every configured gateway is wrapped, on the outermost layer (so
    the whole retried call is outside the line), by shadowing its bound methods."""
    for gateway in gateways.values():
        if getattr(gateway, "_kassa_steps_outside", False):
            continue
        for name in NETWORK_CALLS:
            method = getattr(gateway, name, None)
            if callable(method):
                setattr(gateway, name, _stepping_outside(method))
        gateway._kassa_steps_outside = True


def init_app(app: Flask) -> None:
    limit = int(app.config.get("ACTIVE_REQUESTS") or 0)
    if limit > 0:
        app.extensions[WAIT_OUTSIDE] = waiting_outside
        step_outside_for_gateways(app.extensions.get("kassa_gateways", {}))
        app.after_request(_mark_streamed)
        # Flask's documented way to add WSGI middleware; mypy sees wsgi_app as a method.
        app.wsgi_app = _Middleware(app.wsgi_app, ActiveLimit(limit))  # type: ignore[method-assign]
