"""Admission control (app/serving/admission.py): the limit, the first-come line, and a request
waiting on the network giving its place away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.serving.admission import ActiveLimit, waiting_outside


def _start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_requests_beyond_the_limit_wait_and_enter_in_arrival_order() -> None:
    limit = ActiveLimit(2)
    limit.enter()
    limit.enter()
    admitted: list[int] = []

    def request(n: int) -> None:
        limit.enter()
        admitted.append(n)

    waiters = []
    for n in range(3):
        waiters.append(_start(lambda n=n: request(n)))
        assert _until(lambda n=n: len(limit._line) == n + 1)  # in line, in this order
    assert admitted == [] and limit.active == 2
    # A newcomer arriving while others wait queues behind them, even when a place frees.
    limit._release()
    assert _until(lambda: admitted == [0])
    assert limit.active == 2
    # One place at a time: two handed on at once may wake their threads in either order.
    limit._release()
    assert _until(lambda: admitted == [0, 1])
    limit._release()
    assert _until(lambda: admitted == [0, 1, 2])
    for thread in waiters:
        thread.join(5)
    assert limit.active == 2 and not limit._line


def test_a_request_waiting_on_the_network_lets_another_in() -> None:
    limit = ActiveLimit(1)
    in_gateway, gateway_answers = threading.Event(), threading.Event()
    other_done = threading.Event()

    def slow_request() -> None:
        limit.enter()
        with waiting_outside():
            in_gateway.set()
            gateway_answers.wait(5)
        limit.leave()

    def quick_request() -> None:
        limit.enter()
        limit.leave()
        other_done.set()

    first = _start(slow_request)
    assert in_gateway.wait(5)
    _start(quick_request)
    assert other_done.wait(5), "a request waiting on a gateway kept its place"
    gateway_answers.set()
    first.join(5)
    assert limit.active == 0


def test_coming_back_from_the_network_never_waits_in_line() -> None:
    """The returning request may hold a connection or a lock the running ones need."""
    limit = ActiveLimit(1)
    limit.enter()
    with waiting_outside():
        _start(limit.enter)  # another request takes the free place
        assert _until(lambda: limit.active == 1)
    # Back, over the limit for a moment; nobody is handed a place until we are under it.
    assert limit.active == 2
    queued = _start(limit.enter)
    assert _until(lambda: len(limit._line) == 1)
    limit.leave()
    assert limit.active == 1 and len(limit._line) == 1
    limit._release()  # the other request ends: the line moves on
    queued.join(5)
    assert not queued.is_alive() and limit.active == 1


def test_after_its_request_or_inside_another_wait_it_changes_nothing() -> None:
    limit = ActiveLimit(2)
    limit.enter()
    with waiting_outside():
        assert limit.active == 0
        with waiting_outside():  # nested: the place was already given away
            assert limit.active == 0
    assert limit.active == 1
    limit.leave()
    with waiting_outside():  # the request is over: nothing of it to give away
        assert limit.active == 0
    assert limit.active == 0


def test_a_streamed_body_gives_its_place_back_once_when_sent_or_closed() -> None:
    from app.serving.admission import _StreamedBody

    left: list[str] = []
    sent = _StreamedBody(iter([b"a", b"b"]), lambda: left.append("sent"))
    assert list(sent) == [b"a", b"b"] and left == ["sent"]
    sent.close()
    assert left == ["sent"]

    closed = []
    body = iter([b"a", b"b"])
    cut = _StreamedBody(body, lambda: left.append("cut"))
    cut._body = type("Closable", (), {"close": lambda self: closed.append(True)})()
    assert next(cut) == b"a"
    assert left == ["sent"]  # half-sent: still running
    cut.close()  # the client went away
    assert left == ["sent", "cut"] and closed == [True]
