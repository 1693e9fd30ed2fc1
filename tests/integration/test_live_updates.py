"""Live updates over server-sent events: what a stream sends, to whom, from where it
resumes, and that a held stream does not take a running-request place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from app import live
from app.extensions import db
from app.live import Message
from app.models import Order
from tests.integration.conftest import LiveServer
from tests.integration.test_core import deliver
from tests.integration.test_webhooks import start_purchase


class Stream:
    """An SSE client on a thread: collects (id, event, data) until closed."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, session: Any = None
    ) -> None:
        self.events: list[tuple[str | None, str, str]] = []
        self.comments = 0
        self.opened = threading.Event()
        self._response = (session or requests).get(
            url, headers=headers or {}, stream=True, timeout=(5, 30)
        )
        self.status = self._response.status_code
        self.content_type = self._response.headers.get("content-type", "")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event_id, name, data = None, "message", []
        try:
            for raw in self._response.iter_lines(decode_unicode=True):
                self.opened.set()
                if raw == "":
                    if data:
                        self.events.append((event_id, name, "\n".join(data)))
                    event_id, name, data = None, "message", []
                elif raw.startswith(":"):
                    self.comments += 1
                elif raw.startswith("id: "):
                    event_id = raw[4:]
                elif raw.startswith("event: "):
                    name = raw[7:]
                elif raw.startswith("data: "):
                    data.append(raw[6:])
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str | None, str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"got {self.events}"
            time.sleep(0.02)
        return list(self.events)

    def close(self) -> None:
        self._response.close()


def the_order(app: Flask) -> str:
    with app.app_context():
        return str(db.session.execute(select(Order.public_id)).scalar_one())


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for s in opened:
        s.close()


def test_the_order_stream_tells_the_customer_and_resumes_without_gaps(
    serve: Callable[..., LiveServer], streams: list[Stream]
) -> None:
    server = serve(JOBS_EAGER=True, SANDBOX_DELIVER_WEBHOOKS=False, LIVE_HEARTBEAT_SECONDS=0.2)
    app = server.app
    _, events = start_purchase(app)
    order_id = the_order(app)
    html = requests.get(f"{server.url}/orders/{order_id}", timeout=5).text
    # The page streams from where the outbox stood when it was rendered: the checkout's
    # customer.created is seq 1.
    assert f'sse-connect="/orders/{order_id}/events?since=1"' in html
    assert 'hx-trigger="sse:order"' in html and "htmx-ext-sse.min.js" in html
    stream = Stream(f"{server.url}/orders/{order_id}/events?since=0")
    streams.append(stream)
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    _, other_events = start_purchase(app)  # someone else's order: never sent here
    deliver(app, events)
    deliver(app, other_events)
    [(event_id, name, data)] = stream.wait_for(1)
    message = Message.from_json(data)
    assert name == "order" and message.type == "order.paid" and message.order_id == order_id
    assert message.status == "paid" and event_id == str(message.seq)
    time.sleep(0.5)
    assert len(stream.events) == 1 and stream.comments >= 1  # heartbeats, nothing else
    # A reconnect from before the event gets it from the database (Last-Event-ID wins).
    again = Stream(
        f"{server.url}/orders/{order_id}/events?since=999",
        headers={"Last-Event-ID": str(message.seq - 1)},
    )
    streams.append(again)
    assert [e[0] for e in again.wait_for(1)] == [event_id]
    assert requests.get(f"{server.url}/orders/ord_nope/events", timeout=5).status_code == 404


def test_who_sees_what() -> None:
    def msg(subject_type: str, order_id: str | None = "ord_a") -> Message:
        return Message(1, f"{subject_type}.x", subject_type, "id", order_id, "pay_a", "s")

    customer = live.for_order("ord_a")
    assert customer(msg("order")) and customer(msg("payment")) and customer(msg("refund"))
    assert not customer(msg("dispute"))  # the customer never hears of a dispute
    assert not customer(msg("order", "ord_b"))
    viewer, owner = live.for_merchant("viewer"), live.for_merchant("owner")
    assert viewer(msg("dispute")) and not viewer(msg("webhook_endpoint", None))
    assert owner(msg("webhook_endpoint", None))
    assert live.merchant_event_name(msg("refund")) == "payment-pay_a"


def test_held_streams_take_no_running_request_place(
    serve: Callable[..., LiveServer], streams: list[Stream]
) -> None:
    server = serve(JOBS_EAGER=True, SANDBOX_DELIVER_WEBHOOKS=False, ACTIVE_REQUESTS=1)
    payment, _ = start_purchase(server.app)
    order_id = the_order(server.app)
    for _ in range(3):
        s = Stream(f"{server.url}/orders/{order_id}/events?since=0")
        streams.append(s)
        assert s.opened.wait(5)
    started = time.monotonic()
    response = requests.get(f"{server.url}/orders/{order_id}", timeout=5)
    assert response.status_code == 200 and time.monotonic() - started < 2
    assert server.app.extensions["kassa_live"].streams == 3
    assert payment.public_id


def test_a_hub_fills_gaps_from_the_database(make_app: Callable[..., Flask]) -> None:
    """A message lost on the way (another process's publish, a dead relay) still reaches
    the streams, in order, from the database."""
    app = make_app()
    payment, events = start_purchase(app)
    hub = app.extensions["kassa_live"]
    got: list[int] = []
    with app.app_context():
        sub = hub.subscribe(lambda m: True)
    hub.publish = lambda messages: None  # type: ignore[method-assign]  # every publish lost
    deliver(app, events)
    second, more = start_purchase(app)
    deliver(app, more)
    hub.resync()
    while (m := sub.get(0.1)) is not None:
        got.append(m.seq)
    assert got == sorted(got) and len(got) >= 2
    assert payment.public_id != second.public_id
