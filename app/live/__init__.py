"""Live updates: outbox events fanned out to the server-sent event streams.

The outbox relay publishes each dispatched event (its stream number `seq`, type and ids)
after its commit. With REDIS_URL set, publishing goes through one Redis pub/sub channel
that every process of every instance listens to; without it, to this process's streams.
Each process's Hub hands a message to the streams whose filter wants it, in seq order.

Nothing is lost on the way: a Hub that sees a jump in seq (a message lost, a relay that
died between its commit and its publish, another process's publish without Redis) reads
the missing events from the database, and while streams are open it asks the database
for anything newer every LIVE_RESYNC_SECONDS. A browser that reconnects sends
Last-Event-ID and gets what it missed from the database before the live messages.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app

from app.proxies import real_app

if TYPE_CHECKING:
    from app.models import OutboxEvent

log = logging.getLogger(__name__)

CHANNEL = "kassa:live"
QUEUE_LIMIT = 1000  # messages a slow stream may fall behind before it is resynced


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    type: str
    subject_type: str
    subject_id: str
    order_id: str | None
    payment_id: str | None
    status: str | None

    @classmethod
    def from_event(cls, event: OutboxEvent, seq: int | None = None) -> Message:
        return cls(
            seq=seq if seq is not None else int(event.seq or 0),
            type=event.type,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            order_id=event.order_id,
            payment_id=event.payment_id,
            status=(event.data or {}).get("status"),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Message:
        return cls(**json.loads(raw))


Filter = Callable[[Message], bool]


class Subscription:
    """One open stream: the messages its filter wants, in seq order."""

    def __init__(self, hub: Hub, wants: Filter) -> None:
        self.hub = hub
        self.wants = wants
        self._queue: queue.Queue[Message | None] = queue.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, message: Message) -> None:
        if not self.wants(message):
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.overflowed = True  # the stream reads the database instead

    def get(self, timeout: float) -> Message | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    """This process's fan-out of live messages to its open streams."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.redis_url: str | None = app.config.get("REDIS_URL")
        self.resync_seconds = float(app.config.get("LIVE_RESYNC_SECONDS", 2.0))
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self.last_seq: int | None = None  # highest seq handed to the streams
        self._threads_started = False
        self._redis: Any = None
        self.published = 0

    # ----------------------------------------------------------------- publishing

    def publish(self, messages: list[Message]) -> None:
        if not messages:
            return
        if self.redis_url:
            try:
                client = self._redis_client()
                client.publish(CHANNEL, json.dumps([m.to_json() for m in messages]))
                self.published += len(messages)
                return
            except Exception:  # the streams resync from the database
                log.exception("could not publish %d live messages to Redis", len(messages))
                return
        self.deliver(messages)
        self.published += len(messages)

    def _redis_client(self) -> Any:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(str(self.redis_url), socket_timeout=5)
        return self._redis

    # ----------------------------------------------------------------- fan-out

    def subscribe(self, wants: Filter) -> Subscription:
        sub = Subscription(self, wants)
        with self._lock:
            self._subs.add(sub)
        self._start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def streams(self) -> int:
        return len(self._subs)

    def deliver(self, messages: list[Message]) -> None:
        """Hand messages to the streams in seq order, reading any skipped ones first."""
        with self._deliver_lock:
            for message in sorted(messages, key=lambda m: m.seq):
                if self.last_seq is not None and message.seq <= self.last_seq:
                    continue
                if self.last_seq is not None and message.seq > self.last_seq + 1:
                    self._backfill(message.seq - 1)
                self._fan_out(message)

    def _fan_out(self, message: Message) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(message)
        self.last_seq = message.seq

    def _backfill(self, upto: int | None = None) -> None:
        """Fan out dispatched events after last_seq (up to `upto`) from the database."""
        from app.payments import outbox

        with self.app.app_context():
            start = self.last_seq or 0
            while True:
                events = outbox.events_since(start)
                found = [Message.from_event(e) for e in events]
                if upto is not None:
                    found = [m for m in found if m.seq <= upto]
                for message in found:
                    self._fan_out(message)
                if len(events) < 500 or not found:
                    break
                start = found[-1].seq
            if upto is not None and (self.last_seq or 0) < upto:
                # Sequence numbers of test events (never streamed) leave holes.
                self.last_seq = upto

    def resync(self) -> None:
        with self._deliver_lock:
            self._backfill()

    def current_seq(self) -> int:
        """The stream position a page rendered now starts from."""
        if self.last_seq is not None:
            return self.last_seq
        from app.payments import outbox

        return outbox.latest_seq()

    # ----------------------------------------------------------------- threads

    def _start(self) -> None:
        with self._lock:
            if self._threads_started:
                return
            self._threads_started = True
        if self.last_seq is None:
            from app.payments import outbox

            with self.app.app_context():
                self.last_seq = outbox.latest_seq()
        if self.redis_url:
            threading.Thread(target=self._listen, name="kassa-live-redis", daemon=True).start()
        threading.Thread(target=self._watch, name="kassa-live-resync", daemon=True).start()

    def _listen(self) -> None:
        import redis

        while True:
            try:
                client = redis.Redis.from_url(str(self.redis_url), socket_timeout=None)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                # Anything published while we were not subscribed comes from the database.
                self.resync()
                for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    raw = json.loads(item["data"])
                    self.deliver([Message.from_json(m) for m in raw])
            except Exception:  # keep listening; the watch thread covers the gap
                log.exception("live updates: Redis subscription lost; reconnecting")
                time.sleep(1.0)

    def _watch(self) -> None:
        while True:
            time.sleep(self.resync_seconds)
            if not self._subs:
                continue
            try:
                self.resync()
            except Exception:
                log.exception("live updates: resync from the database failed")


def hub() -> Hub:
    installed: Hub = current_app.extensions["kassa_live"]  # init_app
    return installed


def publish(messages: list[Message]) -> None:
    """After a commit: send these to every stream that wants them (every instance)."""
    if messages:
        hub().publish(messages)


def current_seq() -> int:
    return hub().current_seq()


def events_url(endpoint: str, **values: Any) -> str | None:
    """Where a page rendered now connects its stream (resuming from this moment), or None
    when live updates are off (LIVE_UPDATES=false: the widgets poll instead)."""
    from flask import url_for

    if not current_app.config.get("LIVE_UPDATES", True):
        return None
    return url_for(endpoint, since=current_seq(), **values)


def sse(event: str, data: str, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.extend(f"data: {part}" for part in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def stream(
    wants: Filter,
    since: int,
    name: Callable[[Message], str],
    heartbeat: float,
    lifetime: float = 600.0,
) -> Iterator[bytes]:
    """An SSE body: what happened after `since` (from the database), then live messages,
    with a comment line every `heartbeat` seconds so proxies keep the connection open.
    `name` gives each message its SSE event name (what the page's widgets listen for)."""
    from app.payments import outbox

    app = real_app()
    the_hub = hub()
    sub = the_hub.subscribe(wants)

    def from_database(after: int) -> list[Message]:
        with app.app_context():
            found = [Message.from_event(e) for e in outbox.events_since(after)]
            return [m for m in found if wants(m)]

    def body() -> Iterator[bytes]:
        sent = since
        ends = time.monotonic() + lifetime
        try:
            yield b"retry: 2000\n\n"
            for missed in from_database(sent):
                sent = missed.seq
                yield sse(name(missed), missed.to_json(), missed.seq)
            while True:
                left = ends - time.monotonic()
                if left <= 0:
                    # The browser reconnects (Last-Event-ID) and signs in again, maybe to
                    # another instance: no stream outlives a session or pins a worker.
                    return
                message = sub.get(min(heartbeat, left))
                if sub.overflowed:
                    sub.overflowed = False
                    for missed in from_database(sent):
                        sent = missed.seq
                        yield sse(name(missed), missed.to_json(), missed.seq)
                    continue
                if message is None:
                    yield b": heartbeat\n\n"
                    continue
                if message.seq <= sent:
                    continue
                sent = message.seq
                yield sse(name(message), message.to_json(), message.seq)
        finally:
            sub.close()

    return body()


# --------------------------------------------------------------------------- who sees what


def for_order(order_id: str) -> Filter:
    """A customer's order page: its own order's news, never disputes or merchant matters."""

    def wants(m: Message) -> bool:
        return m.order_id == order_id and m.subject_type in ("order", "payment", "refund")

    return wants


def for_merchant(role: str) -> Filter:
    """The dashboard: everything about orders and payments; endpoint matters (their URLs
    and failures) only to owners and admins, who alone see the endpoint pages."""
    manager = role in ("owner", "admin")

    def wants(m: Message) -> bool:
        return manager or m.subject_type != "webhook_endpoint"

    return wants


def merchant_event_name(m: Message) -> str:
    """Dashboard widgets listen for `sse:payment-<id>` (or `sse:<subject>-<id>`)."""
    if m.payment_id:
        return f"payment-{m.payment_id}"
    return f"{m.subject_type}-{m.subject_id}"


def response(wants: Filter, name: Callable[[Message], str]) -> Response:
    """The SSE response for this request: resumes after Last-Event-ID (a reconnect) or
    ?since= (the stream position the page was rendered at).

    The response is passed straight through (direct_passthrough), so the admission line
    (app/admission.py) lets go of the request's place as soon as the view returns: a
    held stream never takes one of a worker's running-request places."""
    from flask import request

    raw = request.headers.get("Last-Event-ID") or request.args.get("since") or ""
    since = int(raw) if raw.isdigit() else current_seq()
    config = current_app.config
    body = stream(
        wants,
        since,
        name,
        float(config.get("LIVE_HEARTBEAT_SECONDS", 15)),
        float(config.get("LIVE_STREAM_MAX_SECONDS", 600)),
    )
    resp = Response(body, mimetype="text/event-stream", direct_passthrough=True)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return resp


def init_app(app: Flask) -> None:
    app.extensions["kassa_live"] = Hub(app)
