"""The embedded default's periodic tasks: a small scheduler thread (no broker, no beat).

Started by create_app's first request when SCHEDULER_ENABLED is on, no broker is
configured and the app is not TESTING, so `make run` needs nothing else. CLI commands
never start it. Each due task is handed to the in-process job runner.

Every worker of every instance runs a scheduler, but only the leader dispatches (one
across all workers and instances, app/jobs/leader.py: a PostgreSQL advisory lock, or a
lease row on SQLite), so each task runs once per interval, not once per worker. When the
leader dies another takes over within a tick (PostgreSQL) or a lease
(SCHEDULER_LEASE_SECONDS), and runs what is due soon after. (The tasks stay safe to run
twice at once, row locks and SKIP LOCKED, for the moment of a hand-over.)
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask

from app.jobs.leader import Leadership, leadership_for

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        app: Flask,
        schedule: dict[str, float],
        tick: float = 1.0,
        leadership: Leadership | None = None,
    ) -> None:
        self.app = app
        self.schedule = schedule  # task name -> interval in seconds
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.leadership = leadership or leadership_for(app)
        self._ticked = False
        # Run each task soon after start (catch up after a restart), then on its interval.
        now = time.monotonic()
        self.next_run = {name: now + min(5.0, interval) for name, interval in schedule.items()}

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="kassa-scheduler", daemon=True)
            self._thread.start()
        log.info("scheduler: started in pid %s", os.getpid())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.leadership.release()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_due(self) -> list[str]:
        from app.jobs import dispatch

        now = time.monotonic()
        ran = []
        for name, interval in self.schedule.items():
            if now >= self.next_run[name]:
                self.next_run[name] = now + interval
                log.info("periodic task %s dispatched", name)
                with self.app.app_context():
                    dispatch(name)
                ran.append(name)
        return ran

    def lead(self) -> bool:
        """True when this process leads now (taking the leadership when it is free)."""
        was = self.leadership.leading
        leading = self.leadership.hold()
        first, self._ticked = not self._ticked, True
        if leading and not was:
            log.info("scheduler: pid %s leads the periodic tasks", os.getpid())
            # Taken over: each task runs soon, as after a start, then on its interval (a
            # follower's own schedule went stale while it waited).
            if not first:
                now = time.monotonic()
                self.next_run = {n: now + min(5.0, i) for n, i in self.schedule.items()}
        elif was and not leading:
            log.warning("scheduler: pid %s no longer leads", os.getpid())
        return leading

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                if self.lead():
                    self.run_due()
            except Exception:  # the scheduler must outlive any one failure
                log.exception("scheduler tick failed")


def schedule_from_config(app: Flask) -> dict[str, float]:
    from app.jobs.celery_app import PERIODIC

    return {task: float(app.config[setting]) for task, setting in PERIODIC.values()}


def init_app(app: Flask) -> None:
    if (
        app.config.get("TESTING")
        or not app.config.get("SCHEDULER_ENABLED")
        or app.config.get("CELERY_BROKER_URL")
    ):
        return
    scheduler = Scheduler(app, schedule_from_config(app))
    app.extensions["kassa_scheduler"] = scheduler

    @app.before_request
    def _start_scheduler() -> None:
        # Only a serving process schedules (never `flask db upgrade` and other commands).
        if not scheduler.running:
            scheduler.start()
