"""Group commit for webhook intake, fenced with the fast paths (its SQL is store's).

Each delivery must be committed before it is acknowledged, but a transaction per
delivery costs a pool checkout, BEGIN, INSERT and COMMIT. Here the request thread that
finds no write in progress becomes the leader: it inserts every delivery queued so far
in ONE statement or transaction (app/payments/store.event_inserter), wakes their
threads, hands the leadership to a thread that queued meanwhile, and enqueues one
webhooks.process_batch job for the rows it wrote. A lone delivery is
written at once, by its own thread; under load the batches grow by themselves. Nothing
is acknowledged before its commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from app import jobs
from app.extensions import WAIT_OUTSIDE, db
from app.payments import store
from app.proxies import real_app

_writer_lock = threading.Lock()


class _Slot:
    """One delivery waiting for its row to be written."""

    __slots__ = ("error", "lead", "row_id", "values", "wake")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.row_id: int | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


class InboxWriter:
    """Inserts inbox rows, grouping the deliveries that arrive while a write runs."""

    MAX_BATCH = 500
    JOB_SIZE = 100  # rows per processing job

    def __init__(
        self,
        engine: Engine,
        wait: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.engine = engine
        self._insert_rows = store.event_inserter(engine)
        # Waiting for its batch's commit, a request gives up its place among the worker's
        # running requests (set up by the serving layer), so more deliveries join.
        self._wait = wait
        self._lock = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False

    def insert(self, values: dict[str, Any]) -> int | None:
        """Insert one row unless (gateway, event_id) exists; its new id, or None."""
        slot = _Slot(values)
        with self._lock:
            self._queue.append(slot)
            slot.lead = not self._busy
            self._busy = True
        with self._wait():
            if not slot.lead:
                slot.wake.acquire()  # released when our row is written, or to lead
            if slot.lead:
                self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.row_id

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            self._write(batch)
        finally:
            written = tuple(slot.row_id for slot in batch if slot.row_id is not None)
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    successor: _Slot | None = self._queue[0]
                else:
                    successor = None
                    self._busy = False
            for slot in batch:
                if not slot.lead:
                    slot.wake.release()
                slot.lead = False
            if successor is not None:
                successor.wake.release()
        # After the commit, and after the group's requests were woken to answer: one job
        # applies the whole group (a broker gets one message for it, not one per event).
        for start in range(0, len(written), self.JOB_SIZE):
            jobs.enqueue("webhooks.process_batch", written[start : start + self.JOB_SIZE])

    def _write(self, batch: list[_Slot]) -> None:
        try:
            self._insert(batch)
        except DBAPIError as exc:
            if (
                len(batch) == 1
                or exc.connection_invalidated
                or isinstance(exc, OperationalError | InterfaceError)
            ):
                for slot in batch:
                    slot.error = exc
                return
            # One bad delivery must not fail the others: write them one by one.
            for slot in batch:
                try:
                    self._insert([slot])
                except Exception as single:  # noqa: BLE001 - answered as that request's error
                    slot.error = single
        except Exception as exc:  # noqa: BLE001 - every waiting request answers with it
            for slot in batch:
                slot.error = exc

    def _insert(self, batch: list[_Slot]) -> None:
        first: dict[tuple[str, str], _Slot] = {}
        for slot in batch:  # the same event twice in one batch: the first one stores it
            first.setdefault((slot.values["gateway"], slot.values["event_id"]), slot)
        for row_id, gateway, event_id in self._insert_rows([s.values for s in first.values()]):
            first[(gateway, event_id)].row_id = row_id


def inbox_writer() -> InboxWriter:
    """This app's intake writer (one per process and app, made on first use)."""
    app = real_app()  # the app behind the proxy
    writer: InboxWriter | None = app.extensions.get("kassa_inbox_writer")
    if writer is None:
        with _writer_lock:
            writer = app.extensions.get("kassa_inbox_writer")
            if writer is None:
                writer = app.extensions["kassa_inbox_writer"] = InboxWriter(
                    db.engine, app.extensions.get(WAIT_OUTSIDE, nullcontext)
                )
    return writer
