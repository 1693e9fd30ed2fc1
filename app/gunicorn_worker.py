"""A gthread worker that shares keep-alive connections evenly with its sibling workers.

gunicorn's workers all accept from one listening socket, and whichever wakes first takes
the connection. Long-lived keep-alive connections (a load balancer's pool, a gateway
sending webhooks, a load generator) then split unevenly between the workers and stay
that way: 64 connections came out 40/24, 44/20 and 49/15 between two workers here. Each
worker gets about the same CPU, so the crowded worker's clients wait longer: per-client
medians of 60-65 ms against 40-42 ms in one run (bench/NOTES.md has the figures).

BalancedThreadWorker stops accepting while it holds more connections than the least
loaded of its live siblings, so the listener is left to them until they catch up.
The counts live on a small board in shared memory, made by the master before it forks
the workers; each worker writes its own slot (connections held, heartbeat). A worker
whose heartbeat is older than STALE_SECONDS (hung, or still booting) is left out of the
comparison, so it can never hold the others back for long (at most STALE_SECONDS after
it went silent). The least loaded live worker always accepts, so a connection never
waits for a worker that is holding back.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 256  # more workers than this in one master share no slots: no balancing
STALE_SECONDS = 3.0  # a worker's run loop beats at least once a second
RECHECK_SECONDS = 0.05  # while holding back, look at the others' counts this often


class ConnectionBoard:
    """Per-worker connection counts in shared memory: (pid, connections, heartbeat) slots."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.created_by = os.getpid()
        self._lock = multiprocessing.Lock()
        self._pids = multiprocessing.RawArray("q", slots)
        self._counts = multiprocessing.RawArray("q", slots)
        self._beats = multiprocessing.RawArray("d", slots)  # time.monotonic(), system-wide
        self._high = multiprocessing.RawValue("q", 0)  # slots in use are below this

    def claim(self, pid: int) -> int | None:
        """A free slot for this worker process (a dead worker's slot is free again)."""
        with self._lock:
            now = time.monotonic()
            for slot in range(len(self._pids)):
                owner = self._pids[slot]
                if (
                    owner == 0
                    or owner == pid
                    or (now - self._beats[slot] > STALE_SECONDS and not _alive(owner))
                ):
                    self._pids[slot], self._counts[slot], self._beats[slot] = pid, 0, 0.0
                    self._high.value = max(self._high.value, slot + 1)
                    return slot
        return None

    def release(self, slot: int) -> None:
        with self._lock:
            self._pids[slot], self._counts[slot], self._beats[slot] = 0, 0, 0.0

    def publish(self, slot: int, connections: int) -> None:
        self._counts[slot] = connections

    def beat(self, slot: int) -> None:
        self._beats[slot] = time.monotonic()

    def withdraw(self, slot: int) -> None:
        """Leave this worker out of the others' comparison (it no longer accepts)."""
        self._beats[slot] = 0.0

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections any other live worker holds (None: no live sibling)."""
        fewest = None
        stale_before = time.monotonic() - STALE_SECONDS
        for other in range(self._high.value):
            if other == slot or self._pids[other] == 0 or self._beats[other] < stale_before:
                continue
            count = self._counts[other]
            if fewest is None or count < fewest:
                fewest = count
        return fewest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: alive, someone else's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, holding back from accepting while it is the crowded one."""

    board: ConnectionBoard | None = None

    @classmethod
    def setup(cls) -> None:
        """Called in the master when the worker class is loaded, before any fork."""
        if cls.board is None or cls.board.created_by != os.getpid():
            cls.board = ConnectionBoard()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slot: int | None = None
        self._connections = 0
        self._holding_back = False
        super().__init__(*args, **kwargs)

    # gthread keeps its open connections in `nr_conns`; every change is published.
    @property
    def nr_conns(self) -> int:
        return self._connections

    @nr_conns.setter
    def nr_conns(self, value: int) -> None:
        self._connections = value
        if self._slot is not None and self.board is not None:
            self.board.publish(self._slot, value)

    def init_process(self) -> None:
        board = self.board
        # A board made in this very process was not shared with any sibling.
        if board is not None and board.created_by != os.getpid():
            self._slot = board.claim(os.getpid())
            if self._slot is not None:
                board.publish(self._slot, self._connections)
        super().init_process()  # loads the app, then runs the worker's loop until exit

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self._slot is not None and self.board is not None:
                self.board.release(self._slot)
                self._slot = None

    def notify(self) -> None:
        super().notify()
        # Siblings count this worker only while its loop accepts: not while it boots
        # (no beat yet), nor once it is stopping (the beat is withdrawn at once).
        if self._slot is not None and self.board is not None:
            if self.alive:
                self.board.beat(self._slot)
            else:
                self.board.withdraw(self._slot)

    def is_crowded(self) -> bool:
        """More connections here than at the least loaded live sibling."""
        if self._slot is None or self.board is None:
            return False
        fewest = self.board.fewest_elsewhere(self._slot)
        return fewest is not None and self._connections > fewest

    def set_accept_enabled(self, enabled: bool) -> None:
        # The run loop asks to accept again on every turn while it holds back.
        self._holding_back = enabled and self.alive and self.is_crowded()
        super().set_accept_enabled(enabled and not self._holding_back)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        if self._accepting and self.is_crowded():
            self._holding_back = True
            super().set_accept_enabled(False)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Holding back, the loop wakes often to see whether the others have caught up:
        # an idle worker would otherwise look again only after `timeout` (one second).
        if self._holding_back:
            timeout = min(timeout, RECHECK_SECONDS)
        super().wait_for_and_dispatch_events(timeout)
