"""Admission control in the app: a checkout waiting on its gateway doesn't hold up the
worker's other requests, and requests waiting in line are answered in turn."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask


class _SlowGateway:
    """The sandbox adapter, with a create_checkout that waits until released."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_checkout(self, request: Any) -> Any:
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.create_checkout(request)


def _checkout(app: Flask, results: list[int]) -> None:
    # Closed like a server closes it: that is when the request gives its place back.
    with app.test_client().post(
        "/products/tee-usd",
        data={"email": "a@example.com", "name": "A", "quantity": "1", "gateway": "sandbox"},
    ) as reply:
        results.append(reply.status_code)


def test_a_checkout_waiting_on_its_gateway_leaves_room_for_others(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(ACTIVE_REQUESTS=1)
    resilient = app.extensions["kassa_gateways"]["sandbox"]
    slow = resilient.inner = _SlowGateway(resilient.inner)
    results: list[int] = []
    buyer = threading.Thread(target=_checkout, args=(app, results), daemon=True)
    buyer.start()
    try:
        assert slow.entered.wait(10)
        # The only place is free while the gateway thinks: these are answered meanwhile.
        client = app.test_client()
        for path in ("/healthz", "/products/tee-usd", "/"):
            with client.get(path) as reply:
                assert reply.status_code == 200
        assert not slow.release.is_set() and buyer.is_alive()
    finally:
        slow.release.set()
        buyer.join(10)
    assert results == [303]


def test_the_liveness_probe_never_waits_in_line(make_app: Callable[..., Flask]) -> None:
    app = make_app(ACTIVE_REQUESTS=1)
    limit = app.wsgi_app.limit
    limit.enter()  # the one place is taken by a long request
    try:
        done: list[int] = []
        probe = threading.Thread(
            target=lambda: done.append(app.test_client().get("/healthz").status_code), daemon=True
        )
        probe.start()
        probe.join(10)
        assert done == [200]
    finally:
        limit.leave()
